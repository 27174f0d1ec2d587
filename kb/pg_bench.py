"""Scale benchmark of the PostgreSQL backend: pgvector HNSW beside FAISS on the same synthetic vectors.

    python -m kb.pg_bench --n 1000000 [--queries 200] [--no-faiss-hnsw] [--pgdata DIR] [--json]
    python -m kb.pg_bench --n 1000000 --pgdata DIR --query-only      # a query pass on the kept index

Vectors and queries are `kb.bench.synthetic` (512-d unit vectors with topical structure, the same ones
`kb bench --scale` gives FAISS), generated once per size and cached as .npy files in the cache folder
(default /tmp/kb-pgbench-cache; the vectors are memory-mapped from there). Ground truth is FAISS exact inner
product (= cosine). Rows:
  - FAISS Flat (exact) and, unless --no-faiss-hnsw, FAISS HNSW32 (efSearch sweep), in process;
  - pgvector HNSW (m=16, ef_construction=64, cosine) built with CREATE INDEX after a binary COPY in batches,
    queried one at a time over the connection as the app does (`ORDER BY embedding <=> q LIMIT 10`) after a
    warm-up pass of other in-distribution queries, hnsw.ef_search swept. Latency includes the client round
    trip; the marked row is the first reaching recall@10 >= 0.95.
Without --database-url a PostgreSQL 16 is started from the `pgserver` wheel in a temporary folder (or in
--pgdata, kept with its table and index for a later --query-only pass) with shared_buffers sized to hold the
index, and stopped at the end. The build gets maintenance_work_mem sized for an in-memory HNSW graph and
max_parallel_maintenance_workers = cores - 1; pgvector's notices (e.g. "hnsw graph no longer fits into
maintenance_work_mem") are printed and kept in the report.
The goal (issue 14): 1M x 512 at p50 <= 10 ms with recall@10 >= 0.95.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from kb.bench import DIM, TARGET_RECALL, ScaleRow, _percentiles, _recall, _sweep, synthetic

EF_SEARCH = (16, 32, 64, 100, 200)
CACHE = Path(tempfile.gettempdir()) / "kb-pgbench-cache"
_MB = 1 << 20


def graph_bytes(n: int, dim: int, m: int) -> int:
    """An estimate of pgvector's HNSW graph for n vectors: the vector (4·dim + 8 bytes), 2m neighbour slots on
    layer 0 (pointer + distance) and the element's bookkeeping — both the in-memory build graph and, within
    about 20 %, the index on disk (three 2 KiB elements per 8 KiB page at dim 512)."""
    return n * (4 * dim + 8 + 2 * m * 16 + 256)


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return 8 << 30


def _mb(nbytes: float) -> str:
    """A PostgreSQL memory setting: nbytes rounded up to 64 MB."""
    return f"{int(-(-nbytes // (64 * _MB)) * 64)}MB"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} x {model}, {_mem_total() / (1 << 30):.0f} GiB"


def cached_synthetic(n: int, dim: int, n_queries: int, cache: Path = CACHE, log=print):
    """(data, queries, truth): `synthetic(n, dim, n_queries)` and the exact top-10 of each query, made once and
    kept in `cache`; the data comes back memory-mapped (read-only), so a 1M x 512 set costs page cache, not
    the process's memory. Truth is FAISS exact inner product."""
    import faiss

    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"synthetic-n{n}-d{dim}-q{n_queries}-seed0"
    paths = {part: stem.with_name(f"{stem.name}.{part}.npy") for part in ("data", "queries", "truth")}
    if not all(p.is_file() for p in paths.values()):
        t = time.perf_counter()
        data, queries = synthetic(n, dim, n_queries)
        flat = faiss.IndexFlatIP(dim)
        flat.add(data)
        _, truth = flat.search(queries, 10)
        del flat
        for part, array in (("data", data), ("queries", queries), ("truth", truth)):
            tmp = paths[part].with_suffix(".tmp.npy")
            np.save(tmp, array)
            tmp.replace(paths[part])          # whole files only: a run killed mid-write leaves no half cache
        del data
        log(f"synthetic: {n:,} x {dim} vectors, {n_queries} queries and their exact top-10 generated in "
            f"{time.perf_counter() - t:.1f} s, cached in {cache}")
    return (np.load(paths["data"], mmap_mode="r"), np.load(paths["queries"]), np.load(paths["truth"]))


def copy_binary(conn, table: str, data: np.ndarray, batch: int = 20_000) -> None:
    """COPY (id, embedding) rows 0..n-1 in PostgreSQL's binary format, built with numpy in batches of `batch`
    rows (the pgvector binary form of a vector: int16 dim, int16 unused, dim big-endian float4)."""
    n, dim = data.shape
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("vec_len", ">i4"), ("dim", ">i2"),
                    ("unused", ">i2"), ("vec", ">f4", (dim,))])
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0))       # signature, flags, no extension
        for start in range(0, n, batch):
            block = np.asarray(data[start:start + batch], dtype=np.float32)
            rows = np.zeros(len(block), row)
            rows["fields"], rows["id_len"], rows["vec_len"], rows["dim"] = 2, 4, 4 + 4 * dim, dim
            rows["id"] = np.arange(start, start + len(block))
            rows["vec"] = block
            copy.write(rows.tobytes())
        copy.write(struct.pack(">h", -1))                                  # trailer


def _built(conn, n: int, dim: int, m: int, ef_construction: int) -> dict | None:
    """The kept build's record when kb_bench holds exactly this build (for --pgdata reuse), else None."""
    if conn.execute("SELECT to_regclass('kb_bench_meta')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT load_s, build_s, built_at FROM kb_bench_meta WHERE n = %s AND dim = %s AND m = %s "
                       "AND ef_construction = %s", (n, dim, m, ef_construction)).fetchone()
    if row is None or conn.execute("SELECT to_regclass('kb_bench_embedding_idx')").fetchone()[0] is None:
        return None
    return {"load_s": row[0], "build_s": row[1], "built_at": row[2].isoformat()}


def bench_pgvector(url: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, m: int = 16,
                   ef_construction: int = 64, log=print, ef_search=EF_SEARCH, keep: bool = False,
                   query_only: bool = False, info: dict | None = None) -> list[ScaleRow]:
    """Load, build and query pgvector (see the module docstring). `keep` leaves the table and its index (and a
    kb_bench_meta row) in the database; `query_only` requires such a kept build of the same n/dim/m/ef and
    only queries it. `info` (a dict) receives load_s, build_s, the memory settings and pgvector's notices."""
    import psycopg
    from pgvector.psycopg import register_vector

    n, dim = data.shape
    info = {} if info is None else info
    notices = info.setdefault("notices", [])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        kept = _built(conn, n, dim, m, ef_construction)
        if query_only and kept is None:
            raise SystemExit(f"--query-only: no kept build of {n:,} x {dim} (m={m}, ef_construction="
                             f"{ef_construction}) in this database; run once with --pgdata DIR first")
        if query_only or kept is not None and keep:
            info.update(kept, reused=True)
            log(f"pgvector: reusing the kept build of {kept['built_at']} ({n:,} vectors, HNSW built in "
                f"{kept['build_s']:.1f} s)")
        else:
            conn.execute("DROP TABLE IF EXISTS kb_bench")
            conn.execute("DROP TABLE IF EXISTS kb_bench_meta")
            conn.execute(f"CREATE TABLE kb_bench (id int PRIMARY KEY, embedding vector({dim}))")
            # 4·dim + 8 bytes is above the TOAST threshold from dim 507 on: keep the vectors inline.
            conn.execute("ALTER TABLE kb_bench ALTER COLUMN embedding SET STORAGE PLAIN")
            t = time.perf_counter()
            copy_binary(conn, "kb_bench", data)
            info["load_s"] = time.perf_counter() - t
            log(f"pgvector: copied {n:,} vectors in {info['load_s']:.1f} s")
            conn.execute("VACUUM ANALYZE kb_bench")
            mwm = _mb(max(64 * _MB, min(1.5 * graph_bytes(n, dim, m), 0.4 * _mem_total())))
            workers = max(0, (os.cpu_count() or 1) - 1)
            conn.add_notice_handler(lambda d: (notices.append(d.message_primary), log(f"  NOTICE: {d.message_primary}")))
            conn.execute(f"SET maintenance_work_mem = '{mwm}'")
            conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
            info.update(maintenance_work_mem=mwm, max_parallel_maintenance_workers=workers)
            log(f"pgvector: building HNSW m={m} ef_construction={ef_construction} with maintenance_work_mem "
                f"{mwm}, {workers} parallel worker(s) ...")
            t = time.perf_counter()
            conn.execute(f"CREATE INDEX kb_bench_embedding_idx ON kb_bench USING hnsw (embedding vector_cosine_ops) "
                         f"WITH (m = {m}, ef_construction = {ef_construction})")
            info["build_s"] = time.perf_counter() - t
            log(f"pgvector: HNSW built in {info['build_s']:.1f} s")
            conn.execute("CREATE TABLE kb_bench_meta (n int, dim int, m int, ef_construction int, load_s float8, "
                         "build_s float8, built_at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO kb_bench_meta (n, dim, m, ef_construction, load_s, build_s) VALUES "
                         "(%s, %s, %s, %s, %s, %s)", (n, dim, m, ef_construction, info["load_s"], info["build_s"]))
        info["index_mb"] = conn.execute("SELECT pg_relation_size('kb_bench_embedding_idx')").fetchone()[0] / _MB
        info["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM kb_bench ORDER BY embedding <=> %s LIMIT 10", (queries[0],)))
        assert "kb_bench_embedding_idx" in plan, f"the queries must use the HNSW index:\n{plan}"
        # Warm-up with other in-distribution queries (stored vectors), so the measured ones find the cache
        # as a serving replica would, without having seen their own paths through the graph.
        warm = np.asarray(data[np.linspace(0, n - 1, min(n, 200)).astype(int)])
        conn.execute(f"SET hnsw.ef_search = {max(ef_search)}")
        t = time.perf_counter()
        for q in warm:
            conn.execute("SELECT id FROM kb_bench ORDER BY embedding <=> %s LIMIT 10", (q,)).fetchall()
        log(f"pgvector: warm-up, {len(warm)} other queries in {time.perf_counter() - t:.1f} s")
        rows = []
        for ef in ef_search:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            found, times = [], []
            for q in queries:
                t = time.perf_counter()
                ids = conn.execute("SELECT id FROM kb_bench ORDER BY embedding <=> %s LIMIT 10", (q,)).fetchall()
                times.append(time.perf_counter() - t)
                found.append([i for (i,) in ids])
            p50, p95 = _percentiles(times)
            rows.append(ScaleRow(n, f"pgvector HNSW m={m} ef_search={ef}", info["build_s"], _recall(found, truth),
                                 p50, p95))
            log(f"  ef_search={ef}: recall@10 {rows[-1].recall10:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        if not keep:
            conn.execute("DROP TABLE kb_bench")
            conn.execute("DROP TABLE IF EXISTS kb_bench_meta")
    chosen = next((r for r in rows if r.recall10 >= TARGET_RECALL), rows[-1])
    chosen.operating_point = True
    return rows


def start_pgserver(folder: Path, shared_buffers: str, log=print):
    """A pgserver PostgreSQL in `folder` (created or reused), restarted once with `shared_buffers`.
    Returns (server, url); stop it with `stop_pgserver`."""
    import psycopg
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(folder, cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    # pg_ctl restart reuses the postmaster's options (pgserver's socket folder, no TCP).
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=120)
    log(f"PostgreSQL (pgserver) in {folder}: shared_buffers {shared_buffers}")
    return server, server.get_uri()


def stop_pgserver(server) -> None:
    from pgserver._commands import pg_ctl
    try:       # the restart changed the postmaster's pid, so pgserver's own cleanup would not find it
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=120)
    except Exception:  # noqa: BLE001 - already stopped
        pass
    server.cleanup()


def run(n: int, n_queries: int, url: str | None, m: int, ef_construction: int, log=print,
        faiss_hnsw: bool = True, pgdata: str | None = None, query_only: bool = False, cache: Path = CACHE) -> dict:
    import faiss

    load0 = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    data, queries, truth = cached_synthetic(n, DIM, n_queries, cache, log)
    rows = []
    if not query_only:
        flat = faiss.IndexFlatIP(DIM)
        t = time.perf_counter()
        flat.add(np.asarray(data))
        flat_build = time.perf_counter() - t
        times = []
        for q in queries[:30]:
            t = time.perf_counter()
            flat.search(q.reshape(1, -1), 10)
            times.append(time.perf_counter() - t)
        rows.append(ScaleRow(n, "FAISS Flat (exact)", flat_build, 1.0, *_percentiles(times)))
        del flat
        log(f"faiss flat done ({n:,} vectors)")
    if faiss_hnsw and not query_only:
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        hnsw.add(np.asarray(data))
        build = time.perf_counter() - t
        log(f"faiss HNSW32 built in {build:.1f} s")
        rows += _sweep(hnsw, n, "FAISS HNSW32 efSearch={}", (16, 32, 64, 128),
                       lambda v: setattr(hnsw.hnsw, "efSearch", v), build, queries, truth)
        del hnsw
    info: dict = {}
    server = None
    folder = None
    if url is None:
        folder = Path(pgdata) if pgdata else Path(tempfile.mkdtemp(prefix="kb-pgbench-"))
        index_bytes = graph_bytes(n, DIM, m)
        server, url = start_pgserver(folder, _mb(max(128 * _MB, min(1.3 * index_bytes, 0.25 * _mem_total()))), log)
    try:
        rows += bench_pgvector(url, data, queries, truth, m, ef_construction, log, keep=pgdata is not None or query_only,
                               query_only=query_only, info=info)
    finally:
        if server is not None:
            stop_pgserver(server)
            if pgdata is None:
                shutil.rmtree(folder, ignore_errors=True)
    load1 = os.getloadavg()
    return {"n": n, "queries": n_queries, "dim": DIM, "cpus": os.cpu_count(), "machine": machine(),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_avg": [load0[0], load1[0]], "load_avg_1_5_15": [list(load0), list(load1)],
            "pgvector": info, "rows": [asdict(r) for r in rows]}


def format_rows(report: dict) -> str:
    lines = ["| vectors | index | build s | recall@10 | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        mark = " ←" if r["operating_point"] else ""
        lines.append(f"| {r['n']:,} | {r['index']}{mark} | {r['build_s']:.1f} | {r['recall10']:.3f} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kb.pg_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="synthetic vectors (default 100000; the goal is 1000000)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--database-url", default=None, help="an existing PostgreSQL with pgvector (default: pgserver)")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--faiss-hnsw", action=argparse.BooleanOptionalAction, default=True,
                   help="also build FAISS HNSW32 (about as long as pgvector's build; default on)")
    p.add_argument("--pgdata", default=None,
                   help="keep pgserver's folder, the table and its index here (reused by a later run)")
    p.add_argument("--query-only", action="store_true", help="only query the build kept with --pgdata")
    p.add_argument("--cache", default=str(CACHE), help=f"folder of the cached synthetic vectors (default {CACHE})")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.query_only and not (args.pgdata or args.database_url):
        p.error("--query-only needs --pgdata DIR (or --database-url) of an earlier run")
    report = run(args.n, args.queries, args.database_url, args.m, args.ef_construction,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True), faiss_hnsw=args.faiss_hnsw,
                 pgdata=args.pgdata, query_only=args.query_only, cache=Path(args.cache))
    print(json.dumps(report, indent=1) if args.json else format_rows(report))
    pg = report["pgvector"]
    print(f"machine: {report['machine']}; {report['started']} to {report['finished']}; load average "
          f"{report['load_avg'][0]:.1f} at the start, {report['load_avg'][1]:.1f} at the end; pgvector load "
          f"{pg.get('load_s', 0):.1f} s, build {pg.get('build_s', 0):.1f} s, index {pg.get('index_mb', 0):.0f} MB, "
          f"shared_buffers {pg.get('shared_buffers')}, maintenance_work_mem {pg.get('maintenance_work_mem')}; "
          f"notices: {pg.get('notices') or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
