"""`kb bench`: how fast the engine is on this machine, and how the vector search would scale.

Backends part (`--backends torch,onnx,onnx-int8`), side by side in one run, each on its own fresh copy of
the index: model load on first use (for ONNX this includes making the ONNX file in an empty cache) and
again from the cache, full build and chunks per second, query-embedding and retrieval latency p50/p95 over
the dev-set questions, the dev-set metrics (`kb eval`) and their difference to torch's.

Engine part, on a copy of the articles in a temporary folder (never the user's index):
  - full build (model already loaded; the load is reported apart) and chunks per second;
  - the incremental update after one article changed, and its ratio to the full build;
  - warm query latency of `KnowledgeBase.search` (retrieval only: query embedding, FAISS, BM25, fusion)
    over the dev-set questions, p50/p95, with the query-embedding share reported apart;
  - peak resident memory of the process.
Scale part, on synthetic vectors of the model's dimension (512) with topical structure in a 32-dimensional
latent space (see `synthetic`), queries drawn from the same distribution. For each size: exact flat inner product (the
ground truth) against IVF-Flat with nlist = sqrt(n) (and HNSW at sizes up to `hnsw_max`): build time,
recall@10 against flat, single-query latency p50/p95. The IVF rows sweep nprobe; the one reported as the
operating point is the smallest nprobe reaching recall@10 >= 0.95.
"""
from __future__ import annotations

import math
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from kb.config import PROJECT, Config

DIM = 512
LATENT = 32
TARGET_RECALL = 0.95
DEFAULT_QUESTIONS = ["列表和元组有什么区别", "gc.collect 返回什么", "pdb 怎么设置断点", "yield from 怎么用",
                     "EDM 的预条件", "DDP 多卡训练怎么启动", "autograd 计算图", "MRO 是什么"]


@dataclass
class ScaleRow:
    n: int
    index: str
    build_s: float
    recall10: float
    p50_ms: float
    p95_ms: float
    operating_point: bool = False


METRICS = ("hit1", "hit3", "hit5", "mrr10", "keyword_recall", "refusal_rate", "false_refusal_rate")


@dataclass
class BackendRow:
    backend: str
    load_s: float = 0.0            # first use with an empty cache (ONNX: includes making the file)
    reload_s: float = 0.0          # loading again from the cache (ONNX: checksum + session)
    build_s: float = 0.0           # full build: embed every chunk + save (median of `builds`)
    chunks_per_s: float = 0.0
    build_cpu_s: float = 0.0       # CPU seconds of this process during the build (median): the work, whatever
                                   # share of the cores the machine's other load left to it
    builds: list = field(default_factory=list)       # every build's seconds, in the order they ran
    build_cpus: list = field(default_factory=list)   # every build's CPU seconds, in the same order
    build_loads: list = field(default_factory=list)  # 1-minute load average at the start of each build
    embed_p50_ms: float = 0.0      # one question's embedding
    embed_p95_ms: float = 0.0
    query_p50_ms: float = 0.0      # KnowledgeBase.search: embedding, FAISS, BM25, fusion
    query_p95_ms: float = 0.0
    metrics: dict = field(default_factory=dict)     # kb eval on the dev set (hybrid engine)
    deltas: dict = field(default_factory=dict)      # metric minus torch's, when torch ran too
    build_speedup: float = 0.0     # torch build_s / build_s
    build_cpu_speedup: float = 0.0  # torch build_cpu_s / build_cpu_s
    embed_speedup: float = 0.0     # torch embed_p50 / embed_p50


@dataclass
class BenchReport:
    articles: int = 0
    chunks: int = 0
    model_load_s: float = 0.0
    full_build_s: float = 0.0
    chunks_per_s: float = 0.0
    incremental_article: str = ""
    incremental_s: float = 0.0
    incremental_ratio: float = 0.0
    queries: int = 0
    query_p50_ms: float = 0.0
    query_p95_ms: float = 0.0
    embed_p50_ms: float = 0.0
    engine_peak_rss_mib: float = 0.0       # after the engine part, before the synthetic vectors
    peak_rss_mib: float = 0.0
    load_avg: tuple[float, float] = (0.0, 0.0)    # 1-minute load average at the start and at the end
    cpus: int = 0
    backend: str = ""                       # the backend of the engine part (the configured one)
    backends: list[BackendRow] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports KiB


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]


def _questions(devset: str | None) -> list[str]:
    from kb.evaluate import load_devset
    path = Path(devset) if devset else PROJECT / "tests" / "data" / "devset.jsonl"
    return [q.question for q in load_devset(path)] if path.is_file() else DEFAULT_QUESTIONS


def _latency(kb, questions: list[str]) -> tuple[tuple[float, float], tuple[float, float]]:
    """((embed p50, p95), (search p50, p95)) in ms over `questions`, after five warm-up searches."""
    for q in questions[:5]:
        kb.search(q)
    total, embed = [], []
    for q in questions:
        t = time.perf_counter()
        kb.embedder.embed_query(q)
        embed.append(time.perf_counter() - t)
        t = time.perf_counter()
        kb.search(q)
        total.append(time.perf_counter() - t)
    return _percentiles(embed), _percentiles(total)


def _timed_build(kb, row: BackendRow):
    """Rebuild `kb`'s index from scratch; note the build's seconds, CPU seconds and the load average before
    it in `row`; returns the summary."""
    row.build_loads.append(round(os.getloadavg()[0], 2))
    cpu = time.process_time()
    summary = kb.index(rebuild=True)
    row.builds.append(summary.seconds)
    row.build_cpus.append(time.process_time() - cpu)
    return summary


def bench_backends(config: Config, backends, devset: str | None, log: Callable[[str], None],
                   embedders: dict | None = None, rounds: int = 1) -> list[BackendRow]:
    """One row per backend, each built from scratch in its own temporary home (see the module docstring).

    `embedders` maps a backend name to a ready embedder (tests pass fake ones); otherwise
    `kb.embedding.make_embedder` makes the backend's own. `rounds` > 1 rebuilds every backend's index
    again, round-robin (round r starts with the r-th backend, so none always runs first or last), and
    reports the median build: one backend's run no longer takes all of a load spike. A shared machine's
    load moves build times far more than CPU seconds: torch's 780-chunk build took 44-102 s wall on the
    2-core machine, and 83-86 s of CPU every time.
    """
    from kb.embedding import make_embedder
    from kb.engine import KnowledgeBase
    from kb.evaluate import load_devset, run_eval

    path = Path(devset) if devset else PROJECT / "tests" / "data" / "devset.jsonl"
    dev = load_devset(path) if path.is_file() else []
    questions = [q.question for q in dev] or DEFAULT_QUESTIONS
    rows, kbs, chunks = [], [], {}
    with tempfile.TemporaryDirectory(prefix="kb-bench-backends-") as tmp:
        articles = Path(tmp) / "articles"
        shutil.copytree(config.articles_dir, articles)
        for backend in backends:
            log(f"bench: backend {backend}")
            cfg = config.with_(articles_dir=articles, home=Path(tmp) / backend, embed_backend=backend)
            given = (embedders or {}).get(backend)
            if given is None and backend == "torch":
                from kb.embedding import _load_model
                _load_model.cache_clear()              # a cold load, as in a fresh process
            kb = KnowledgeBase(cfg, embedder=given)
            row = BackendRow(backend)
            t = time.perf_counter()
            kb.embedder.embed_query("预热")
            row.load_s = time.perf_counter() - t
            if given is None:
                if backend == "torch":
                    _load_model.cache_clear()
                t = time.perf_counter()
                make_embedder(cfg).embed_query("预热")
                row.reload_s = time.perf_counter() - t
            chunks[backend] = _timed_build(kb, row).chunks_embedded
            (row.embed_p50_ms, row.embed_p95_ms), (row.query_p50_ms, row.query_p95_ms) = _latency(kb, questions)
            if dev:
                m = run_eval(kb, dev)[0]
                row.metrics = {k: getattr(m, k) for k in METRICS}
            rows.append(row)
            kbs.append(kb)
        for r in range(1, rounds):
            for i in range(len(rows)):
                row, kb = rows[(r + i) % len(rows)], kbs[(r + i) % len(rows)]
                log(f"bench: build round {r + 1} of {rounds}, backend {row.backend}")
                _timed_build(kb, row)
    for row in rows:
        row.build_s = statistics.median(row.builds)
        row.build_cpu_s = statistics.median(row.build_cpus)
        row.chunks_per_s = chunks[row.backend] / row.build_s if row.build_s else 0.0
    base = next((r for r in rows if r.backend == "torch"), None)
    for r in rows:
        if base is not None and r is not base:
            r.deltas = {k: round(r.metrics[k] - base.metrics[k], 4) for k in r.metrics
                        if r.metrics[k] is not None and base.metrics.get(k) is not None}
        if base is not None:
            r.build_speedup = base.build_s / r.build_s if r.build_s else 0.0
            r.build_cpu_speedup = base.build_cpu_s / r.build_cpu_s if r.build_cpu_s else 0.0
            r.embed_speedup = base.embed_p50_ms / r.embed_p50_ms if r.embed_p50_ms else 0.0
    return rows


def bench_engine(config: Config, report: BenchReport, devset: str | None, log: Callable[[str], None],
                 embedder=None) -> None:
    from kb.engine import KnowledgeBase

    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        articles = Path(tmp) / "articles"
        shutil.copytree(config.articles_dir, articles)
        kb = KnowledgeBase(config.with_(articles_dir=articles, home=Path(tmp) / "home"), embedder=embedder)
        t = time.perf_counter()
        kb.embedder.embed_query("预热")            # loads the model
        report.model_load_s = time.perf_counter() - t

        log("bench: full build")
        summary = kb.index(rebuild=True)
        report.articles, report.chunks = len(kb.articles), summary.chunks_total
        report.full_build_s = summary.seconds
        report.chunks_per_s = summary.chunks_embedded / summary.seconds if summary.seconds else 0.0

        # One article changes: a paragraph is appended to the middle one.
        path = sorted(articles.glob("*.md"))[len(kb.articles) // 2]
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n\n## 基准测试追加的小节\n\n这一段文字由 kb bench 追加，用来测量只改动一篇文章后的增量索引时间。\n")
        log(f"bench: incremental update after changing {path.name}")
        summary = kb.index()
        assert summary.changed == [path.stem], f"expected only {path.stem} to change, got {summary.changed}"
        report.incremental_article = path.stem
        report.incremental_s = summary.seconds
        report.incremental_ratio = summary.seconds / report.full_build_s if report.full_build_s else 0.0

        questions = _questions(devset)
        log(f"bench: warm query latency over {len(questions)} questions")
        (report.embed_p50_ms, _), (report.query_p50_ms, report.query_p95_ms) = _latency(kb, questions)
        report.queries = len(questions)


def synthetic(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with topical structure in a low-dimensional latent space, and queries drawn alike.

    A point is z @ W + noise, normalized: z is a topic center (n/250 topics, N(0, I) in LATENT dimensions)
    plus N(0, 0.5² I), W a random LATENT x dim projection, noise 0.3/sqrt(dim) per dimension. Sentence
    embeddings have an intrinsic dimension of a few dozen and cluster by topic; with 4 topics per IVF list
    at 1M the lists must be probed several at a time (structureless vectors would need far more).
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((LATENT, dim), dtype=np.float32) / np.sqrt(LATENT)
    topics = rng.standard_normal((max(1, n // 250), LATENT), dtype=np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, dim), np.float32)
        for s in range(0, count, 100_000):        # in blocks: 1M x 512 float64 temporaries would be 4 GiB
            m = min(100_000, count - s)
            z = topics[rng.integers(0, len(topics), m)] + 0.5 * rng.standard_normal((m, LATENT), dtype=np.float32)
            block = z @ w + (0.3 / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
            out[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out
    return draw(n), draw(n_queries)


def _single_query_latency(index, queries: np.ndarray, k: int = 10, limit: int = 100) -> tuple[float, float]:
    times = []
    for q in queries[:limit]:
        t = time.perf_counter()
        index.search(q.reshape(1, -1), k)
        times.append(time.perf_counter() - t)
    return _percentiles(times)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def bench_scale(n: int, n_queries: int, log: Callable[[str], None], hnsw_max: int = 100_000,
                dim: int = DIM) -> list[ScaleRow]:
    import faiss

    log(f"bench: {n:,} synthetic vectors")
    data, queries = synthetic(n, dim, n_queries)
    rows = []

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    build = time.perf_counter() - t
    _, truth = flat.search(queries, 10)
    p50, p95 = _single_query_latency(flat, queries, limit=30)
    rows.append(ScaleRow(n, "Flat (exact)", build, 1.0, p50, p95))
    del flat

    nlist = int(round(math.sqrt(n)))
    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    train = data[np.random.default_rng(1).choice(n, min(n, 64 * nlist), replace=False)]
    ivf.train(train)
    ivf.add(data)
    build = time.perf_counter() - t
    rows += _sweep(ivf, n, f"IVF{nlist},Flat nprobe={{}}", (1, 2, 4, 8, 16, 32, 64),
                   lambda v: setattr(ivf, "nprobe", v), build, queries, truth)
    del ivf

    if n <= hnsw_max:
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        hnsw.add(data)
        build = time.perf_counter() - t
        rows += _sweep(hnsw, n, "HNSW32 efSearch={}", (16, 32, 64, 128),
                       lambda v: setattr(hnsw.hnsw, "efSearch", v), build, queries, truth)
    return rows


def _sweep(index, n: int, label: str, values, set_knob, build: float, queries, truth) -> list[ScaleRow]:
    """One row per search-time setting (nprobe, efSearch); the first reaching TARGET_RECALL is marked."""
    rows = []
    for value in values:
        set_knob(value)
        _, found = index.search(queries, 10)
        p50, p95 = _single_query_latency(index, queries)
        rows.append(ScaleRow(n, label.format(value), build, _recall(found, truth), p50, p95))
    chosen = next((r for r in rows if r.recall10 >= TARGET_RECALL), rows[-1])
    chosen.operating_point = True
    return rows


def run_bench(config: Config, scales=(100_000, 1_000_000), queries: int = 200, devset: str | None = None,
              log: Callable[[str], None] = lambda m: None, embedder=None, hnsw_max: int = 100_000,
              backends=(), embedders: dict | None = None, build_rounds: int = 1) -> BenchReport:
    # Timings on a shared machine are only as good as its idleness: the load average is reported with them.
    report = BenchReport(cpus=os.cpu_count() or 0, backend=config.embed_backend if embedder is None else "given")
    start_load = os.getloadavg()[0]
    if backends:
        report.backends = bench_backends(config, backends, devset, log, embedders=embedders, rounds=build_rounds)
    bench_engine(config, report, devset, log, embedder=embedder)
    report.engine_peak_rss_mib = _peak_rss_mib()
    for n in scales:
        report.scale += bench_scale(n, queries, log, hnsw_max=hnsw_max)
    report.peak_rss_mib = _peak_rss_mib()
    report.load_avg = (start_load, os.getloadavg()[0])
    return report


def format_report(r: BenchReport) -> str:
    lines = [
        "| measure | value |", "|---|---|",
        f"| articles / chunks | {r.articles} / {r.chunks} |",
        f"| embedding backend | {r.backend} |",
        f"| model load | {r.model_load_s:.1f} s |",
        f"| full build (embed + save) | {r.full_build_s:.1f} s ({r.chunks_per_s:.1f} chunks/s) |",
        f"| incremental, one article changed ({r.incremental_article}) | {r.incremental_s:.2f} s "
        f"({r.incremental_ratio:.1%} of the full build) |",
        f"| warm query p50 / p95 ({r.queries} questions) | {r.query_p50_ms:.1f} / {r.query_p95_ms:.1f} ms |",
        f"| of which query embedding p50 | {r.embed_p50_ms:.1f} ms |",
        f"| peak RSS: engine (model, index, queries) / whole run | {r.engine_peak_rss_mib:.0f} / {r.peak_rss_mib:.0f} MiB |",
        f"| machine | {r.cpus} CPUs, load average {r.load_avg[0]:.1f} at the start, {r.load_avg[1]:.1f} at the end |",
    ]
    if r.backends:
        lines += ["", "| backend | load s (first / cached) | build s (each build) | chunks/s | build × | build CPU s (×) "
                  "| query embed p50 / p95 ms | embed × | search p50 / p95 ms | hit@1 | MRR@10 | refused | false refusals "
                  "| max abs Δ vs torch |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for b in r.backends:
            m = b.metrics

            def f(key):
                return "—" if m.get(key) is None else f"{m[key]:.3f}"
            delta = f"{max((abs(v) for v in b.deltas.values()), default=0.0):.3f}" if b.deltas else "—"
            each = f" ({', '.join(f'{x:.1f}' for x in b.builds)})" if len(b.builds) > 1 else ""
            lines.append(f"| {b.backend} | {b.load_s:.1f} / {b.reload_s:.1f} | {b.build_s:.1f}{each} | {b.chunks_per_s:.1f} "
                         f"| {b.build_speedup:.2f} | {b.build_cpu_s:.1f} ({b.build_cpu_speedup:.2f}) "
                         f"| {b.embed_p50_ms:.1f} / {b.embed_p95_ms:.1f} | {b.embed_speedup:.2f} "
                         f"| {b.query_p50_ms:.1f} / {b.query_p95_ms:.1f} | {f('hit1')} | {f('mrr10')} "
                         f"| {f('refusal_rate')} | {f('false_refusal_rate')} | {delta} |")
    if r.scale:
        lines += ["", "| vectors | index | build s | recall@10 | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
        for s in r.scale:
            mark = " **←**" if s.operating_point else ""
            lines.append(f"| {s.n:,} | {s.index}{mark} | {s.build_s:.1f} | {s.recall10:.3f} | {s.p50_ms:.2f} | "
                         f"{s.p95_ms:.2f} |")
    return "\n".join(lines)
