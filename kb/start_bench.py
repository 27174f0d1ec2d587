"""Benchmark of the app's first start and its next start (numbers printed, nothing asserted).

    .venv/bin/python -m kb.start_bench [--articles DIR] [--runs 1] [--json]

Each run starts `app.py` in a subprocess on a free loopback port with an EMPTY data folder (a new
temporary KB_HOME: no index, no ONNX file, no answer sentences), as `make run` does on a fresh machine:

  page_s          app start -> GET / answers 200 (`phase_at_page`: the build's phase then)
  first_answer_s  a POST /api/ask sent as soon as the page is served -> its answer (BM25 while the
                  semantic index builds; `first_retrieval` says which)
  ready_s         app start -> GET /index_status says the build is over (ONNX file, chunks, answer sentences)
  hybrid_answer_s the same question once ready (`later_retrieval` should be "hybrid")

then stops the app and starts it again on the same folder (`restart_page_s`, `restart_first_answer_s`:
the index is loaded, not built). Goals (issue 13): page <= 15 s, first answer <= 1 s after the page.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kb.load_bench import ROOT, app_env, free_port, stop_server

QUESTION = "生成器为什么省内存？"


def _start(home: Path, articles: Path | None, log: Path) -> tuple[subprocess.Popen, str]:
    env = app_env(KB_HOME=str(home))
    if articles is not None:
        env["KB_ARTICLES"] = str(articles)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port),
                             "--runs-dir", str(home / "runs")], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}/"


def _page(proc: subprocess.Popen, url: str, log: Path, t0: float, timeout_s: float) -> float:
    import httpx

    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no page within {timeout_s:g} s: {log.read_text()[-2000:]}")


def _ask(url: str) -> tuple[float, dict]:
    import httpx

    t = time.perf_counter()
    body = httpx.post(url + "api/ask", json={"question": QUESTION}, timeout=300).json()
    return time.perf_counter() - t, body


def run_once(articles: Path | None, timeout_s: float = 1200, wait_ready: bool = True) -> dict:
    import httpx

    with tempfile.TemporaryDirectory(prefix="kb-start-bench-") as tmp:
        home, log = Path(tmp) / "home", Path(tmp) / "app.log"
        row = {"load_start": round(os.getloadavg()[0], 2)}
        t0 = time.perf_counter()
        proc, url = _start(home, articles, log)
        try:
            row["page_s"] = _page(proc, url, log, t0, timeout_s)
            row["phase_at_page"] = httpx.get(url + "index_status", timeout=5).json().get("phase")
            row["first_answer_s"], first = _ask(url)
            row["first_retrieval"] = first.get("retrieval")
            row["first_citations"] = sorted({c["slug"] for c in first.get("citations", [])})
            while wait_ready and time.perf_counter() - t0 < timeout_s:
                state = httpx.get(url + "index_status", timeout=5).json()
                if state.get("state") != "building":
                    break
                time.sleep(0.25)
            if wait_ready:
                row["ready_s"], row["state"] = time.perf_counter() - t0, state.get("state")
                row["hybrid_answer_s"], later = _ask(url)
                row["later_retrieval"] = later.get("retrieval")
        finally:
            stop_server(proc)
        t0 = time.perf_counter()
        proc, url = _start(home, articles, log)
        try:
            row["restart_page_s"] = _page(proc, url, log, t0, timeout_s)
            row["restart_first_answer_s"], again = _ask(url)
            row["restart_retrieval"] = again.get("retrieval")
        finally:
            stop_server(proc)
        row["load_end"] = round(os.getloadavg()[0], 2)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="First start (empty data folder) and restart of the app")
    parser.add_argument("--articles", type=Path, help="articles folder (default: KB_ARTICLES or articles/)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-wait-ready", action="store_true",
                        help="restart right after the first answer (the restart then builds the index itself)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rows = [run_once(args.articles, wait_ready=not args.no_wait_ready) for _ in range(args.runs)]
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "runs": rows}, ensure_ascii=False))
        return
    keys = [k for k in ("page_s", "first_answer_s", "ready_s", "hybrid_answer_s", "restart_page_s",
                        "restart_first_answer_s") if k in rows[0]]
    print(f"app first start with an empty KB_HOME, {os.cpu_count()} CPUs, {len(rows)} run(s)")
    for key in keys:
        values = [r[key] for r in rows]
        print(f"{key:<24} median {statistics.median(values):8.3f} s   runs {', '.join(f'{v:.3f}' for v in values)}")
    for r in rows:
        print(f"retrieval first/later/restart: {r['first_retrieval']}/{r.get('later_retrieval')}/{r['restart_retrieval']}; "
              f"load {r['load_start']} -> {r['load_end']}")


if __name__ == "__main__":
    main()
