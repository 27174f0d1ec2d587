"""Incremental indexing: compare the articles with the manifest, embed only what changed, save atomically.

An article is unchanged when its content hash equals the manifest's: its chunks and vectors are reused.
Added and changed articles are chunked and embedded; articles gone from the folder are dropped. An article
that was indexed before but cannot be read now (bad YAML, not UTF-8) keeps its previous chunks, so a typo
while editing loses nothing; it is reported as skipped. A different model id, passage prompt or chunker
settings, or an unreadable previous index, rebuilds everything.

This module joins articles, chunker, embedder and index store for writing; it does not search.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from kb import index as store
from kb.articles import Article
from kb.chunking import Chunk, chunk_article
from kb.config import Config
from kb.embedding import Embedder
from kb.errors import ArticleError, IndexError_, IndexMissing
from kb.store import FaissStore, Store

Progress = Callable[[int, int, str], None]     # (done, total, message)
BATCH = 64                                       # chunks per embedding call between progress reports


@dataclass
class IndexSummary:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_unreadable: list[str] = field(default_factory=list)   # indexed before, unreadable now: kept
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, error message)
    chunks_embedded: int = 0
    chunks_total: int = 0
    rebuilt: bool = False
    reason: str | None = None                    # why everything was rebuilt
    seconds: float = 0.0

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.deleted or self.rebuilt)

    def lines(self) -> list[str]:
        out = []
        if self.rebuilt:
            out.append(f"rebuilt the whole index ({self.reason})")
        for label, slugs in (("added", self.added), ("changed", self.changed), ("deleted", self.deleted),
                             ("kept, unreadable now", self.kept_unreadable)):
            if slugs:
                out.append(f"{label}: {', '.join(slugs)}")
        out.append(f"{len(self.unchanged)} article(s) unchanged; embedded {self.chunks_embedded} chunk(s); "
                   f"{self.chunks_total} chunk(s) in the index; {self.seconds:.1f} s")
        out += [f"skipped {message}" for _path, message in self.skipped]
        return out


def _previous(config: Config, embedder: Embedder, rebuild: bool,
              backend: Store) -> tuple[store.VectorIndex | None, str | None]:
    """The previous index if it can be reused, else None and the reason for a full rebuild."""
    if rebuild:
        return None, "--rebuild requested"
    try:
        old = backend.load()
    except IndexMissing:
        return None, "no index yet"
    except IndexError_ as exc:
        return None, f"the previous index is unusable: {exc}"
    m = old.manifest
    if (m.model, m.passage_prompt) != (embedder.model_id, embedder.passage_prompt):
        return None, f"model changed from {m.model} to {embedder.model_id}"
    if m.chunker != config.chunker:
        return None, f"chunker settings changed from {m.chunker} to {config.chunker}"
    return old, None


def update_index(config: Config, articles: list[Article], errors: list[ArticleError], embedder: Embedder,
                 rebuild: bool = False, progress: Progress | None = None,
                 backend: Store | None = None) -> tuple[store.VectorIndex, IndexSummary]:
    """Update the index in `backend` (default: the FAISS files in config.home); returns the index to serve."""
    t0 = time.perf_counter()
    report = progress or (lambda done, total, message: None)
    backend = backend or FaissStore(config.home)
    old, reason = _previous(config, embedder, rebuild, backend)
    summary = IndexSummary(rebuilt=old is None, reason=reason,
                           skipped=[(e.path, str(e)) for e in errors])
    old_entries = old.manifest.articles if old else {}

    entries: dict[str, store.ArticleEntry] = {}
    reused_chunks: list[Chunk] = []
    reused_rows: list[int] = []
    todo: list[Chunk] = []
    for article in articles:
        prev = old_entries.get(article.slug)
        if prev is not None and prev.hash == article.content_hash:
            summary.unchanged.append(article.slug)
            entries[article.slug] = prev
            reused_rows += old.rows(article.slug)
            reused_chunks += old.chunks_of(article.slug)
            continue
        (summary.changed if prev is not None else summary.added).append(article.slug)
        chunks = chunk_article(article, config.chunk_size, config.chunk_overlap)
        todo += chunks
        entries[article.slug] = store.ArticleEntry(article.content_hash, article.title, str(article.path),
                                                   tuple(c.id for c in chunks))
    unreadable = {Path(e.path).name for e in errors}
    for slug, prev in old_entries.items():
        if slug in entries:
            continue
        if Path(prev.path).name in unreadable:
            summary.kept_unreadable.append(slug)
            entries[slug] = prev
            reused_rows += old.rows(slug)
            reused_chunks += old.chunks_of(slug)
        else:
            summary.deleted.append(slug)

    if old is not None and not summary.changed_anything:
        summary.unchanged.sort()
        summary.chunks_total = len(old)
        summary.seconds = time.perf_counter() - t0
        report(0, 0, "nothing changed")
        return old, summary

    # Embed the new chunks in batches, shortest first so a batch pads little, reporting after each batch.
    vectors = [old.vectors[reused_rows]] if old is not None and reused_rows else []
    by_length = sorted(range(len(todo)), key=lambda i: len(todo[i].embed_text))
    new_vectors = [None] * len(todo)
    report(0, len(todo), f"embedding {len(todo)} chunk(s)")
    for start in range(0, len(todo), BATCH):
        rows = by_length[start:start + BATCH]
        for row, vector in zip(rows, embedder.embed_documents([todo[i].embed_text for i in rows])):
            new_vectors[row] = vector
        done = start + len(rows)
        report(done, len(todo), f"embedded {done}/{len(todo)} chunk(s)")
    if todo:
        vectors.append(np.stack(new_vectors))
    dimension = old.manifest.dimension if old is not None else (vectors[0].shape[1] if vectors else embedder.dimension)
    all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, dimension), np.float32)
    manifest = store.Manifest(model=embedder.model_id, passage_prompt=embedder.passage_prompt,
                              dimension=int(all_vectors.shape[1]), chunker=config.chunker, articles=entries)
    new = store.build(reused_chunks + todo, all_vectors, manifest)
    new = backend.write(new, changed=summary.added + summary.changed, deleted=summary.deleted,
                        rebuild=summary.rebuilt)
    report(len(todo), len(todo), "saved")
    for name in ("added", "changed", "deleted", "unchanged", "kept_unreadable"):
        getattr(summary, name).sort()
    summary.chunks_embedded = len(todo)
    summary.chunks_total = len(new)
    summary.seconds = time.perf_counter() - t0
    return new, summary
