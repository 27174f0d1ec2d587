"""Hybrid retrieval: dense (FAISS cosine) + BM25 over jieba tokens, fused by the sum of their z-scores.

This is the one place that joins an embedder and an index. A search:
  1. checks the question (empty -> QueryError; longer than max_question_chars -> truncated with a notice);
  2. ranks chunks by cosine (FAISS inner product on normalized vectors) and by BM25 (rank_bm25's BM25Okapi
     used directly, not LangChain's BM25Retriever, because we need the scores, not only the documents); a
     question written wholly in English is ranked as kb.glossary.retrieval_question reads it (its terms in the
     articles' Chinese, its question frame dropped), while step 4 reads the question as typed;
  3. fuses the two rankers by their scores' z-scores: each ranker proposes its top `candidates` chunks, and a
     candidate scores z_dense + bm25_weight * z_bm25, where z = (score - mean) / std over all chunks of the
     index (how far the chunk stands out from the corpus for that ranker); adds a boost to the article the
     reader is on (`prefer_slug`), merges overlapping windows of the same section into one hit;
  4. decides whether the knowledge base can answer (`decide`) from the evidence: lexical coverage (the
     largest IDF-weighted share of the question's words that one top BM25 chunk contains; a word the
     corpus never saw, typically a colloquial compound jieba made up, is matched by its characters), the
     top cosine, and whether both rankers agree on some chunk near the top.

Why z-score fusion and not reciprocal rank fusion (RRF): RRF keeps only ranks, so it cannot tell a BM25 first
place that stands far above the rest (a rare term such as S_churn, PYTHONBREAKPOINT, static_graph) from one
that barely wins. On the grown dev set (349 questions) weighted RRF (rrf_k 60, BM25 weight 1.5) had MRR@10
0.956 against 0.964 for BM25 alone; of the 26 questions where it ranked the right article differently from
BM25, it ranked 16 worse, and in 13 of those the dense ranker had no chunk of the right article in its top
10: a confident wrong dense first place (1/61) plus a mid BM25 rank outscored the BM25 winner. A z-score keeps the
margin: BM25's best chunk stands 8.8 standard deviations above the mean (median; 5.1 to 13.7 from the 10th
to the 90th percentile), the best cosine only 3.4 (m3e-small's cosines are crowded in 0.70-0.88), so a
clear lexical match decides and the dense ranker decides among chunks BM25 cannot separate (paraphrases,
"[[0]*3]*3 为什么改一个全变了"). With weight 1, the plain sum, the split the settings were tuned on
(`split: dev`, 139 answerable) has MRR@10 0.970 (BM25 0.952, dense 0.777, RRF 0.938) and the held-out split
(`split: test`, 146) 0.995 (BM25 0.976, dense 0.891, RRF 0.973); BM25 weights 0.8 to 3 give 0.968-0.970 on dev.
Alternatives tuned on the dev split: RRF retuned (rrf_k 10, BM25 weight 3, 10 candidates) 0.969 dev and
0.981 test; a convex combination of max-normalized scores needs a tuned weight (0.85 on BM25, 40 candidates)
for 0.968 dev and 0.994 test; min-max-normalized at best 0.965 dev. The z-score sum needs no weight. Hybrid now loses to BM25 on 2 questions (tf-09, edm-17) and beats it on 11.

Why these signals (refusal): with m3e-small the top cosine of an off-topic question (0.66-0.80 on the dev set)
overlaps that of answerable ones (0.70-0.88), so cosine alone cannot refuse. Off-topic questions name
things the articles do not contain (Java G1, asyncio, Redis), which coverage sees; answerable questions
in the reader's own words have low coverage but both rankers find the same chunk.

Mode "dense" or "bm25" ranks by one component only (the baselines of `kb eval --compare`); the refusal
decision is the same in every mode.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from kb.chunking import Chunk
from kb.config import Config
from kb.embedding import Embedder
from kb.errors import QueryError
from kb.index import VectorIndex
from kb import glossary, refusal, token_cache
from kb.terms import TECH_NAMES, content_terms, dictionary_word, names, stem
from kb.text import tokenize

MODES = ("hybrid", "dense", "bm25")
_CJK_WORD = re.compile(r"^[\u3400-\u9fff]+$")


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float                   # fused score (sum of z-scores, plus the prefer boost), or the component in one-ranker modes
    dense_score: float             # cosine between question and chunk
    bm25_score: float
    dense_rank: int | None         # 1-based rank among the dense candidates, None when outside them
    bm25_rank: int | None


@dataclass(frozen=True)
class ArticleRef:
    slug: str
    title: str
    score: float                   # best fused score of the article's chunks


@dataclass(frozen=True)
class Evidence:
    top_dense: float               # the highest cosine over all chunks
    top_bm25: float
    coverage: float                # best IDF-weighted share of question tokens in one top BM25 chunk
    agreement: int | None          # min over chunks of max(dense rank, BM25 rank); None: no chunk in both
    tokens: tuple[str, ...]
    # Added for the calibrated decision (kb.refusal); defaults keep hand-built Evidence valid.
    char_coverage: float = 0.0     # best share of the question's character bigrams (and Latin words) in one top chunk
    unknown_share: float = 0.0     # IDF-weighted share of the question's tokens that no chunk contains
    dense_margin: float = 0.0      # top cosine minus the 10th best: how much the best chunks stand out
    # From the question's content terms (kb.terms.content_terms: no generic words, plural -s dropped):
    lead_name_off: float = 0.0     # 1.0 when a Chinese question opens with a capitalised name (Java, Rust, C++) that the
                                   # first-ranked chunk's article title and headings do not name (nor a longer word holding it)
                                   # and that fewer than LEAD_MIN_CHUNKS of its chunks contain (Java: one, in passing)
    lead_off_topic: float = 0.0    # 1.0 when a Chinese question's first content term is Latin, not in those headings and
                                   # in fewer than LEAD_MIN_CHUNKS of the article's chunks (deepcopy, c_noise are in more)
    unknown_word: float = 0.0      # 1.0 when a content term is a real word no chunk contains: a Latin word (asyncio) or
                                   # a word of jieba's dictionary (简历); a typo or an ad-hoc compound does not count;
                                   # 1.0 also when the question has no content term


@dataclass(frozen=True)
class SearchResult:
    question: str                  # as searched (after truncation)
    hits: list[Hit]                # best first; kept when refused, for display and diagnosis
    answerable: bool
    confidence: float              # 0..1, 0.5 at the refusal boundary
    notice: str | None             # truncation and/or refusal message for the reader
    nearest_articles: list[ArticleRef]
    evidence: Evidence | None = None
    retrieval: str = "hybrid"      # "bm25" while the semantic index is being built (see kb/warm_start.py)


def clean_question(question: str, max_chars: int) -> tuple[str, str | None]:
    if not isinstance(question, str) or not question.strip():
        raise QueryError("问题为空：请输入要检索的问题 (the question is empty)")
    question = question.strip()
    if len(question) > max_chars:
        return question[:max_chars], f"问题过长（{len(question)} 字），只检索了前 {max_chars} 字。"
    return question, None


def zscores(scores: np.ndarray) -> np.ndarray:
    """(score - mean) / standard deviation over all chunks; zeros when the scores do not vary (one chunk, or
    a question with no BM25 token): such a ranker then says nothing about any chunk."""
    scores = np.asarray(scores, np.float64)
    std = scores.std() if scores.size else 0.0
    return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)


def decide(evidence: Evidence, config: Config, model_id: str | None = None) -> tuple[bool, float]:
    """Whether the knowledge base can answer, and a confidence in 0..1 (0.5 on the boundary).

    With the embedding model the refusal coefficients were fitted for (kb/refusal_model.json), the calibrated
    logistic decision of `kb.refusal`; with any other model, the hand-set thresholds (`decide_thresholds`).
    """
    model = refusal.load_model()
    if model is not None and model.applies_to(model_id):
        return model.decide(evidence)
    return decide_thresholds(evidence, config)


def decide_thresholds(evidence: Evidence, config: Config) -> tuple[bool, float]:
    """The hand-set rule (the engine's decision before kb.refusal, kept as the fallback and the baseline).

    Answerable when coverage >= min_coverage, or when top cosine >= min_dense and some chunk is within the
    top max_agreement_rank of both rankings. The confidence is a logistic of the margin past the nearer
    of the two boundaries (coverage in units of 0.1, cosine in units of 0.02, agreement in ranks / 10).
    """
    lexical = (evidence.coverage - config.min_coverage) / 0.1
    agreement = config.candidates + 1 if evidence.agreement is None else evidence.agreement
    semantic = min((evidence.top_dense - config.min_dense) / 0.02, (config.max_agreement_rank - agreement) / 10)
    margin = max(lexical, semantic)
    return margin >= 0, 1.0 / (1.0 + math.exp(-margin))


def merge_overlaps(hits: list[Hit]) -> list[Hit]:
    """Hits whose chunks are overlapping windows of one section become one hit, at the better one's rank.

    The merged chunk spans both windows: its text is the exact union (the chunks record their spans).
    """
    merged: list[Hit] = []
    for hit in hits:
        c = hit.chunk
        for i, kept in enumerate(merged):
            k = kept.chunk
            if (k.slug, k.anchor) == (c.slug, c.anchor) and c.start < k.end and k.start < c.end:
                first, second = (k, c) if k.start <= c.start else (c, k)
                text = first.text + second.text[first.end - second.start:] if second.end > first.end else first.text
                chunk = replace(k, text=text, start=first.start, end=max(first.end, second.end),
                                position=min(k.position, c.position),
                                embed_text=k.embed_text.split("\n", 1)[0] + "\n" + text)
                merged[i] = replace(kept, chunk=chunk)
                break
        else:
            merged.append(hit)
    return merged


@dataclass(frozen=True)
class _Ranking:
    """One text's dense and BM25 scores over every chunk and their fused order."""
    tokens: list[str]
    dense_top: list[tuple[int, float]]
    dense_all: np.ndarray
    bm25_all: np.ndarray
    bm25_top: list[int]
    dense_rank: dict[int, int]
    bm25_rank: dict[int, int]
    fused: dict[int, float]
    ranked: list[int]


class HybridRetriever:
    """Search over one loaded index with one embedder. Build once; `search` is cheap.

    `dense=False` ranks by BM25 alone and never calls the embedder: the app serves this way while the
    semantic index is being built (the index then holds the chunks with placeholder vectors).
    """

    def __init__(self, index: VectorIndex, embedder: Embedder, config: Config, dense: bool = True):
        from rank_bm25 import BM25Okapi
        self.index, self.embedder, self.config, self.dense = index, embedder, config, dense
        # The chunks' tokens come from the data folder's cache where it holds them (kb/token_cache.py);
        # with a shared PostgreSQL store the replicas keep no files, so each cuts its own.
        docs = token_cache.corpus_tokens([c.embed_text for c in index.chunks],
                                         None if config.database_url else config.home)
        # BM25Okapi divides by the corpus size: an empty index gets no BM25 model.
        self.bm25 = BM25Okapi(docs) if docs else None
        self.doc_tokens = [set(d) for d in docs]
        self.doc_chars = [set(c.embed_text.lower()) for c in index.chunks]
        self.doc_bigrams = [char_bigrams(c.embed_text) for c in index.chunks]
        gram_df = Counter(g for d in self.doc_bigrams for g in d)
        n_docs = len(index.chunks)
        self.gram_idf = {g: math.log((n_docs + 1) / (f + 0.5)) for g, f in gram_df.items()}
        self.unknown_gram_idf = math.log((n_docs + 1) / 0.5)
        df = Counter(t for d in self.doc_tokens for t in d)
        n = len(docs)
        self.idf = {t: math.log((n - f + 0.5) / (f + 0.5) + 1) for t, f in df.items()}
        self.unknown_idf = math.log((n + 0.5) / 0.5 + 1)      # a token no chunk contains
        self.known_stems = {stem(t) for t in df}          # every chunk term, stemmed (plural -s dropped)
        # What each article is about: the stems of its title and headings (a term met in passing is not there).
        self.topic_stems: dict[str, set[str]] = {}
        for c in index.chunks:
            self.topic_stems.setdefault(c.slug, set()).update(stem(t) for t in tokenize(" ".join(c.heading_path)))
        # And what it discusses: in how many of its chunks each stem occurs (Java, met once in passing, is in one).
        self.stem_chunks: dict[str, Counter] = {}
        for c, d in zip(index.chunks, self.doc_tokens):
            self.stem_chunks.setdefault(c.slug, Counter()).update({stem(t) for t in d})

    def coverage(self, tokens: list[str], row: int) -> float:
        """IDF-weighted share of the distinct `tokens` that chunk `row` contains.

        A Chinese token no chunk contains counts by the share of its characters the chunk contains: jieba
        cuts colloquial phrasing into compounds the articles never use ("能当", "删掉"), whose meaning
        is in their characters; a Latin token the corpus never saw (asyncio, redis) counts as missing.
        """
        distinct = set(tokens)
        if not distinct:
            return 0.0
        found = total = 0.0
        for t in distinct:
            w = self.idf.get(t, self.unknown_idf)
            total += w
            if t in self.doc_tokens[row]:
                found += w
            elif t not in self.idf and _CJK_WORD.match(t):
                found += w * sum(ch in self.doc_chars[row] for ch in t) / len(t)
        return found / total

    def discusses(self, slug: str, term: str) -> bool:
        """Whether an article discusses `term` (a stem of 2+ characters; a lone letter is a variable, not a subject):
        in LEAD_MIN_CHUNKS of its chunks or more."""
        return len(term) >= 2 and self.stem_chunks.get(slug, Counter())[term] >= LEAD_MIN_CHUNKS

    def lead_off_topic(self, terms: tuple[str, ...], row: int) -> float:
        # The subject is the first term of 2+ characters: a lone letter or digit is a variable or a number (c_noise, K).
        lead = next((t for t in terms if len(t) >= 2), None)
        if lead is None or not lead.isascii() or all(t.isascii() for t in terms):
            return 0.0
        slug = self.index.chunks[row].slug
        return float(lead not in self.topic_stems.get(slug, set()) and not self.discusses(slug, lead))

    def lead_name_off(self, question: str, terms: tuple[str, ...], row: int) -> float:
        slug = self.index.chunks[row].slug
        topic = self.topic_stems.get(slug, set())
        off = lambda name: not self.discusses(slug, name) and not any(name in t or (len(t) >= 3 and t in name) for t in topic)
        if not _CJK_RUN.search(question):
            # An English question naming another language or framework ("what is the java memory model").
            return float(any(off(n) for n in names(question) if n in TECH_NAMES))
        m = _LEAD_NAME.match(question)
        if not m or sum(t.isascii() for t in terms) >= 3 or all(t.isascii() for t in terms):
            return 0.0
        return float(off(stem(m.group(1).lower())))

    def char_coverage(self, grams: set[str], row: int) -> float:
        """IDF-weighted share of the question's character bigrams (and Latin words) that chunk `row` contains:
        a typo or a near-synonym breaks one jieba word but keeps most of its neighbours' bigrams."""
        if not grams:
            return 0.0
        weights = {g: self.gram_idf.get(g, self.unknown_gram_idf) for g in grams}
        return sum(w for g, w in weights.items() if g in self.doc_bigrams[row]) / sum(weights.values())

    def unknown_share(self, tokens: list[str]) -> float:
        distinct = set(tokens)
        if not distinct:
            return 1.0
        total = sum(self.idf.get(t, self.unknown_idf) for t in distinct)
        return sum(self.unknown_idf for t in distinct if t not in self.idf) / total

    def _rank(self, text: str, depth: int, mode: str, prefer_slug: str | None) -> _Ranking:
        cfg = self.config
        # Dense: cosine of normalized vectors, top candidates from FAISS, exact scores for every row.
        if self.dense:
            query = self.embedder.embed_query(text)
            dense_top = self.index.search(query, depth)
            dense_all = self.index.scores(query)
        else:
            dense_top, dense_all = [], np.zeros(len(self.index), np.float32)
        # BM25 over jieba tokens; rows with no shared token are not candidates.
        tokens = tokenize(text)
        bm25_all = self.bm25.get_scores(tokens) if tokens else np.zeros(len(self.index))
        order = np.argsort(-bm25_all, kind="stable")[:depth]
        bm25_top = [int(r) for r in order if bm25_all[r] > 0]

        dense_rank = {row: i for i, (row, _) in enumerate(dense_top, start=1)}
        bm25_rank = {row: i for i, row in enumerate(bm25_top, start=1)}
        if mode == "hybrid":
            # Each ranker's score in standard deviations above its own mean over all chunks, summed.
            z_dense, z_bm25 = zscores(dense_all), zscores(bm25_all)
            candidates = {r for r, _ in dense_top} | set(bm25_top)
            fused = {r: float(z_dense[r] + cfg.bm25_weight * z_bm25[r]) for r in candidates}
        elif mode == "dense":
            fused = {r: s for r, s in dense_top}
        else:
            fused = {r: float(bm25_all[r]) for r in bm25_top}
        if prefer_slug and mode == "hybrid":
            fused = {r: s + (cfg.prefer_boost if self.index.chunks[r].slug == prefer_slug else 0.0)
                     for r, s in fused.items()}
        ranked = sorted(fused, key=lambda r: (-fused[r], r))
        return _Ranking(tokens, dense_top, dense_all, bm25_all, bm25_top, dense_rank, bm25_rank, fused, ranked)

    def search(self, question: str, k: int | None = None, prefer_slug: str | None = None,
               mode: str = "hybrid") -> SearchResult:
        assert mode in MODES, f"mode must be one of {MODES}"
        cfg = self.config
        k = k or cfg.top_k
        depth = max(cfg.candidates, k)
        question, notice = clean_question(question, cfg.max_question_chars)
        if not len(self.index):
            return SearchResult(question, [], False, 0.0, _join(notice, "知识库还是空的：没有已索引的文章。"), [])

        # The question as typed decides answerability (the refusal model was fitted on it); a wholly English question
        # is ranked in the articles' Chinese, without its question frame (kb.glossary.retrieval_question).
        typed = self._rank(question, depth, mode, prefer_slug)
        searched = glossary.retrieval_question(question)
        found = typed if searched == question else self._rank(searched, depth, mode, prefer_slug)
        hits = [Hit(self.index.chunks[r], found.fused[r], float(found.dense_all[r]), float(found.bm25_all[r]),
                    found.dense_rank.get(r), found.bm25_rank.get(r)) for r in found.ranked]
        hits = merge_overlaps(hits[: 3 * k])[:k]
        tokens, dense_top, bm25_all, bm25_top = typed.tokens, typed.dense_top, typed.bm25_all, typed.bm25_top
        dense_rank, bm25_rank, ranked = typed.dense_rank, typed.bm25_rank, typed.ranked

        # Evidence uses the standard candidate depth, whatever k the caller asked for.
        grams = char_bigrams(question)
        terms = content_terms(tokens, self.known_stems.__contains__, question)
        top_rows = {r for r, _ in dense_top[: cfg.candidates]} | set(bm25_top[: cfg.candidates])
        both = [max(dense_rank[r], bm25_rank[r]) for r in bm25_rank if r in dense_rank
                and dense_rank[r] <= cfg.candidates and bm25_rank[r] <= cfg.candidates]
        evidence = Evidence(
            top_dense=float(dense_top[0][1]) if dense_top else 0.0,
            top_bm25=float(bm25_all.max()) if len(bm25_all) else 0.0,
            coverage=max((self.coverage(tokens, r) for r in bm25_top[: cfg.candidates]), default=0.0),
            agreement=min(both, default=None),
            tokens=tuple(tokens),
            char_coverage=max((self.char_coverage(grams, r) for r in top_rows), default=0.0),
            unknown_share=self.unknown_share(tokens),
            dense_margin=float(dense_top[0][1] - dense_top[min(9, len(dense_top) - 1)][1]) if dense_top else 0.0,
            lead_name_off=self.lead_name_off(question, terms, ranked[0]) if ranked else 0.0,
            lead_off_topic=self.lead_off_topic(terms, ranked[0]) if ranked else 0.0,
            # A question with no content term at all (😀, "？？") has nothing the corpus could hold, like unknown_share.
            unknown_word=float(not terms or any(t not in self.known_stems and (t.isascii() or dictionary_word(t))
                                                for t in terms)))
        answerable, confidence = decide(evidence, cfg, getattr(self.embedder, "model_id", None))
        nearest = _nearest_articles(found.ranked, found.fused, self.index.chunks)
        if not answerable:
            titles = "、".join(f"《{a.title}》" for a in nearest)
            notice = _join(notice, f"知识库里没有足够相关的内容来回答这个问题。最接近的文章：{titles}")
        return SearchResult(question, hits, answerable, confidence, notice, nearest, evidence,
                            retrieval="hybrid" if self.dense else "bm25")


LEAD_MIN_CHUNKS = 3      # an article discusses a term it has in this many chunks (lead_off_topic, lead_name_off)
_LEAD_NAME = re.compile(r"\s*([A-Z][A-Za-z]*[+#]*)(?![A-Za-z0-9_.])")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_LATIN_WORD = re.compile(r"[a-z][a-z0-9_]+")


def char_bigrams(text: str) -> set[str]:
    """Character bigrams of the CJK runs of `text` (a lone character counts as itself) and its Latin words."""
    text = text.lower()
    grams = set()
    for run in _CJK_RUN.findall(text):
        grams.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    grams.update(_LATIN_WORD.findall(text))
    return grams


def _nearest_articles(ranked: list[int], fused: dict[int, float], chunks: list[Chunk], n: int = 3) -> list[ArticleRef]:
    refs: dict[str, ArticleRef] = {}
    for r in ranked:
        c = chunks[r]
        if c.slug not in refs:
            refs[c.slug] = ArticleRef(c.slug, c.title, fused[r])
            if len(refs) == n:
                break
    return list(refs.values())


def _join(*parts: str | None) -> str | None:
    text = " ".join(p for p in parts if p)
    return text or None
