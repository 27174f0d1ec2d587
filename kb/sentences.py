"""Sentences for extractive answers: units (`section_units`, `sentence_units`), their cached vectors, and the
baseline MMR picker (`pick_sentences`, the composer before kb.compose, kept for `kb eval --answers`).

The units are `kb.chunking`'s (sentences cut after 。！？；and line breaks, code blocks and `$$` formulas
whole), so an answer sentence is exactly a piece of an indexed chunk. A sentence's relevance blends its
cosine with the question (the knowledge base's own embedding model) and its chunk's cosine:
    r(s) = 0.75 · cos(q, s) + 0.25 · cos(q, chunk(s))
Maximal marginal relevance (Carbonell & Goldstein 1998) then picks sentences one at a time,
    argmax_s  λ · r(s) − (1 − λ) · max_{t picked} cos(s, t),   λ = 0.7,
until MAX_SENTENCES are picked or r falls DROP below the best one.

Sentence vectors are cached per (model, sentence) in this process: `warm_cache` embeds every indexed
sentence once (the app does it in the background after start). The question's vector comes from
`QueryMemoEmbedder`, the wrapper the app gives the knowledge base, which remembers the vector the retrieval
just computed; with both, composing an answer encodes nothing. This module knows sentences and vectors,
not citations or Markdown.
"""
from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from kb import glossary
from kb.articles import parse_code_blocks
from kb.chunking import split_units as chunk_units   # the chunker's own sentence/blocks cut, reused not rewritten
from kb.embedding import Embedder, query_text

MAX_HITS = 4            # sentences come from the top hits only
MAX_SENTENCES = 4
MIN_SENTENCES = 2
LAMBDA = 0.7
DROP = 0.12             # stop when relevance is this far below the best sentence
MIN_CHARS = 8
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)、])\s+|^\s*>\s?")
_ITEM_MARK = re.compile(r"\s*(?:[-*+]|(\d+)[.)、])\s+")
# Sentences that only point at a neighbouring code block or listing, or describe the article itself
# ("本文从内存问题出发……"), read badly on their own in an answer.
_POINTER = re.compile(r"^(?:上面|下面|如下|下例|上例|这段代码|这段|运行结果|输出[为是：:]|本文|本节|本篇|这篇文章|下文)")


@dataclass(frozen=True)
class Candidate:
    text: str
    hit_rank: int        # index of the hit (0 = best) the sentence comes from
    start: int           # character offset in the hit's chunk text: source order
    relevance: float


def split_sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) for every prose sentence of a chunk worth quoting; code and formulas excluded."""
    out = []
    for unit in chunk_units(text, 400):
        if unit.atomic:
            continue
        raw = text[unit.start:unit.end]
        sentence = _LIST_MARK.sub("", raw.strip()).strip()
        if (len(sentence) < MIN_CHARS or sentence.startswith("|") or sentence.startswith("#")
                or sentence.endswith(("：", ":")) or _POINTER.match(sentence)):
            continue   # too short, a table row, or a lead-in to a code block that is not quoted
        out.append((unit.start, sentence))
    return out


@dataclass(frozen=True)
class Unit:
    index: int
    kind: str            # "prose", "block" (code, $$ formula, table), "skip" (heading, too short),
                         # "heading" (a section's heading brought as the lead-in of its first sentence) or, in
                         # an answer's plan (kb.compose), "intro" (the line before an added block)
    text: str            # the sentence without its list mark, or the whole block
    item: int = -1       # in a list item: the index of the item's first unit; -1 outside lists
    list_id: int = -1    # in a list: the index of the list's first unit; -1 outside lists
    mark: str = ""       # in a list item: its mark as Markdown writes it again ("-" or "3.")


def section_units(text: str) -> list[Unit]:
    """The section's sentences and blocks in source order; consecutive table rows make one table block."""
    return list(_section_units(text))


@functools.lru_cache(maxsize=4096)
def _section_units(text: str) -> tuple[Unit, ...]:
    # Cached: an answer cuts every section of the top article, and the cut (the chunker's) costs ~1 ms each.
    units: list[Unit] = []
    table: list[str] = []

    def flush():
        if table:
            units.append(Unit(len(units), "block", "\n".join(table)))
            table.clear()

    item = list_id = -1
    mark = ""
    for u in chunk_units(text, 400):
        raw = text[u.start:u.end].strip()
        if not raw:
            continue
        start = text.index(raw, u.start)
        line_start = text.rfind("\n", 0, start) + 1
        if raw.startswith("|") or (table and text[line_start:].startswith("|")):
            # A table row; a cell holding ；is cut there by the chunker, and the rest of its row is still the row.
            if raw.startswith("|"):
                table.append(raw)
            else:
                table[-1] += raw
            item = list_id = -1
            continue
        flush()
        if u.atomic:
            units.append(Unit(len(units), "block", raw))
            item = list_id = -1
            continue
        # A list item is one line: its first sentence carries the mark, the next ones continue the item.
        m = _ITEM_MARK.match(raw)
        if m is not None and not text[line_start:start].strip():
            item = len(units)
            list_id = item if list_id < 0 else list_id
            mark = f"{m.group(1)}." if m.group(1) else "-"
        elif item < 0 or not _ITEM_MARK.match(text, line_start):
            item = list_id = -1
        sentence = _LIST_MARK.sub("", raw).strip()
        if sentence.startswith("**") and sentence.count("**") % 2:
            # "- **DDIM 是…一阶解法。** 把…" is cut after 。 inside the bold: neither half keeps a stray "**".
            sentence = sentence[2:].strip()
        # Too short, a heading, or a question the article asks (its answer follows; the question is none).
        kind = "skip" if len(sentence) < MIN_CHARS or sentence.startswith("#") or sentence.endswith(("？", "?")) else "prose"
        units.append(Unit(len(units), kind, sentence, item, list_id, mark if item >= 0 else ""))
    flush()
    return tuple(units)


def sentence_units(text: str) -> list[str]:
    """The prose sentences of a chunk or section that answers score (and whose vectors are cached): the
    public unit for storing sentence vectors with the index."""
    return [u.text for u in section_units(text) if u.kind == "prose"]


def code_block_of(text: str) -> str | None:
    """The first code block of `text` (a runnable python one preferred), fences included, followed by its
    shown output when a ```text block comes right after it. An output block alone is not code."""
    blocks = [b for b in parse_code_blocks(text) if b.lang not in ("text", "output", "console")]
    if not blocks:
        return None
    block = next((b for b in blocks if b.lang == "python" and not b.no_run), blocks[0])
    if block.expected_output is None:
        return block.fenced
    return f"{block.fenced}\n\n输出：\n\n```text\n{block.expected_output}\n```"


class _VectorCache:
    """LRU of sentence vectors per embedder model id; thread-safe (the warm-up runs in a thread)."""

    def __init__(self, max_items: int = 50_000):
        self.max_items = max_items
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, embedder, texts: Sequence[str]) -> np.ndarray:
        model = getattr(embedder, "model_id", type(embedder).__name__)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if (model, t) not in self._data))
        if missing:
            fresh = embedder.embed_documents(missing)
            with self._lock:
                for t, v in zip(missing, fresh):
                    self._data[(model, t)] = v
                while len(self._data) > self.max_items:
                    self._data.popitem(last=False)
        with self._lock:
            rows = []
            for t in texts:
                self._data.move_to_end((model, t))
                rows.append(self._data[(model, t)])
        return np.stack(rows) if rows else np.zeros((0, embedder.dimension), dtype=np.float32)

    def put(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Vectors computed elsewhere (stored with the index, see kb/sentence_store.py) for `model_id`."""
        with self._lock:
            for t, v in zip(texts, vectors):
                self._data[(model_id, t)] = v
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


CACHE = _VectorCache()


def sentence_texts(chunk_texts: Iterable[str]) -> list[str]:
    """Every distinct sentence of the given chunks that an answer may score: what `warm_cache` embeds and
    what the index stores beside itself (kb/sentence_store.py), in first-seen order."""
    return list(dict.fromkeys(s for text in chunk_texts for s in sentence_units(text)))


def warm_cache(embedder, chunk_texts: Iterable[str], batch: int = 64, stop: threading.Event | None = None) -> int:
    """Embed every sentence of the given chunks into the cache; returns the number of sentences."""
    sentences = sentence_texts(chunk_texts)
    for i in range(0, len(sentences), batch):
        if stop is not None and stop.is_set():
            break
        CACHE.vectors(embedder, sentences[i:i + batch])
    return len(sentences)


_queries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


def query_vector(embedder, question: str) -> np.ndarray:
    """The question's vector, remembered for the few questions in flight (sentences and demos reuse it)."""
    key = (getattr(embedder, "model_id", type(embedder).__name__), question)
    if key not in _queries:
        _queries[key] = embedder.embed_query(question)
        while len(_queries) > 64:
            _queries.popitem(last=False)
    return _queries[key]


def clear_query_cache() -> None:
    """Forget remembered question vectors (benchmarks measure the embedding of each question)."""
    _queries.clear()


class QueryMemoEmbedder(Embedder):
    """Wraps an embedder and remembers its last query vectors, so the vector the retrieval computed for a
    question is reused when the answer scores sentences against the same question (one encode, not two).

    Same model id and prompts as the wrapped embedder: the index does not notice the wrapper.
    """

    def __init__(self, inner: Embedder, size: int = 64):
        self.inner, self.size = inner, size
        self.model_id = inner.model_id
        self.passage_prompt = getattr(inner, "passage_prompt", None)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def _embed(self, texts, is_query):
        return self.inner._embed(texts, is_query)

    def embed_documents(self, texts):
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            if text in self._memo:
                self._memo.move_to_end(text)
                return self._memo[text]
        vector = self.inner.embed_query(text)
        with self._lock:
            self._memo[text] = vector
            while len(self._memo) > self.size:
                self._memo.popitem(last=False)
        return vector

    def forget(self) -> None:
        with self._lock:
            self._memo.clear()


def prefetch_queries(kb, questions: Sequence[str], batch: int = 64) -> None:
    """Embed many questions in batches before searching them one by one (evaluations, fitting): the
    knowledge base's embedder becomes a QueryMemoEmbedder that remembers them all. One encode per batch
    instead of one per question is several times cheaper on a CPU."""
    emb = kb.embedder
    if not isinstance(emb, QueryMemoEmbedder):
        emb = QueryMemoEmbedder(emb)
        kb._embedder = emb
        kb.retriever.embedder = emb
    typed = [q.strip()[: kb.config.max_question_chars] for q in questions if q and q.strip()]
    # What retrieval embeds (kb.glossary.retrieval_question) and what the sentence scorer reads (its translation).
    texts = list(dict.fromkeys(t for q in typed for t in (q, glossary.retrieval_question(q), glossary.translate(q))))
    emb.size = max(emb.size, len(texts) + 64)
    missing = [t for t in texts if t not in emb._memo]
    for i in range(0, len(missing), batch):
        part = missing[i:i + batch]
        vectors = np.asarray(emb.inner._embed([query_text(t) for t in part], True), dtype=np.float32)
        with emb._lock:
            emb._memo.update(zip(part, vectors))


def rank_texts(embedder, question: str, texts: Sequence[str]) -> list[float]:
    """Cosine of each text with the question (texts cached like sentences)."""
    if not texts:
        return []
    q = query_vector(embedder, question)
    return [float(x) for x in CACHE.vectors(embedder, texts) @ q]


def pick_sentences(embedder, question: str, hits: Sequence, max_hits: int = MAX_HITS,
                   max_sentences: int = MAX_SENTENCES) -> list[Candidate]:
    """The sentences that answer `question`, chosen by MMR from the top hits (see the module docstring)."""
    pool: list[tuple[int, int, str, float]] = []     # (hit rank, offset, sentence, chunk cosine)
    seen = set()
    for rank, hit in enumerate(hits[:max_hits]):
        for offset, sentence in split_sentences(hit.chunk.text):
            if sentence not in seen:          # overlapping windows repeat sentences
                seen.add(sentence)
                pool.append((rank, offset, sentence, hit.dense_score))
    if not pool:
        return []
    q = query_vector(embedder, question)
    vecs = CACHE.vectors(embedder, [p[2] for p in pool])
    relevance = 0.75 * (vecs @ q) + 0.25 * np.array([p[3] for p in pool], dtype=np.float32)
    chosen: list[int] = []
    best = float(relevance.max())
    while len(chosen) < min(max_sentences, len(pool)):
        redundancy = (vecs @ vecs[chosen].T).max(axis=1) if chosen else np.zeros(len(pool))
        mmr = LAMBDA * relevance - (1 - LAMBDA) * redundancy
        mmr[chosen] = -np.inf
        i = int(np.argmax(mmr))
        if len(chosen) >= MIN_SENTENCES and relevance[i] < best - DROP:
            break
        chosen.append(i)
    return [Candidate(pool[i][2], pool[i][0], pool[i][1], float(relevance[i])) for i in chosen]
