"""Load benchmark of the app's /ask over real HTTP: a real `app.py` server on a loopback port, real clients.

    python -m kb.load_bench                          # KB_HOME's index (built first if missing)
    python -m kb.load_bench --clients 50 --requests 5 --home /tmp/kb-home [--path gradio|rest|both] --json

Four scenarios, each printing p50/p95/p99 latency and the error count:
  1. one reader alone, asking the dev-set questions one after another (the unloaded reference);
  2. the same reader while one heavy client sends the heaviest /ask the API accepts, back to back
     (a 20,000-character question of 它 and a 64 KiB history of 它: the largest values kb.security lets in);
  3. `--clients` concurrent readers (closed loop: each sends its next question when the answer arrives);
  4. the same readers plus the heavy client.
Each scenario runs over both doors to the same answer (`--path`): the named gradio endpoint (POST
/gradio_api/call/ask, then its event stream until `complete`, as gradio_client calls it) and the plain JSON
route POST /api/ask (kb/ui/rest.py, one round trip). An error is any other outcome (HTTP error, error
event, timeout). The server is started as a subprocess with
`--no-warm-up` off (it warms its caches as in production) and stopped at the end; nothing is written
outside a temporary runs folder. Timings depend on the machine and its load: the report prints both.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT / "tests" / "data" / "devset.jsonl"
HEAVY_QUESTION = "它" * 20_000
HEAVY_HISTORY = json.dumps([["它" * 5_000, "它" * 5_000] for _ in range(6)], ensure_ascii=False)


@dataclass
class Stats:
    scenario: str
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    wall_s: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def questions(limit: int | None = None) -> list[str]:
    rows = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    qs = [r["question"] for r in rows if r.get("articles")]
    return qs[:limit] if limit else qs


def ask(client, question: str, history_json: str = "[]", timeout: float = 120.0, path: str = "gradio") -> float:
    """One /ask round trip in ms; raises on anything but a complete answer. `path`: "gradio" (the named
    endpoint through gradio's queue, as gradio_client calls it) or "rest" (POST /api/ask, one round trip)."""
    t0 = time.perf_counter()
    if path == "rest":
        r = client.post("api/ask", json={"question": question, "history_json": history_json}, timeout=timeout)
        r.raise_for_status()
        if "answerable" not in r.json():
            raise RuntimeError(f"/api/ask answered without an answer: {r.text[:200]!r}")
        return (time.perf_counter() - t0) * 1000
    r = client.post("gradio_api/call/ask", json={"data": [question, "", history_json]}, timeout=timeout)
    r.raise_for_status()
    stream = client.get(f"gradio_api/call/ask/{r.json()['event_id']}", timeout=timeout)
    stream.raise_for_status()
    events = re.findall(r"event: (\w+)", stream.text)
    if not events or events[-1] != "complete":
        raise RuntimeError(f"/ask ended with {events[-1] if events else 'nothing'}: {stream.text[-200:]!r}")
    return (time.perf_counter() - t0) * 1000


def run_clients(url: str, n_clients: int, per_client: int, qs: list[str], name: str,
                heavy: bool = False, path: str = "gradio") -> Stats:
    """`n_clients` threads each asking `per_client` questions in a closed loop; with `heavy`, one more
    thread sends the heaviest accepted request until the readers are done (its latencies are not counted)."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    done = threading.Event()

    def reader(i: int):
        with httpx.Client(base_url=url) as client:
            for j in range(per_client):
                q = qs[(i * per_client + j) % len(qs)]
                try:
                    ms = ask(client, q, path=path)
                    with lock:
                        latencies.append(ms)
                except Exception:
                    with lock:
                        errors[0] += 1

    def heavy_client():
        with httpx.Client(base_url=url) as client:
            while not done.is_set():
                try:
                    ask(client, HEAVY_QUESTION, HEAVY_HISTORY, path=path)
                except Exception:
                    pass

    heavy_thread = threading.Thread(target=heavy_client, daemon=True) if heavy else None
    if heavy_thread:
        heavy_thread.start()
        time.sleep(0.5)   # the heavy request is in flight before the readers start
    t0 = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    if heavy_thread:
        heavy_thread.join(timeout=180)
    return Stats(name, len(latencies) + errors[0], errors[0], round(percentile(latencies, 50), 1),
                 round(percentile(latencies, 95), 1), round(percentile(latencies, 99), 1),
                 round(max(latencies, default=0.0), 1), round(wall, 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(**extra: str) -> dict:
    """The environment the benchmarks start app.py with: offline, no analytics, no tokenizer threads."""
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
                TOKENIZERS_PARALLELISM="false", **extra)


def stop_server(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Terminate a server process (app.py, redis-server), killing it when it has not exited in `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(port: int, runs_dir: Path, env: dict, timeout_s: float = 600) -> subprocess.Popen:
    """`app.py` on 127.0.0.1:port; returns once /config answers and a first question is answered."""
    import httpx

    log = open(runs_dir / "server.log", "w")   # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", str(runs_dir)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}: {(runs_dir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "config", timeout=2).status_code == 200:
                with httpx.Client(base_url=url) as client:
                    ask(client, "预热：列表和元组有什么区别？", timeout=timeout_s)
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the app did not answer within {timeout_s:g} s: {(runs_dir / 'server.log').read_text()[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Load benchmark of /ask against a real app on loopback")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5, help="questions per client")
    parser.add_argument("--reader-requests", type=int, default=40, help="questions of the single reader")
    parser.add_argument("--home", type=Path, help="KB_HOME with a built index (default: KB_HOME or .kb/)")
    parser.add_argument("--path", choices=("gradio", "rest", "both"), default="both",
                        help="gradio: the named /ask endpoint through gradio's queue; rest: POST /api/ask")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    env = app_env()
    if args.home:
        env["KB_HOME"] = str(args.home)
    qs = questions()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kb-load-") as runs:
        proc = start_server(port, Path(runs), env)
        url = f"http://127.0.0.1:{port}/"
        load_before = os.getloadavg()
        try:
            results = []
            for path in (("gradio", "rest") if args.path == "both" else (args.path,)):
                label = "/ask (gradio queue)" if path == "gradio" else "POST /api/ask"
                results += [
                    run_clients(url, 1, args.reader_requests, qs, f"{label}: 1 reader, alone", path=path),
                    run_clients(url, 1, args.reader_requests, qs, f"{label}: 1 reader + 1 heavy client",
                                heavy=True, path=path),
                    run_clients(url, args.clients, args.requests, qs, f"{label}: {args.clients} clients", path=path),
                    run_clients(url, args.clients, args.requests, qs,
                                f"{label}: {args.clients} clients + 1 heavy client", heavy=True, path=path),
                ]
        finally:
            stop_server(proc)
        load_after = os.getloadavg()
    report = {"machine": f"{os.cpu_count()} CPUs", "loadavg_before": [round(x, 2) for x in load_before],
              "loadavg_after": [round(x, 2) for x in load_after], "results": [asdict(r) for r in results],
              "heavy_vs_alone_p95": [round(results[i + 1].p95_ms / results[i].p95_ms, 2) if results[i].p95_ms else None
                                     for i in range(0, len(results), 4)]}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(f"/ask over HTTP, {report['machine']}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'scenario':<56} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in results:
        print(f"{r.scenario:<56} {r.requests:>8} {r.errors:>6} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f}")
    print(f"reader p95 with the heavy client / alone, per path: {report['heavy_vs_alone_p95']}")


if __name__ == "__main__":
    main()
