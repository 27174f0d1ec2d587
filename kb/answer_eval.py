"""Answer-level evaluation (`kb eval FILE --answers`): what the reader gets, not only what was retrieved.

On the questions of one split of the dev set (default: the held-out "test" split), for a composer
("default" = kb.compose with the calibrated refusal, "baseline" = the MMR composer and the hand-set thresholds
it replaced), over the answerable questions:
  gold_recall        mean share of the question's gold fragments found in the answer (a refusal finds none; a
                     fragment opening with a discourse marker, 所以…, also counts when the answer quotes its
                     sentence without the marker, kb.references.detach, or without its pointers to other
                     parts of the article, 见后文 / 下一节的, kb.references.unpoint)
  gold_hit           share of answers containing at least one gold fragment (several golds are often alternatives)
  gold_precision     mean share of the answer's prose sentences that contain a gold fragment
  section_precision  mean share of the answer's prose sentences taken from a section holding a gold fragment
  key_term_recall    share of questions with a keyword (any of its keywords) in the answer text
  unrelated_rate     share of answers citing an article outside the question's accepted articles
  dangling           answers with a dangling reference (kb.compose.dangling_references)
  median_chars       median prose length of the answers (characters, citations and blocks excluded)
  compose_p50_ms     median composition time after retrieval
and over the split's questions: refusal_rate (out-of-scope refused), false_refusal_rate (answerable refused).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from kb.answer import answer
from kb.compose import answer_elements, dangling_references
from kb.evaluate import DevQuestion
from kb.references import detach, quoted_forms, unpoint
from kb.sentences import prefetch_queries, section_units, warm_cache

ANSWER_KEYS = ("gold_recall", "gold_hit", "gold_precision", "section_precision", "key_term_recall", "unrelated_rate",
               "dangling", "median_chars", "compose_p50_ms", "refusal_rate", "false_refusal_rate")


@dataclass
class AnswerMetrics:
    name: str
    split: str
    answerable: int
    unanswerable: int
    gold_recall: float
    gold_hit: float
    gold_precision: float
    section_precision: float
    key_term_recall: float
    unrelated_rate: float
    dangling: int
    median_chars: float
    compose_p50_ms: float
    refusal_rate: float | None
    false_refusal_rate: float | None
    gold_recall_by_type: dict[str, float] = field(default_factory=dict)
    missed_gold: list[str] = field(default_factory=list)         # ids with gold recall < 1
    unrelated: list[str] = field(default_factory=list)
    dangling_ids: list[str] = field(default_factory=list)
    wrong_decisions: list[str] = field(default_factory=list)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def has_gold(text: str, fragment: str) -> bool:
    """`fragment` is in `text`, or without its opening discourse marker (所以…) as the composer quotes a sentence
    whose predecessor it leaves out, or without its pointers to other parts of the article (见后文) as every
    answer quotes it."""
    forms = [f for f in (fragment, detach(fragment)) if f is not None]
    return any(f in text or unpoint(f) in text for f in forms)


def _as_quoted(section_text: str) -> str:
    """The section's text followed by its sentences as answers quote them (an aside or a pointer dropped), so
    that a quoted sentence is found in the section it came from."""
    units = [u.text for u in section_units(section_text) if u.kind == "prose"]
    return "\n".join([section_text, *(q for t in units for q in quoted_forms(t) if q not in section_text)])


def evaluate_answers(kb, questions: list[DevQuestion], composer: str = "default", split: str = "test") -> AnswerMetrics:
    part = [q for q in questions if split == "all" or q.split == split]
    prefetch_queries(kb, [q.question for q in part])
    # Warm: every indexed sentence embedded once, as the app does in the background after start.
    warm_cache(kb.embedder, [s.text for a in kb.articles.values() for s in a.sections])
    rec, hit, prec, sec_prec, kw, chars, times = [], [], [], [], [], [], []
    by_type: dict[str, list[float]] = {}
    unrelated, dangling, missed, wrong = [], [], [], []
    refused_ok = refused_wrong = 0
    for q in part:
        a = answer(kb, q.question, composer=composer)
        if not q.answerable:
            refused_ok += not a.answerable
            if a.answerable:
                wrong.append(q.id)
            continue
        if not a.answerable:
            refused_wrong += 1
            wrong.append(q.id)
            kw.append(0.0)
            if q.gold:
                rec.append(0.0)
                hit.append(0.0)
                by_type.setdefault(q.qtype or "?", []).append(0.0)
                missed.append(q.id)
            continue
        elements = answer_elements(a.text)
        prose = [t for kind, t in elements if kind == "prose"]
        whole = "\n".join(t for _, t in elements)
        if q.gold:   # unannotated questions (new-*, no gold yet) count for everything but the gold metrics
            r = _mean(has_gold(whole, g) for g in q.gold)
            rec.append(r)
            hit.append(float(any(has_gold(whole, g) for g in q.gold)))
            by_type.setdefault(q.qtype or "?", []).append(r)
            if r < 1:
                missed.append(q.id)
            prec.append(_mean(any(has_gold(t, g) for g in q.gold) for t in prose))
            gold_sections = [_as_quoted(s.text) for slug in q.articles if slug in kb.articles
                             for s in kb.articles[slug].sections if any(g in s.text for g in q.gold)]
            sec_prec.append(_mean(any(t in s for s in gold_sections) for t in prose))
        kw.append(float(any(k.lower() in whole.lower() for k in q.keywords)) if q.keywords else 1.0)
        if any(c.slug not in q.articles for c in a.citations):
            unrelated.append(q.id)
        cited = {c.slug for c in a.citations}
        sections = [s for slug in cited if slug in kb.articles for s in kb.articles[slug].sections]
        if dangling_references(a.text, sections):
            dangling.append(q.id)
        chars.append(sum(len(t) for t in prose))
        times.append(a.timings.get("compose", 0.0))
    na = sum(q.answerable for q in part)
    nu = len(part) - na
    return AnswerMetrics(
        name=composer, split=split, answerable=na, unanswerable=nu,
        gold_recall=_mean(rec), gold_hit=_mean(hit), gold_precision=_mean(prec), section_precision=_mean(sec_prec),
        key_term_recall=_mean(kw), unrelated_rate=len(unrelated) / na if na else 0.0, dangling=len(dangling),
        median_chars=float(statistics.median(chars)) if chars else 0.0,
        compose_p50_ms=float(statistics.median(times)) if times else 0.0,
        refusal_rate=refused_ok / nu if nu else None, false_refusal_rate=refused_wrong / na if na else None,
        gold_recall_by_type={t: round(_mean(v), 3) for t, v in sorted(by_type.items())},
        missed_gold=missed, unrelated=unrelated, dangling_ids=dangling, wrong_decisions=wrong)


def format_answer_table(results: list[AnswerMetrics]) -> str:
    def f(x):
        return "—" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)
    head = ["composer", "gold recall", "gold hit", "gold prec.", "section prec.", "key terms", "unrelated", "dangling",
            "median chars", "compose p50 ms", "refused (oos)", "false refusals"]
    rows = [[m.name, f(m.gold_recall), f(m.gold_hit), f(m.gold_precision), f(m.section_precision), f(m.key_term_recall),
             f(m.unrelated_rate), f(m.dangling), f"{m.median_chars:.0f}", f"{m.compose_p50_ms:.1f}",
             f(m.refusal_rate), f(m.false_refusal_rate)] for m in results]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    first = results[0]
    return "\n".join([f"split {first.split}: {first.answerable} answerable and {first.unanswerable} out-of-scope questions",
                      line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# Why gold is missed ---------------------------------------------------------------------------------------

MISS_BUCKETS = ("refused", "retrieval", "scoring", "budget", "standalone", "not prose")


def _section_map(kb, hits) -> dict:
    sections = {}
    for hit in hits:
        article = kb.articles.get(hit.chunk.slug)
        section = article.section(hit.chunk.anchor) if article else None
        if section is not None:
            sections[(hit.chunk.slug, hit.chunk.anchor)] = section
    return sections


def miss_reason(kb, q: DevQuestion, fragment: str, result, answer_text: str) -> str | None:
    """Why `fragment` (one gold fragment of `q`) is not in the answer; None when it is.
      refused     the question was refused
      retrieval   no candidate section (the top hits' first MAX_SECTIONS distinct sections, and with the fitted
                  model the top article's other sections) holds it
      scoring     a candidate sentence holds it but scores below the chosen ones (not chosen without a budget either)
      budget      chosen when the prose budget is lifted, cut by MAX_CHARS
      standalone  its sentence cannot stand alone (dangling-reference rules) so it is never offered
      not prose   it lies in a block, a heading, a question or a too-short unit, not in a prose sentence"""
    from kb import compose as C

    whole = "\n".join(t for _, t in answer_elements(answer_text))
    if has_gold(whole, fragment):
        return None
    if not result.answerable:
        return "refused"
    sections = _section_map(kb, result.hits)
    top = kb.articles.get(result.hits[0].chunk.slug) if result.hits else None
    article_sections = top.sections if top else ()
    scored = C.score_sentences(kb.embedder, result.question, result.hits, sections, article_sections)
    cands = scored.cands if scored is not None else C.candidates(result.hits, sections)
    where = [(c, u) for c, cand in enumerate(cands) for u in cand.units if fragment in u.text]
    if not where:
        return "not prose" if any(fragment in "\n".join(u.text for u in cand.units) for cand in cands) else "retrieval"
    prose = [(c, u) for c, u in where if u.kind == "prose"]
    if not prose:
        return "not prose"
    if all(scored.groups[(c, u.index)] is None for c, u in prose):
        return "standalone"
    saved = C.MAX_CHARS
    C.MAX_CHARS = 10 ** 6
    try:
        plan = C.select(scored)
    finally:
        C.MAX_CHARS = saved
    chosen = "\n".join(p.text for _, pieces in plan.groups for p in pieces)
    return "budget" if has_gold(chosen, fragment) else "scoring"


def miss_breakdown(kb, questions: list[DevQuestion], composer: str = "default", split: str = "test") -> dict:
    """Per missed gold fragment, the bucket of `miss_reason`; with per-question detail."""
    part = [q for q in questions if (split == "all" or q.split == split) and q.answerable and q.gold]
    prefetch_queries(kb, [q.question for q in part])
    warm_cache(kb.embedder, [s.text for a in kb.articles.values() for s in a.sections])
    counts = {b: 0 for b in MISS_BUCKETS}
    detail = []
    fragments = 0
    for q in part:
        a = answer(kb, q.question, composer=composer)
        result = kb.search(q.question)
        for g in q.gold:
            fragments += 1
            why = miss_reason(kb, q, g, result, a.text)
            if why is not None:
                counts[why] += 1
                detail.append((q.id, why, g))
    return {"split": split, "questions": len(part), "fragments": fragments, "missed": len(detail),
            "buckets": counts, "detail": detail}


def main(argv=None) -> int:
    """python -m kb.answer_eval why [--split test|dev|all] [--json]: why gold fragments are missed."""
    import argparse
    import json

    from kb.config import Config
    from kb.engine import KnowledgeBase
    from kb.evaluate import load_devset

    p = argparse.ArgumentParser(prog="python -m kb.answer_eval")
    p.add_argument("command", choices=["why"])
    p.add_argument("--devset", default="tests/data/devset.jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true")
    p.add_argument("--hand", action="store_true", help="the hand-set scorer over the hits' sections (no fitted model)")
    args = p.parse_args(argv)
    if args.hand:
        from kb import sentence_model
        sentence_model.load_model = lambda *a, **k: None
    kb = KnowledgeBase(Config.from_env())
    kb.loaded_index()
    out = miss_breakdown(kb, load_devset(args.devset), split=args.split)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"split {out['split']}: {out['questions']} questions, {out['fragments']} gold fragments, {out['missed']} missed")
    for b, n in out["buckets"].items():
        print(f"  {b:<11} {n:>4}  ({n / max(out['fragments'], 1):.1%} of fragments)")
    for qid, why, g in out["detail"]:
        print(f"  {qid:<34} {why:<11} {g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
