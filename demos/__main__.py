"""Command line for the demos, through the same Runner the UI uses.

    python -m demos list [--json]
    python -m demos run <id> [--param k=v ...] [--json] [--timeout S] [--runs-dir DIR]

`run` streams the demo's lines live (to stdout, or to stderr with --json so stdout stays one JSON
document: the run's result.json). Exit status: 0 the run passed; 1 it failed, timed out, crashed or was
interrupted; 2 unknown demo, bad parameter or bad option (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demos import registry
from demos.harness import parse_param_args
from demos.runner import DEFAULT_RUNS_DIR, Runner
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
        runner = Runner(Path(args.runs_dir), max_concurrent=1)
        handle = runner.submit(args.demo, params, timeout_s=args.timeout)
    except (registry.UnknownDemo, DemoParamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    args = parser.parse_args(argv)
    if args.command == "list":
        return cmd_list(args.json)
    return cmd_run(args)


if __name__ == "__main__":
    raise SystemExit(main())
