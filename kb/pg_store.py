"""The index in PostgreSQL + pgvector, shared by every app replica and every `kb` command (KB_DATABASE_URL).

    backend = PgStore("postgresql://kb:secret@db:5432/kb")
    index = backend.load()       # a PgIndex: chunks and vectors in memory, dense top-k from the HNSW index

Tables (versioned migrations below; `kb_schema` holds the version):
    kb_meta      one row: model id, passage prompt, dimension, chunker settings, `version` (bumped by every
                 committed write: replicas poll it to pick up an upload made on another replica)
    kb_articles  the manifest: per article the content hash, title, path and chunk ids
    kb_chunks    one row per chunk: the chunk as JSON and its vector (`vector(dim)`, HNSW, cosine)

Writes: one transaction per article (delete its rows, insert the new ones, bump the version), so a crash
part-way leaves each article at its previous or its new version and readers never see half of one. A
rebuild (new model or chunker) is one transaction. Readers load a snapshot in one REPEATABLE READ
transaction. Dense search is `ORDER BY embedding <=> q LIMIT k` on the HNSW index (`hnsw.ef_search`);
BM25 and the refusal evidence run in memory over the same chunk texts as with FAISS (kb/retrieval.py), so
both backends give the same answers. We use psycopg 3 + the `pgvector` adapter directly rather than
langchain-postgres: its PGVector store owns its own schema (collections, a JSON metadata column, no
per-article manifest, no version row) and returns no component scores, which the hybrid fusion and the
refusal need.

This module knows SQL; it never embeds and knows nothing about BM25.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading

import numpy as np

from kb.chunking import Chunk
from kb.errors import IndexError_, IndexMissing, StoreError
from kb.index import ArticleEntry, Manifest, VectorIndex
from kb.store import Store

log = logging.getLogger("kb")

SCHEMA_VERSION = 2
_LOCK_ID = 0x6B62_7367          # pg_advisory_xact_lock key serializing migrations and writes ("kbsg")
MIGRATIONS = {
    # 1: the index (chunks, vectors, manifest).
    1: """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE kb_meta (
    id int PRIMARY KEY CHECK (id = 1),
    model text NOT NULL,
    passage_prompt text,
    dimension int NOT NULL,
    chunker jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE kb_articles (
    slug text PRIMARY KEY,
    hash text NOT NULL,
    title text NOT NULL,
    path text NOT NULL,
    chunk_ids jsonb NOT NULL
);
CREATE TABLE kb_chunks (
    id text PRIMARY KEY,
    slug text NOT NULL REFERENCES kb_articles (slug) ON DELETE CASCADE,
    ord int NOT NULL,
    chunk jsonb NOT NULL,
    embedding vector NOT NULL
);
CREATE INDEX kb_chunks_slug ON kb_chunks (slug, ord);
""",
    # 2: replicas share the index: a version counter they poll, and when each article was last written.
    2: """
ALTER TABLE kb_meta ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE kb_articles ADD COLUMN indexed timestamptz NOT NULL DEFAULT now();
""",
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1)), "migrations must be numbered 1..SCHEMA_VERSION"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        from psycopg.conninfo import conninfo_to_dict
        parts = conninfo_to_dict(url)
    except Exception:
        return "postgresql://…"
    where = parts.get("host", "") + (f":{parts['port']}" if parts.get("port") else "")
    return f"postgresql://{parts.get('user', '')}@{where}/{parts.get('dbname', '')}"


class PgIndex(VectorIndex):
    """A snapshot of the PostgreSQL index: rows in manifest order as with FAISS, but `search` asks pgvector's
    HNSW index. `scores` (cosine with every row, for the component scores of fused hits) stays in memory."""

    def __init__(self, chunks, vectors, manifest, store: "PgStore", version: str):
        super().__init__(chunks, vectors, manifest)
        self.store, self.version = store, version
        self._row_of = {c.id: row for row, c in enumerate(self.chunks)}

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        k = min(k, len(self))
        if k <= 0:
            return []
        # A chunk written after this snapshot is not in it: skipped until the engine reloads (≤ refresh_s).
        return [(self._row_of[cid], score) for cid, score in self.store.nearest(query, k) if cid in self._row_of]


class PgStore(Store):
    """See the module docstring. Thread-safe: one connection, one lock (queries take about a millisecond)."""

    def __init__(self, url: str, hnsw_ef_search: int = 100, connect_timeout_s: int = 5):
        self.url, self.ef_search, self.connect_timeout_s = url, int(hnsw_ef_search), connect_timeout_s
        self._conn = None
        self._lock = threading.RLock()

    def describe(self) -> str:
        return redact(self.url)

    # ---- connection and migrations --------------------------------------------------------------------
    def _connect(self):
        import psycopg
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout_s)
        except psycopg.OperationalError as exc:
            raise StoreError(f"连不上 PostgreSQL（{redact(self.url)}）：{str(exc).strip().splitlines()[0]}") from None
        try:
            migrate(conn)
            from pgvector.psycopg import register_vector
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {self.ef_search:d}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _db(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _run(self, work):
        """work(conn) under the lock; a dropped connection is reopened once, then reported as StoreError."""
        import psycopg
        with self._lock:
            for attempt in (1, 2):
                conn = self._db()
                try:
                    return work(conn)
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not conn.broken:
                        raise StoreError(f"PostgreSQL（{redact(self.url)}）出错：{str(exc).strip().splitlines()[0]}") from None
                    log.warning("PostgreSQL connection lost (%s); reconnecting", str(exc).strip()[:200])
                    self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- reading -------------------------------------------------------------------------------------
    def version(self) -> str | None:
        row = self._run(lambda conn: conn.execute("SELECT version FROM kb_meta WHERE id = 1").fetchone())
        return str(row[0]) if row else "empty"

    def read_manifest(self) -> Manifest:
        def work(conn):
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return self._manifest(conn)
        return self._run(work)[0]

    def _manifest(self, conn) -> tuple[Manifest, str]:
        meta = conn.execute("SELECT model, passage_prompt, dimension, chunker, version, created FROM kb_meta "
                            "WHERE id = 1").fetchone()
        if meta is None:
            raise IndexMissing(f"PostgreSQL（{redact(self.url)}）里还没有索引；run `kb index`")
        articles = {slug: ArticleEntry(h, title, path, tuple(ids)) for slug, h, title, path, ids in conn.execute(
            "SELECT slug, hash, title, path, chunk_ids FROM kb_articles ORDER BY slug")}
        manifest = Manifest(model=meta[0], passage_prompt=meta[1], dimension=meta[2], chunker=meta[3],
                            articles=articles, generation=f"pg-v{meta[4]}", created=meta[5].isoformat(timespec="seconds"))
        return manifest, str(meta[4])

    def load(self) -> PgIndex:
        def work(conn):
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                manifest, version = self._manifest(conn)
                rows = conn.execute("SELECT id, chunk, embedding FROM kb_chunks ORDER BY slug, ord").fetchall()
            return manifest, version, rows
        manifest, version, rows = self._run(work)
        expected = [cid for slug in sorted(manifest.articles) for cid in manifest.articles[slug].chunk_ids]
        if [r[0] for r in rows] != expected:
            raise IndexError_(f"PostgreSQL（{redact(self.url)}）：kb_chunks 与 kb_articles 的 chunk id 不一致")
        chunks = [Chunk(**{**data, "heading_path": tuple(data["heading_path"])}) for _, data, _ in rows]
        vectors = np.stack([np.asarray(_array(v), np.float32) for _, _, v in rows]) if rows \
            else np.zeros((0, manifest.dimension), np.float32)
        if vectors.shape[1] != manifest.dimension:
            raise IndexError_(f"PostgreSQL（{redact(self.url)}）：向量维度 {vectors.shape[1]} ≠ {manifest.dimension}")
        return PgIndex(chunks, vectors, manifest, self, version)

    def nearest(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k chunk ids nearest to `query` by cosine through the HNSW index, as (id, cosine), best first."""
        q = np.asarray(query, dtype=np.float32)
        rows = self._run(lambda conn: conn.execute(
            "SELECT id, embedding <=> %s AS d FROM kb_chunks ORDER BY d LIMIT %s", (q, k)).fetchall())
        # pgvector's cosine distance of a zero vector is NaN; its inner product, like FAISS's, is 0.
        return [(cid, 0.0 if d != d else 1.0 - float(d)) for cid, d in rows]

    # ---- writing -------------------------------------------------------------------------------------
    def write(self, index: VectorIndex, changed, deleted, rebuild: bool) -> PgIndex:
        m = index.manifest
        changed, deleted = sorted(set(changed)), sorted(set(deleted))
        if rebuild:
            self._run(lambda conn: self._rebuild(conn, index))
        else:
            for slug in deleted:
                self._run(lambda conn: self._write_article(conn, slug, None, index))
            for slug in changed:
                self._run(lambda conn: self._write_article(conn, slug, m.articles[slug], index))
        return self.load()

    def _rebuild(self, conn, index: VectorIndex) -> None:
        m = index.manifest
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute("DELETE FROM kb_articles")          # cascades to kb_chunks
            conn.execute("DROP INDEX IF EXISTS kb_chunks_hnsw")
            conn.execute(f"ALTER TABLE kb_chunks ALTER COLUMN embedding TYPE vector({int(m.dimension):d})")
            conn.execute(
                "INSERT INTO kb_meta (id, model, passage_prompt, dimension, chunker, version) "
                "VALUES (1, %s, %s, %s, %s, 1) ON CONFLICT (id) DO UPDATE SET model = excluded.model, "
                "passage_prompt = excluded.passage_prompt, dimension = excluded.dimension, "
                "chunker = excluded.chunker, created = now(), version = kb_meta.version + 1",
                (m.model, m.passage_prompt, m.dimension, json.dumps(m.chunker)))
            for slug, entry in sorted(m.articles.items()):
                self._insert_article(conn, slug, entry, index)
            # Built after the rows are in: one pass instead of an insert into the graph per row.
            conn.execute("CREATE INDEX kb_chunks_hnsw ON kb_chunks USING hnsw (embedding vector_cosine_ops)")

    def _write_article(self, conn, slug: str, entry: ArticleEntry | None, index: VectorIndex) -> None:
        """One article's transaction: its old rows go, its new ones (if any) come, the version moves on."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute("DELETE FROM kb_articles WHERE slug = %s", (slug,))
            if entry is not None:
                self._insert_article(conn, slug, entry, index)
            conn.execute("UPDATE kb_meta SET version = version + 1 WHERE id = 1")

    @staticmethod
    def _insert_article(conn, slug: str, entry: ArticleEntry, index: VectorIndex) -> None:
        conn.execute("INSERT INTO kb_articles (slug, hash, title, path, chunk_ids) VALUES (%s, %s, %s, %s, %s)",
                     (slug, entry.hash, entry.title, entry.path, json.dumps(list(entry.chunk_ids))))
        rows = index.rows(slug)
        by_id = {index.chunks[r].id: r for r in rows}
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO kb_chunks (id, slug, ord, chunk, embedding) VALUES (%s, %s, %s, %s, %s)",
                [(cid, slug, ord_, json.dumps(dataclasses.asdict(index.chunks[by_id[cid]]), ensure_ascii=False),
                  index.vectors[by_id[cid]]) for ord_, cid in enumerate(entry.chunk_ids)])


def schema_version(conn) -> int:
    """The schema version of the database: 0 when it has no kb tables at all."""
    if conn.execute("SELECT to_regclass('kb_schema')").fetchone()[0] is None:
        if conn.execute("SELECT to_regclass('kb_chunks')").fetchone()[0] is not None:
            raise StoreError("数据库里有 kb_chunks 表却没有 kb_schema 版本表：不是本程序建的 schema，拒绝使用"
                             "（请换一个数据库，或删掉这些表后重建索引）")
        return 0
    row = conn.execute("SELECT version FROM kb_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(conn, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to `target` (one transaction, serialized across processes); returns the old version.

    A schema newer than this program knows is refused with StoreError: an older program must not write to
    tables whose meaning it does not know."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise StoreError(f"数据库的 schema 版本是 {current}，本程序只认识到 {SCHEMA_VERSION}："
                             "请升级 zh-kb-chat（pip install -U），不要用旧版本写这个数据库")
        if current == target:
            return current
        for version in range(current + 1, target + 1):
            conn.execute(MIGRATIONS[version])
        if current == 0:
            conn.execute("CREATE TABLE kb_schema (version int NOT NULL, upgraded timestamptz NOT NULL DEFAULT now())")
            conn.execute("INSERT INTO kb_schema (version) VALUES (%s)", (target,))
        else:
            conn.execute("UPDATE kb_schema SET version = %s, upgraded = now()", (target,))
            log.warning("PostgreSQL schema upgraded from version %d to %d", current, target)
    return current


def _array(value):
    """A pgvector value as a numpy array (the adapter returns `Vector` objects in pgvector ≥ 0.4)."""
    return value.to_numpy() if hasattr(value, "to_numpy") else value
