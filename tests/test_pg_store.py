"""The PostgreSQL + pgvector store against a real server (pgserver): the same hits as FAISS, incremental
indexing one transaction per article, a crash mid-index, a replica picking up another's write, migrations,
an unreachable database, and `kb eval` giving the FAISS figures on the real model."""
import json
from pathlib import Path

import numpy as np
import pytest

from kb import cli
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.errors import IndexMissing, StoreError
from test_index import TERMS, write_article, write_corpus

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT / "tests" / "data" / "devset.jsonl"
QUERIES = ["元组不可变", "循环引用 gc", "生成器惰性", "列表", "红烧肉"]


class BucketEmbedder(FakeEmbedder):
    """Vector i = how many characters c of the text have ord(c) % 16 == i, L2-normalized: every text gets a
    non-zero vector, so cosines do not tie (FAISS and HNSW order exact ties differently, and a rank enters
    the fused score)."""

    def __init__(self):
        super().__init__(tuple(str(i) for i in range(16)))
        self.model_id = "fake:buckets16"

    def _embed(self, texts, is_query):
        if not is_query:
            self.calls.append(len(texts))
        counts = np.zeros((len(texts), 16), np.float32)
        for row, text in enumerate(texts):
            for ch in text:
                counts[row, ord(ch) % 16] += 1
        return counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "articles")


def make_kb(folder, tmp_path, url=None, name="home", embedder=None, **changes):
    config = Config(articles_dir=folder, home=tmp_path / name, database_url=url, **changes)
    return KnowledgeBase(config, embedder=embedder or FakeEmbedder(TERMS))


def hits(kb, question):
    r = kb.search(question)
    return (r.answerable, round(r.confidence, 9), [a.slug for a in r.nearest_articles],
            [(h.chunk.id, round(h.score, 9), round(h.dense_score, 6), h.dense_rank, h.bm25_rank) for h in r.hits])


def test_postgres_gives_the_same_hits_as_faiss(corpus, tmp_path, pg_url):
    pg, files = (make_kb(corpus, tmp_path, pg_url, embedder=BucketEmbedder()),
                 make_kb(corpus, tmp_path, name="files", embedder=BucketEmbedder()))
    s_pg, s_files = pg.index(), files.index()
    assert (s_pg.added, s_pg.chunks_total) == (s_files.added, s_files.chunks_total) == (["gens", "lists", "refs"], 6)
    assert type(pg.loaded_index()).__name__ == "PgIndex" and pg.loaded_index().version == "1"
    for q in QUERIES:
        assert hits(pg, q) == hits(files, q), q
    # The dense top-k really comes from pgvector: the nearest chunk to "元组" is the tuple section.
    query = BucketEmbedder().embed_query("元组")
    top = files.loaded_index().search(query, 3)
    assert pg.store.nearest(query, 3) == [(files.loaded_index().chunks[r].id, pytest.approx(s, abs=1e-6)) for r, s in top]
    # A fresh process (a new KnowledgeBase, no local files) reads the same index back.
    again = make_kb(corpus, tmp_path, pg_url, name="other", embedder=BucketEmbedder())
    assert [c.id for c in again.loaded_index().chunks] == [c.id for c in pg.loaded_index().chunks]
    np.testing.assert_allclose(again.loaded_index().vectors, files.loaded_index().vectors, atol=1e-7)
    assert not (tmp_path / "home").exists() and not (tmp_path / "other").exists(), "no files with a database URL"


def test_incremental_index_on_postgres(corpus, tmp_path, pg_url):
    kb = make_kb(corpus, tmp_path, pg_url)
    kb.index()
    write_article(corpus, "lists", "列表是可变的，列表可以追加。\n")          # changed
    (corpus / "gens.md").unlink()                                             # deleted
    write_article(corpus, "more", "新的文章讲引用。\n")                         # added
    summary = kb.index()
    assert (summary.added, summary.changed, summary.deleted, summary.unchanged) == (["more"], ["lists"], ["gens"], ["refs"])
    assert kb.embedder.calls == [6, 2], "only the changed and added articles were embedded"
    assert kb.store.version() == "4", "one version step per written article (3 after the first build's 1)"
    assert [(s.slug, s.state, s.chunks) for s in kb.status()] == [
        ("lists", "indexed", 1), ("more", "indexed", 1), ("refs", "indexed", 2)]
    assert kb.index().changed_anything is False and kb.store.version() == "4", "nothing to write"


def test_a_crash_mid_index_leaves_each_article_whole(corpus, tmp_path, pg_url, monkeypatch):
    from kb.pg_store import PgStore
    kb = make_kb(corpus, tmp_path, pg_url)
    kb.index()
    write_article(corpus, "lists", "列表：新版本。列表。\n")
    write_article(corpus, "refs", "引用：新版本。引用。\n")
    real_insert = PgStore._insert_article

    def insert_then_die(conn, slug, entry, index):
        if slug == "refs":                 # the second article's transaction dies half-way through
            conn.execute("DELETE FROM kb_chunks WHERE slug = 'lists'")   # and tries to take others with it
            raise KeyboardInterrupt("killed while writing refs")
        real_insert(conn, slug, entry, index)
    monkeypatch.setattr(PgStore, "_insert_article", staticmethod(insert_then_die))
    with pytest.raises(KeyboardInterrupt):
        kb.index()
    monkeypatch.undo()
    served = make_kb(corpus, tmp_path, pg_url, name="reader").loaded_index()
    texts = {c.slug: [x.text for x in served.chunks_of(c.slug)] for c in served.chunks}
    assert texts["lists"] == ["列表：新版本。列表。"], "the committed article is at its new version"
    assert texts["refs"] == ["引用计数。", "循环引用要靠 gc 回收。gc 会分代。"], "the killed one is whole, at its old version"
    assert served.manifest.articles["refs"].chunk_ids == ("refs:0", "refs:1")
    summary = make_kb(corpus, tmp_path, pg_url, name="again").index()
    assert (summary.changed, summary.chunks_embedded) == (["refs"], 1), "the next run finishes the job"


def test_a_replica_sees_another_replicas_upload(corpus, tmp_path, pg_url):
    a = make_kb(corpus, tmp_path, pg_url, name="a")
    b = make_kb(corpus, tmp_path, pg_url, name="b", refresh_s=0.2)
    a.index()
    assert b.search("生成器惰性").hits[0].chunk.slug == "gens"
    assert b.chunks("more") == []
    write_article(corpus, "more", "调试器 pdb 的调试命令。调试。\n")
    a.index()
    import time
    deadline = time.monotonic() + 2.0
    while not b.chunks("more") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c.id for c in b.chunks("more")] == ["more:0"], "replica b reloaded the shared index within 2 s"
    assert b.search("调试命令").hits[0].chunk.slug == "more"
    assert "more" in b.articles, "and the article list, for its page"


def test_migrations_upgrade_an_old_schema_and_refuse_a_newer_one(pg_url, corpus, tmp_path):
    import psycopg
    from kb import pg_store
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert pg_store.migrate(conn, target=1) == 0             # a database made by the first release
        conn.execute("INSERT INTO kb_meta (id, model, passage_prompt, dimension, chunker) "
                     "VALUES (1, 'fake', NULL, 5, '{}')")
    store = pg_store.PgStore(pg_url)
    assert store.version() == "0", "upgraded to version 2 on first use; the old row kept, version column added"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM kb_schema").fetchone()[0] == pg_store.SCHEMA_VERSION == 2
        assert conn.execute("SELECT model FROM kb_meta").fetchone()[0] == "fake"
        conn.execute("UPDATE kb_schema SET version = 99")
    store.close()
    with pytest.raises(StoreError, match="schema 版本是 99，本程序只认识到 2"):
        store.version()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE kb_schema")
    with pytest.raises(StoreError, match="没有 kb_schema 版本表"):
        pg_store.PgStore(pg_url).version()


def test_empty_and_unreachable_databases_are_clear_errors(pg_url, tmp_path, capsys, monkeypatch):
    from kb.pg_store import PgStore
    with pytest.raises(IndexMissing, match="还没有索引"):
        PgStore(pg_url).load()
    bad = f"postgresql://postgres:s3cret@/postgres?host={tmp_path}/no-such-socket&connect_timeout=2"
    with pytest.raises(StoreError, match="连不上 PostgreSQL") as info:
        PgStore(bad).load()
    assert "s3cret" not in str(info.value), "the password is never shown"
    monkeypatch.setenv("KB_DATABASE_URL", bad)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kb: error: 连不上 PostgreSQL") and "Traceback" not in err[0], err


@pytest.mark.slow
def test_kb_eval_gives_the_faiss_figures_on_pgvector(tmp_path_factory, pg_url, capsys, monkeypatch):
    """The session's real index (m3e-small over the real articles) copied into PostgreSQL (no second
    embedding pass): `kb eval --json` through pgvector's HNSW gives the FAISS figures within 0.01."""
    from shared_app import real_kb
    from kb.pg_store import PgStore
    files = real_kb(tmp_path_factory)
    index = files.loaded_index()
    PgStore(pg_url).write(index, changed=index.manifest.articles, deleted=(), rebuild=True)

    figures = {}
    for backend in ("faiss", "pgvector"):
        if backend == "pgvector":
            monkeypatch.setenv("KB_DATABASE_URL", pg_url)
        code = cli.main(["--home", str(files.config.home), "eval", str(DEVSET), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        figures[backend] = json.loads(out)
    for key in ("hit1", "hit3", "hit5", "mrr10", "keyword_recall", "refusal_rate", "false_refusal_rate"):
        a, b = figures["faiss"][key], figures["pgvector"][key]
        assert abs(a - b) <= 0.01, f"{key}: FAISS {a:.3f}, pgvector {b:.3f}"
    pg = KnowledgeBase(files.config.with_(database_url=pg_url), embedder=files.embedder)
    assert type(pg.loaded_index()).__name__ == "PgIndex" and pg.status() == files.status()


def test_scale_bench_uses_the_hnsw_index_and_reaches_the_recall_goal(pg_url):
    """kb.pg_bench on a small synthetic set: the queries go through the HNSW index (checked by EXPLAIN inside
    bench_pgvector) and one ef_search setting reaches recall@10 >= 0.95 against FAISS exact search."""
    import faiss
    from kb.bench import synthetic
    from kb.pg_bench import EF_SEARCH, bench_pgvector
    data, queries = synthetic(2000, 64, 20)
    flat = faiss.IndexFlatIP(64)
    flat.add(data)
    _, truth = flat.search(queries, 10)
    rows = bench_pgvector(pg_url, data, queries, truth, log=lambda m: None)
    assert [r.index for r in rows] == [f"pgvector HNSW m=16 ef_search={ef}" for ef in EF_SEARCH]
    marked = [r for r in rows if r.operating_point]
    assert len(marked) == 1 and marked[0].recall10 >= 0.95, [(r.index, r.recall10) for r in rows]
    assert all(0 <= r.recall10 <= 1 and r.p50_ms > 0 for r in rows)


def test_scale_bench_caches_its_vectors_and_reuses_a_kept_build(pg_url, tmp_path):
    """The synthetic set is made once per size (the second call reads the same arrays back, the vectors
    memory-mapped); a build kept with keep=True is queried again by query_only without a new COPY or build."""
    from kb.pg_bench import bench_pgvector, cached_synthetic
    data, queries, truth = cached_synthetic(1500, 64, 12, cache=tmp_path, log=lambda m: None)
    again = cached_synthetic(1500, 64, 12, cache=tmp_path, log=lambda m: None)
    assert isinstance(again[0], np.memmap) and np.array_equal(again[0], data) and np.array_equal(again[2], truth)
    assert len(list(tmp_path.glob("*.npy"))) == 3, "data, queries and truth: one file each"
    info = {}
    built = bench_pgvector(pg_url, data, queries, truth, log=lambda m: None, ef_search=(40,), keep=True, info=info)
    assert info["load_s"] > 0 and info["build_s"] > 0 and info["notices"] == [], info
    logged = []
    info2 = {}
    reused = bench_pgvector(pg_url, data, queries, truth, log=logged.append, ef_search=(40,), query_only=True,
                            info=info2)
    assert info2["reused"] is True and info2["build_s"] == info["build_s"], info2
    assert not any("copied" in m for m in logged), logged
    assert reused[0].recall10 == built[0].recall10 >= 0.95, (built, reused)
    with pytest.raises(SystemExit, match="no kept build of 1,000 x 64"):
        bench_pgvector(pg_url, data[:1000], queries, truth, log=lambda m: None, query_only=True)
