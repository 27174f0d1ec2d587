"""Benchmark of the answer path and the app start (numbers printed, nothing asserted).

    .venv/bin/python -m kb.answer_bench [--repeat 3] [--no-app]

Measures, on the index in KB_HOME (built first if missing):
  1. extractive answer time after the retrieval result (question embedding for sentence scoring, MMR,
     Markdown, demo ranking), p50/p95, with a cold sentence cache (first sight of each chunk) and after
     `warm_cache` (what the app does in the background at start);
  2. retrieval time for the same questions, for scale;
  3. app start to the first served page: `app.py` in a subprocess on a free port, until GET / answers 200.
Goals (issue): answer within 100 ms of the retrieval result; first page within 8 s of start.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

QUESTIONS = [
    "列表和元组有什么区别？", "生成器的 send() 方法是做什么用的？", "Python 的分代回收是怎么工作的？",
    "pdb 怎么设置条件断点？", "C3 线性化算法是怎么计算 MRO 的？", "is 和 == 有什么区别？",
    "函数的可变默认参数有什么陷阱？", "DistributedSampler 是怎么给每个进程切分数据的？",
    "TensorFlow 的 tf_export 装饰器做了什么？", "PyTorch 的 autograd 是怎么构建计算图并反向传播的？",
    "EDM 的网络预条件里 c_skip 和 c_out 是怎么设计的？", "概率流 ODE 和逆向 SDE 有什么关系？",
    "用代码演示一下 C3 线性化算法的实现", "yield from 有什么用？",
]
ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def summary(label: str, values: list[float]) -> str:
    return (f"{label:<44} n={len(values):<3} p50 {statistics.median(values):7.1f} ms   "
            f"p95 {pct(values, 0.95):7.1f} ms   max {max(values):7.1f} ms")


def measure_answers(kb, repeat: int) -> tuple[list[float], list[float]]:
    from kb.answer import stream_answer
    from kb.sentences import clear_query_cache

    compose, search = [], []
    for _ in range(repeat):
        for q in QUESTIONS:
            clear_query_cache()               # each question is new: embedded once, by the retrieval
            kb.embedder.forget()
            stream = stream_answer(kb, q)
            t0 = time.perf_counter()
            text = "".join(stream)            # the streaming itself, after the plan was composed
            stream_ms = (time.perf_counter() - t0) * 1000
            assert text, f"empty answer for {q}"
            compose.append(stream.answer.timings.get("compose", 0.0) + stream_ms)
            search.append(stream.answer.timings["search"])
    return compose, search


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_app_start(home: Path, timeout_s: float = 120.0) -> float:
    """Seconds from starting app.py to the first 200 on GET /."""
    port = free_port()
    env = {**os.environ, "KB_HOME": str(home), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--no-warm-up",
                             "--runs-dir", str(home / "bench-runs")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode} before serving")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no page within {timeout_s} s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kb.answer_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions after warm-up")
    parser.add_argument("--no-app", action="store_true", help="skip the app start measurement")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from kb.config import Config
    from kb.engine import KnowledgeBase
    from kb.embedding import make_embedder
    from kb.sentences import CACHE, QueryMemoEmbedder, warm_cache

    config = Config.from_env()
    kb = KnowledgeBase(config, embedder=QueryMemoEmbedder(make_embedder(config)))   # as the app builds it
    t0 = time.perf_counter()
    kb.loaded_index()
    print(f"index: {len(kb.loaded_index())} chunks in {kb.config.home} (loaded/built in {time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    kb.search("预热")
    print(f"model load + first search: {time.perf_counter() - t0:.1f} s")

    cold, search = measure_answers(kb, 1)
    print(summary("extractive answer after retrieval, cold cache", cold))
    t0 = time.perf_counter()
    n = warm_cache(kb.embedder, (c.text for c in kb.loaded_index().chunks))
    print(f"warm_cache: {n} sentences embedded in {time.perf_counter() - t0:.1f} s (cache holds {len(CACHE)})")
    warm, search_warm = measure_answers(kb, args.repeat)
    print(summary("extractive answer after retrieval, warm cache", warm))
    print(summary("retrieval (KnowledgeBase.search)", search + search_warm))
    if not args.no_app:
        starts = [measure_app_start(kb.config.home) for _ in range(2)]
        print(f"app start to first page: {', '.join(f'{s:.2f} s' for s in starts)} (goal < 8 s)")


if __name__ == "__main__":
    main()
