"""Retrieval evaluation on a JSONL dev set, and the baselines `kb eval --compare` runs beside the engine.

Each line: {"id", "question", "articles": [accepted slugs; empty when the KB cannot answer], "keywords"}.
Metrics over the answerable questions: hit@1/3/5 (an accepted article among the top-k chunks), MRR@10
(1 / rank of the first chunk from an accepted article), keyword recall (share of questions with keywords
where one appears, case-insensitively, in the top-k chunk texts) and the false-refusal rate; over the
unanswerable ones, the refusal rate. Baselines without a refusal decision report None for both rates.

Systems are plain functions question -> Ranking, so the engine's modes and the LangChain recipe are
measured by the same code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kb.errors import DevSetError

RANK_DEPTH = 10


@dataclass(frozen=True)
class DevQuestion:
    id: str
    question: str
    articles: tuple[str, ...]
    keywords: tuple[str, ...]
    gold: tuple[str, ...] = ()     # verbatim fragments of the sentence(s) that answer the question
    split: str | None = None       # "dev" (tuning) or "test" (held out: figures are reported on it)
    qtype: str | None = None       # what / why / how / diff / code / formula (kb.compose.question_type)

    @property
    def answerable(self) -> bool:
        return bool(self.articles)


@dataclass(frozen=True)
class Ranking:
    slugs: list[str]               # article of each retrieved chunk, best first
    texts: list[str]               # the chunks' texts, same order
    answerable: bool | None        # None: the system makes no refusal decision


System = Callable[[str], Ranking]


@dataclass
class Metrics:
    name: str
    answerable: int
    unanswerable: int
    hit1: float
    hit3: float
    hit5: float
    mrr10: float
    keyword_recall: float
    refusal_rate: float | None     # refused / unanswerable
    false_refusal_rate: float | None   # refused / answerable
    misses: list[str] = field(default_factory=list)     # ids of answerable questions not hit in the top 5
    wrong_decisions: list[str] = field(default_factory=list)  # ids refused wrongly or answered wrongly
    # Per split ("dev": tuned on, "test": held out): hit@1, hit@5, MRR@10 over its answerable questions and,
    # for a system that decides, its refusal and false-refusal rates.
    by_split: dict[str, dict] = field(default_factory=dict)


def load_devset(path: str | Path) -> list[DevQuestion]:
    path = Path(path)
    if not path.is_file():
        raise DevSetError(f"{path}: no such file")
    questions, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            q = DevQuestion(str(d["id"]), d["question"], tuple(d["articles"]), tuple(d.get("keywords", ())),
                            tuple(d.get("gold", ())), d.get("split"), d.get("type"))
        except (ValueError, KeyError, TypeError) as exc:
            raise DevSetError(f"{path}:{n}: not a dev-set line ({type(exc).__name__}: {exc})") from None
        if not isinstance(q.question, str) or not q.question.strip():
            raise DevSetError(f"{path}:{n}: empty question")
        if q.id in seen:
            raise DevSetError(f"{path}:{n}: duplicate id {q.id!r}")
        seen.add(q.id)
        questions.append(q)
    if not questions:
        raise DevSetError(f"{path}: no questions")
    return questions


def first_rank(slugs: list[str], accepted: tuple[str, ...]) -> int | None:
    return next((i for i, s in enumerate(slugs, start=1) if s in accepted), None)


def evaluate(questions: list[DevQuestion], system: System, name: str, k: int = 5) -> Metrics:
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    hits = {1: 0, 3: 0, 5: 0}
    rr, kw_hit, kw_total = 0.0, 0, 0
    refused_ok = refused_wrong = 0
    decides = True
    misses, wrong = [], []
    per_split: dict[str, dict[str, list]] = {}
    for q in questions:
        r = system(q.question)
        decides = decides and r.answerable is not None
        if q.split:
            split = per_split.setdefault(q.split, {"ranks": [], "answered_refused": [], "unanswerable_refused": []})
            split["answered_refused" if q.answerable else "unanswerable_refused"].append(r.answerable is False)
        if not q.answerable:
            if r.answerable is False:
                refused_ok += 1
            else:
                wrong.append(q.id)
            continue
        rank = first_rank(r.slugs[:RANK_DEPTH], q.articles)
        if q.split:
            per_split[q.split]["ranks"].append(rank)
        for depth in hits:
            hits[depth] += rank is not None and rank <= depth
        rr += 1.0 / rank if rank else 0.0
        if rank is None or rank > 5:
            misses.append(q.id)
        if q.keywords:
            kw_total += 1
            text = "\n".join(r.texts[:k]).lower()
            kw_hit += any(kw.lower() in text for kw in q.keywords)
        if r.answerable is False:
            refused_wrong += 1
            wrong.append(q.id)
    na, nu = len(answerable), len(unanswerable)
    return Metrics(
        name=name, answerable=na, unanswerable=nu,
        hit1=hits[1] / na if na else 0.0, hit3=hits[3] / na if na else 0.0, hit5=hits[5] / na if na else 0.0,
        mrr10=rr / na if na else 0.0, keyword_recall=kw_hit / kw_total if kw_total else 0.0,
        refusal_rate=(refused_ok / nu if nu else None) if decides else None,
        false_refusal_rate=(refused_wrong / na if na else None) if decides else None,
        misses=misses, wrong_decisions=wrong if decides else [],
        by_split={name: _split_metrics(**lists, decides=decides) for name, lists in sorted(per_split.items())})


def _split_metrics(ranks: list[int | None], answered_refused: list[bool], unanswerable_refused: list[bool],
                   decides: bool) -> dict:
    n, nu = len(ranks), len(unanswerable_refused)
    rate = lambda flags: (sum(flags) / len(flags) if flags else None) if decides else None
    return {"answerable": n, "unanswerable": nu,
            "hit1": sum(r == 1 for r in ranks) / n if n else 0.0,
            "hit5": sum(r is not None and r <= 5 for r in ranks) / n if n else 0.0,
            "mrr10": sum(1.0 / r for r in ranks if r) / n if n else 0.0,
            "refusal_rate": rate(unanswerable_refused), "false_refusal_rate": rate(answered_refused)}


def engine_system(kb, mode: str = "hybrid", depth: int = RANK_DEPTH) -> System:
    def run(question: str) -> Ranking:
        result = kb.search(question, k=depth, mode=mode)
        return Ranking([h.chunk.slug for h in result.hits], [h.chunk.text for h in result.hits], result.answerable)
    return run


def langchain_system(kb, depth: int = RANK_DEPTH) -> System:
    """The plain LangChain recipe on the same articles and model: RecursiveCharacterTextSplitter 500/50,
    HuggingFaceEmbeddings (unnormalized, its default), langchain_community's FAISS (L2), top-k."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from kb.embedding import resolve_model

    docs = [Document(page_content=a.body, metadata={"slug": a.slug}) for a in kb.articles.values()]
    splits = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50).split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=resolve_model(kb.config.model), model_kwargs={"device": "cpu"})
    vectorstore = FAISS.from_documents(splits, embeddings)

    def run(question: str) -> Ranking:
        found = vectorstore.similarity_search(question, k=depth)
        return Ranking([d.metadata["slug"] for d in found], [d.page_content for d in found], None)
    return run


def run_eval(kb, questions: list[DevQuestion], k: int = 5, compare: bool = False) -> list[Metrics]:
    from kb.sentences import prefetch_queries
    prefetch_queries(kb, [q.question for q in questions])
    results = [evaluate(questions, engine_system(kb), "hybrid (engine)", k)]
    if compare:
        results.append(_strip_refusal(evaluate(questions, engine_system(kb, "dense"), "dense only", k)))
        results.append(_strip_refusal(evaluate(questions, engine_system(kb, "bm25"), "BM25 only", k)))
        results.append(evaluate(questions, langchain_system(kb), "LangChain recipe", k))
    return results


def _strip_refusal(m: Metrics) -> Metrics:
    """One-ranker modes share the engine's refusal decision; only the engine's row reports it."""
    m.refusal_rate = m.false_refusal_rate = None
    m.wrong_decisions = []
    for split in m.by_split.values():
        split["refusal_rate"] = split["false_refusal_rate"] = None
    return m


def format_table(results: list[Metrics]) -> str:
    def pct(x):
        return "—" if x is None else f"{x:.3f}"
    head = ["system", "hit@1", "hit@3", "hit@5", "MRR@10", "kw recall", "refused (unans.)", "false refusals"]
    rows = [[m.name, pct(m.hit1), pct(m.hit3), pct(m.hit5), pct(m.mrr10), pct(m.keyword_recall),
             pct(m.refusal_rate), pct(m.false_refusal_rate)] for m in results]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    first = results[0]
    lines = [f"{first.answerable} answerable and {first.unanswerable} unanswerable questions",
             line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    splits = sorted({name for m in results for name in m.by_split})
    if splits:
        lines.append("by split (dev: tuned on, test: held out):")
        for m in results:
            parts = []
            for name in (n for n in splits if n in m.by_split):
                sm = m.by_split[name]
                part = f"{name} ({sm['answerable']}) hit@1 {sm['hit1']:.3f} hit@5 {sm['hit5']:.3f} MRR@10 {sm['mrr10']:.3f}"
                if sm["refusal_rate"] is not None:
                    part += f", refused {pct(sm['refusal_rate'])} of {sm['unanswerable']}, false {pct(sm['false_refusal_rate'])}"
                parts.append(part)
            lines.append(f"  {m.name}: " + "; ".join(parts))
    return "\n".join(lines)
