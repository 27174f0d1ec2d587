"""`kb bench`: how fast the engine is on this machine, and how the vector search would scale.

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
        report.queries = len(questions)
        report.query_p50_ms, report.query_p95_ms = _percentiles(total)
        report.embed_p50_ms = _percentiles(embed)[0]


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
              log: Callable[[str], None] = lambda m: None, embedder=None, hnsw_max: int = 100_000) -> BenchReport:
    # Timings on a shared machine are only as good as its idleness: the load average is reported with them.
    report = BenchReport(cpus=os.cpu_count() or 0)
    start_load = os.getloadavg()[0]
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
        f"| model load | {r.model_load_s:.1f} s |",
        f"| full build (embed + save) | {r.full_build_s:.1f} s ({r.chunks_per_s:.1f} chunks/s) |",
        f"| incremental, one article changed ({r.incremental_article}) | {r.incremental_s:.2f} s "
        f"({r.incremental_ratio:.1%} of the full build) |",
        f"| warm query p50 / p95 ({r.queries} questions) | {r.query_p50_ms:.1f} / {r.query_p95_ms:.1f} ms |",
        f"| of which query embedding p50 | {r.embed_p50_ms:.1f} ms |",
        f"| peak RSS: engine (model, index, queries) / whole run | {r.engine_peak_rss_mib:.0f} / {r.peak_rss_mib:.0f} MiB |",
        f"| machine | {r.cpus} CPUs, load average {r.load_avg[0]:.1f} at the start, {r.load_avg[1]:.1f} at the end |",
    ]
    if r.scale:
        lines += ["", "| vectors | index | build s | recall@10 | p50 ms | p95 ms |", "|---|---|---|---|---|---|"]
        for s in r.scale:
            mark = " **←**" if s.operating_point else ""
            lines.append(f"| {s.n:,} | {s.index}{mark} | {s.build_s:.1f} | {s.recall10:.3f} | {s.p50_ms:.2f} | "
                         f"{s.p95_ms:.2f} |")
    return "\n".join(lines)
