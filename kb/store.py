"""Where the index is kept: one small interface over the storage backends, chosen by the configuration.

    backend = make_store(config)          # FaissStore(config.home), or PgStore(config.database_url)
    index = backend.load()                # a VectorIndex: chunks, vectors, manifest; .search() asks the backend
    backend.read_manifest()               # the manifest alone (per-article hashes, chunk ids): `kb status`
    index = backend.write(new, changed={"slug"}, deleted=set(), rebuild=False)   # persist, return what to serve
    backend.version()                     # changes whenever any process commits a write; None: nobody else writes

The engine and the indexer talk only to this interface (like LangChain's `VectorStore`), so neither branches
on the backend. The retriever gets the `VectorIndex` that `load`/`write` return: its `search` is FAISS for
the files backend and a pgvector HNSW query for PostgreSQL; BM25 and the refusal evidence are computed the
same way over the same chunks in both.

`FaissStore` is the embedded default: the files of kb/index.py (one generation folder, manifest switched
atomically), behaviour unchanged. `PgStore` (kb/pg_store.py, imported only when a database URL is set)
shares one index between app replicas.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

from kb import index as files
from kb.config import Config
from kb.errors import IndexMissing
from kb.index import Manifest, VectorIndex


class Store(ABC):
    """A persisted index: chunks, vectors and a manifest with per-article hashes."""

    @abstractmethod
    def load(self) -> VectorIndex:
        """The whole index, verified; IndexMissing when none was built, IndexError_ when unusable."""

    @abstractmethod
    def read_manifest(self) -> Manifest:
        """The manifest only (no vectors); IndexMissing / IndexError_ as `load`."""

    @abstractmethod
    def write(self, index: VectorIndex, changed: Iterable[str], deleted: Iterable[str],
              rebuild: bool) -> VectorIndex:
        """Persist `index` (`changed`: slugs added or changed, `deleted`: slugs dropped, `rebuild`: the
        model or chunker changed, everything is new) and return the index to serve from now on.

        A crash part-way leaves every article either at its previous or at its new version, never half."""

    def verify(self) -> None:
        """IndexError_ when the stored index is unusable (status reports it as corrupt); by default only
        the manifest is read, a store with checksums checks them."""
        self.read_manifest()

    def version(self) -> str | None:
        """A token that changes with every committed write by any process; None when this store has no
        other writers to watch (the engine then never polls)."""
        return None

    def exists(self) -> bool:
        try:
            self.read_manifest()
        except IndexMissing:
            return False
        return True

    def describe(self) -> str:
        """Where the index lives, for messages (never a password)."""
        return type(self).__name__

    def close(self) -> None:
        """Release connections; the store may be used again afterwards (it reconnects)."""


class FaissStore(Store):
    """FAISS IndexFlatIP + JSON chunks + manifest in `home` (kb/index.py): the embedded default."""

    def __init__(self, home: Path):
        self.home = Path(home)

    def load(self) -> VectorIndex:
        return files.load(self.home)

    def read_manifest(self) -> Manifest:
        return files.read_manifest(self.home)

    def verify(self) -> None:
        files.verify(self.home)

    def write(self, index, changed, deleted, rebuild) -> VectorIndex:
        # One generation holds every article; the manifest switch makes the whole update atomic.
        files.save(self.home, index)
        return index

    def exists(self) -> bool:
        return files.exists(self.home)

    def describe(self) -> str:
        return str(self.home)


def make_store(config: Config) -> Store:
    """PostgreSQL when `config.database_url` is set, else the FAISS files in `config.home`."""
    if config.database_url:
        from kb.pg_store import PgStore
        return PgStore(config.database_url, hnsw_ef_search=config.hnsw_ef_search)
    return FaissStore(config.home)
