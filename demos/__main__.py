"""Command line for the demos, through the same Runner the UI uses.

    python -m demos list [--json]
    python -m demos run <id> [--param k=v ...] [--json] [--timeout S] [--runs-dir DIR]
    python -m demos worker [--concurrency N] [--gpus N] [--runs-dir DIR]     # with KB_DEMO_BROKER set

With KB_DEMO_BROKER=redis://host:port/db, `run` enqueues on the Celery pool (demos/remote.py) instead of
running here, and `worker` starts that pool's workers on this machine (demos/celery_app.py): one Celery
worker for the cpu queue with N threads, and one per GPU for the gpu queue (each owns its GPU, one run at
a time).

`run` streams the demo's lines live (to stdout, or to stderr with --json so stdout stays one JSON
document: the run's result.json). Exit status: 0 the run passed; 1 it failed, timed out, crashed or was
interrupted; 2 unknown demo, bad parameter or bad option (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demos import registry
from demos.harness import parse_param_args
from demos.runner import DEFAULT_RUNS_DIR, RunnerUnavailable, make_runner
from demos.spec import DemoParamError, DemoSpec


def spec_row(spec: DemoSpec) -> dict:
    return {
        "id": spec.id, "title": spec.title, "summary": spec.summary, "module": spec.module,
        "device": spec.device, "processes": spec.processes, "timeout_s": spec.timeout_s,
        "articles": list(spec.articles),
        "params": [{"name": p.name, "type": p.kind.__name__, "default": p.default, "help": p.help,
                    "min": p.min, "max": p.max, "choices": list(p.choices) if p.choices else None,
                    "advanced": p.advanced} for p in spec.params],
    }


def cmd_list(as_json: bool) -> int:
    rows, broken = [], []
    for demo_id in registry.DEMO_IDS:
        try:
            rows.append(spec_row(registry.get(demo_id)))
        except Exception as exc:  # one broken module must not hide the others
            broken.append(f"warning: demo '{demo_id}' cannot be loaded: {type(exc).__name__}: {exc}")
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        header = ("id", "title", "device", "processes", "timeout", "articles")
        table = [header] + [(r["id"], r["title"], r["device"], str(r["processes"]), f"{r['timeout_s']:g}s",
                             ", ".join(r["articles"])) for r in rows]
        widths = [max(_width(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)).rstrip())
    for line in broken:
        print(line, file=sys.stderr)
    return 1 if broken else 0


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if "\u2e80" <= ch <= "\uffef" else 1 for ch in text)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        params = parse_param_args(args.param)
        runner = make_runner(Path(args.runs_dir), max_concurrent=1, broker_url=os.environ.get("KB_DEMO_BROKER"))
        handle = runner.submit(args.demo, params, timeout_s=args.timeout)
    except (registry.UnknownDemo, DemoParamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunnerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # a registered demo whose module is missing or broken
        print(f"error: demo '{args.demo}' cannot be loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    stream = sys.stderr if args.json else sys.stdout
    try:
        for line in handle.lines():
            print(line, file=stream, flush=True)
        result = handle.wait()
    except KeyboardInterrupt:
        handle.cancel()
        handle.wait()
        print(f"interrupted; run folder: {handle.run_dir}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    print(f"{handle.status.upper()}: {handle.demo} ({handle.run_dir})", file=stream)
    return 0 if handle.status == "passed" else 1


def gpu_count() -> int:
    """GPUs on this machine, from `nvidia-smi -L` (0 without a driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def cmd_worker(args: argparse.Namespace) -> int:
    """Start the Celery workers of this machine and wait; SIGTERM/SIGINT stop them (running demos end)."""
    broker = os.environ.get("KB_DEMO_BROKER")
    if not broker:
        print("error: set KB_DEMO_BROKER=redis://host:port/db (the broker the app replicas use)", file=sys.stderr)
        return 2
    gpus = gpu_count() if args.gpus is None else args.gpus
    if args.concurrency < 1 or gpus < 0:
        print("error: --concurrency must be ≥ 1 and --gpus ≥ 0", file=sys.stderr)
        return 2
    base = [sys.executable, "-m", "celery", "-A", "demos.celery_app", "worker", "-P", "threads",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", args.loglevel]
    env = dict(os.environ, KB_DEMO_RUNS_DIR=str(Path(args.runs_dir).resolve()), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    tag = f"{os.getpid()}@%h"
    plans = [(["-Q", "cpu", "-c", str(args.concurrency), "-n", f"cpu-{tag}"],
              {"KB_DEMO_WORKER_KIND": "cpu", "KB_DEMO_CONCURRENCY": str(args.concurrency)})]
    for i in range(gpus):   # one process per GPU: it sees only its GPU and runs one demo at a time
        plans.append((["-Q", "gpu", "-c", "1", "-n", f"gpu{i}-{tag}"],
                      {"KB_DEMO_WORKER_KIND": "gpu", "KB_DEMO_CONCURRENCY": "1", "CUDA_VISIBLE_DEVICES": str(i)}))
    children = [subprocess.Popen(base + extra, env={**env, **more}) for extra, more in plans]
    print(f"demo workers: cpu queue × {args.concurrency} thread(s), gpu queue × {gpus} GPU(s); broker "
          f"{broker.split('@')[-1]}", file=sys.stderr, flush=True)

    def stop(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop(signal.SIGTERM, None)          # one worker ended: take the others down too
    codes = [child.wait() for child in children]
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos", description="List and run the verified demos.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="the demo catalogue")
    p_list.add_argument("--json", action="store_true")
    p_run = sub.add_parser("run", help="run one demo through the runner")
    p_run.add_argument("demo")
    p_run.add_argument("--param", action="append", default=[], metavar="K=V")
    p_run.add_argument("--json", action="store_true", help="print result.json on stdout; lines go to stderr")
    p_run.add_argument("--timeout", type=float, default=None, metavar="S", help="override the demo's timeout")
    p_run.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="where run folders are created")
    p_worker = sub.add_parser("worker", help="start Celery demo workers (KB_DEMO_BROKER)")
    p_worker.add_argument("--concurrency", type=int, default=2, help="cpu-queue runs at once (default 2)")
    p_worker.add_argument("--gpus", type=int, default=None, help="GPUs to serve the gpu queue with (default: all found)")
    p_worker.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR.parent / ".demo-runs-worker"),
                          help="where the worker keeps its run folders")
    p_worker.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return cmd_worker(args)
    if args.command == "list":
        return cmd_list(args.json)
    return cmd_run(args)


if __name__ == "__main__":
    raise SystemExit(main())
