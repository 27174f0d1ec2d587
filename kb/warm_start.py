"""Serve at once on a first start: BM25 answers while the semantic index builds in the background.

    progress = warm_start.start(kb)       # returns at once; progress.state: "building" -> "ready"
    kb.search("列表和元组有什么区别")        # BM25-only until the build is done, then hybrid, no restart

`start` loads a usable index if there is one (ready at once). Otherwise it reads the articles and starts
one thread that chunks them and builds the BM25-only retriever first (jieba over the corpus: seconds, no
model; a search that comes earlier waits for it), serves that, then loads the model (for ONNX, makes the ONNX file on first use), embeds the chunks, embeds and stores the
answer sentences (kb/sentence_store.py), and only then switches the knowledge base to the new index, so
no answer ever waits for a vector. Until the switch, answers score their sentences with
`LexicalEmbedder` (hashed words and character pairs: it needs no model, loads in no time and keeps an
answer's sentences on the question's words). `BuildProgress` is what the page shows.

This module knows the order of a first start; indexing, retrieval and answers stay where they are.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass

import numpy as np

from kb import index as store
from kb.chunking import chunk_article
from kb.embedding import Embedder
from kb.errors import KBError
from kb.retrieval import HybridRetriever
from kb.text import tokenize

log = logging.getLogger("kb")

GATE_TIMEOUT_S = 60.0           # the longest a build waits for its gate (see `start`)
PHASES = {"bm25": "建立关键词索引", "model": "加载嵌入模型", "chunks": "向量化文章片段", "sentences": "向量化答案句子", "": "准备"}


@dataclass
class BuildProgress:
    state: str = "ready"           # "building", "ready" or "failed"
    phase: str = ""                # while building: "model", "chunks" or "sentences"
    done: int = 0
    total: int = 0
    started: float = 0.0           # time.time() of the start of the build
    seconds: float = 0.0           # how long the build took, once ready
    error: str | None = None

    def update(self, phase: str, done: int, total: int) -> None:
        self.phase, self.done, self.total = phase, done, total

    def as_dict(self) -> dict:
        return {"state": self.state, "phase": self.phase, "done": self.done, "total": self.total,
                "seconds": round(self.seconds or (time.time() - self.started if self.started else 0.0), 1),
                "error": self.error, "notice": self.notice()}

    def notice(self) -> str:
        """The sentence the chat page shows ('' once the semantic index serves)."""
        if self.state == "ready":
            return ""
        if self.state == "failed":
            return f"语义索引建立失败（{self.error}）：回答继续只用关键词检索（BM25）。"
        step = PHASES.get(self.phase, self.phase)
        count = f" {self.done}/{self.total}" if self.total else ""
        percent = f"（{100 * self.done // self.total}%）" if self.total else ""
        return (f"语义索引正在建立：{step}{count}{percent}。在此期间回答只用关键词检索（BM25），"
                f"建好后自动切换为混合检索，无需刷新或重启。")


class LexicalEmbedder(Embedder):
    """Hashed bag of jieba words and Chinese character pairs, L2-normalized: cosine = weighted overlap.

    Stands in for the model while it loads, so answers can rank sentences against the question. Hashing
    is crc32 (stable across processes, unlike `hash`).
    """

    model_id = "lexical:jieba+bigrams/4096"
    DIM = 4096

    @property
    def dimension(self) -> int:
        return self.DIM

    def _features(self, text: str) -> list[str]:
        words = tokenize(text)
        chars = [c for c in text.lower() if "\u3400" <= c <= "\u9fff"]
        return words + ["\x00" + a + b for a, b in zip(chars, chars[1:])]

    def _embed(self, texts, is_query):
        out = np.zeros((len(texts), self.DIM), np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                out[row, zlib.crc32(feature.encode("utf-8")) % self.DIM] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def lexical_retriever(kb) -> HybridRetriever:
    """A BM25-only retriever over the articles' chunks, built without the model (placeholder vectors)."""
    chunks = [c for a in kb.articles.values() for c in chunk_article(a, kb.config.chunk_size, kb.config.chunk_overlap)]
    articles = {slug: store.ArticleEntry(a.content_hash, a.title, str(a.path), ())
                for slug, a in kb.articles.items()}
    manifest = store.Manifest(model=LexicalEmbedder.model_id, passage_prompt=None, dimension=1,
                              chunker=kb.config.chunker, articles=articles)
    index = store.VectorIndex(chunks, np.zeros((len(chunks), 1), np.float32), manifest)
    return HybridRetriever(index, LexicalEmbedder(), kb.config, dense=False)


class Interim:
    """The BM25-only retriever, made in the build thread (jieba over the corpus takes seconds) while the
    server starts; a search that comes first waits for it."""

    def __init__(self):
        self._made = threading.Event()
        self._retriever: HybridRetriever | None = None
        self._error: BaseException | None = None

    def set(self, retriever: HybridRetriever | None, error: BaseException | None = None) -> None:
        self._retriever, self._error = retriever, error
        self._made.set()

    def get(self, timeout: float = 300) -> HybridRetriever:
        if not self._made.wait(timeout):
            raise KBError("关键词索引还没有建好，请稍后再试。")
        if self._retriever is None:
            raise KBError(f"关键词索引无法建立：{self._error}")
        return self._retriever


def start(kb, background: bool = True, gate: threading.Event | None = None) -> BuildProgress:
    """Make `kb` answer now; build the semantic index in a thread when there is no usable one.

    `gate`: the build makes the BM25-only retriever at once but loads the model (on a first start: exports
    the ONNX file, seconds of busy Python) only once `gate` is set, or after GATE_TIMEOUT_S; the app sets
    it when its page is ready to be served, so the export does not slow the start of the page."""
    progress = kb.progress
    reason = kb.try_load()
    if reason is None:
        progress.state = "ready"
        return progress
    log.info("serving BM25 answers while the semantic index is built (%s)", reason)
    progress.state, progress.started, progress.error = "building", time.time(), None
    progress.update("bm25", 0, 0)
    kb.reload_articles()                       # in this thread: the page lists the articles at once
    interim = Interim()
    kb.serve_interim(interim, LexicalEmbedder())
    thread = threading.Thread(target=_build, args=(kb, progress, interim, gate), name="kb-index-build", daemon=True)
    thread.start()
    if not background:
        thread.join()
    return progress


def _build(kb, progress: BuildProgress, interim: Interim, gate: threading.Event | None = None) -> None:
    t0 = time.perf_counter()
    try:
        try:
            interim.set(lexical_retriever(kb))
        except Exception as exc:
            interim.set(None, exc)
            raise
        if gate is not None:
            gate.wait(GATE_TIMEOUT_S)
        progress.update("model", 0, 0)
        kb.model_embedder.embed_query("预热")                  # loads the model (makes the ONNX file once)
        progress.update("chunks", 0, 0)
        index, summary = kb.build(progress=lambda done, total, message: progress.update("chunks", done, total))
        progress.update("sentences", 0, 0)
        kb.index_sentences(index, progress=lambda done, total, message: progress.update("sentences", done, total))
        kb.activate(index)
        progress.seconds = time.perf_counter() - t0
        progress.state = "ready"
        log.info("semantic index ready after %.1f s (%d chunks); answers are hybrid now",
                 progress.seconds, summary.chunks_total)
    except Exception as exc:  # noqa: BLE001 - the app keeps serving BM25 answers; one log line says why
        progress.error = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        progress.state = "failed"
        log.error("building the semantic index failed: %s", progress.error)
