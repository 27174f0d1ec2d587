"""Mutation score of the demos: apply the project's own catalogue of planted bugs (`demos.mutations`) one at
a time to a TEMPORARY COPY of the code and rerun the demo. A bug is killed when the run fails (a check
fails, or the run errors out); a benign variant (other seed, more samples, renamed variables) must pass.

    python -m demos.mutate                       # every demo, the whole catalogue (minutes)
    python -m demos.mutate mro tf-export --json  # some demos; one JSON object on stdout
    python -m demos.mutate --fast                # the CI subset (tests/test_mutate.py)
    python -m demos.mutate --list                # the catalogue, nothing run

Guard rails: each patch must match its `old` text exactly once (a rename: as a whole identifier, every time) inside the function
or class named by `where` (for an article, inside its ```python file=NAME block), and `where` may never be
a demo's checking code (`run`, `_run`, `main`, the harness): a patch that does not apply is a catalogue
error, reported as such and never counted as killed. The original tree is never written to.

It knows how to copy, patch and run; what to plant lives in `demos.mutations`.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from demos import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
COPIED = ("demos", "kb", "articles")          # what a demo run can import or read
# Checking code and oracles: never a mutation target (demo entry points, the harness, the worker's
# bit-identity check, the DDP reference, the pdb demo's parsers and plain run, the SDE marginal oracles).
CHECK_CODE = {"run", "_run", "main", "main_for", "Report", "write_result", "_learned_checks",
              "ranks_identical", "reference_data", "initial_params", "_mse", "reference_run", "full_loss",
              "parse_frames", "frame_order", "matches", "plain_run_values", "line_of",
              "oracle_s_sigma", "marginal_spread", "marginal_errors"}
FORBIDDEN_FILES = {"demos/harness.py", "demos/mutate.py", "demos/mutations.py", "demos/spec.py",
                   "demos/edm_oracles.py"}


TIMEOUT_FACTOR = 4


class CatalogueError(Exception):
    """A catalogue entry that cannot be applied as written."""


@dataclass(frozen=True)
class Mutation:
    id: str                         # unique within the demo
    demo: str
    kind: str                       # "bug" (must be killed) or "benign" (must pass)
    summary: str
    file: str | None = None         # repository-relative path of the patched file
    where: str | None = None        # function/class (dotted for methods) or the article's file= block
    old: str = ""
    new: str = ""
    rename: bool = False            # replace every occurrence of `old` (an identifier) inside `where`
    params: dict = field(default_factory=dict)   # parameter changes (benign variants)
    fast: bool = False              # in the CI subset

    @property
    def key(self) -> str:
        return f"{self.demo}/{self.id}"


@dataclass
class Outcome:
    key: str
    demo: str
    kind: str
    summary: str
    passed: bool | None             # the demo run passed (None: not run)
    failed_checks: list[str]
    error: str | None               # crash/timeout line, or the catalogue error
    seconds: float

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "catalogue-error"
        if self.error and self.error.startswith("timeout"):
            return "TIMEOUT"  # inconclusive: neither killed nor passed (a busy machine, or a hang)
        if self.kind == "bug":
            return "killed" if not self.passed else "SURVIVED"
        return "ok" if self.passed else "FALSE-ALARM"


# ---------------------------------------------------------------------------------------------------------
# Applying a patch.

def _python_span(source: str, where: str) -> tuple[int, int]:
    """Character span of the def/class `where` (dotted for nesting) in a Python source."""
    tree = ast.parse(source)
    node, parts = tree, where.split(".")
    for part in parts:
        found = [n for n in ast.iter_child_nodes(node)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part]
        if len(found) != 1:
            raise CatalogueError(f"no single def/class {where!r} ({part!r} found {len(found)} times)")
        node = found[0]
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:first - 1])
    end = sum(len(line) for line in lines[:node.end_lineno])
    return start, end


def _markdown_span(source: str, where: str) -> tuple[int, int]:
    """Span of the body of the article's ```python file=WHERE block."""
    m = re.search(r"^```python[^\n]*\bfile=" + re.escape(where) + r"\b[^\n]*\n(.*?)^```", source, re.M | re.S)
    if not m:
        raise CatalogueError(f"no ```python file={where} block")
    return m.start(1), m.end(1)


def apply_patch(source: str, mutation: Mutation) -> str:
    """The patched source; CatalogueError unless `old` occurs as required, inside `where` only."""
    if mutation.where in CHECK_CODE or (mutation.where or "").split(".")[0] in CHECK_CODE:
        raise CatalogueError(f"{mutation.key}: {mutation.where!r} is checking code, never a mutation target")
    span = (_markdown_span if mutation.file.endswith(".md") else _python_span)(source, mutation.where)
    if mutation.rename:
        pattern = re.compile(r"\b" + re.escape(mutation.old) + r"\b")
    else:
        pattern = re.compile(re.escape(mutation.old))
    hits = [m.start() for m in pattern.finditer(source)]
    inside = [h for h in hits if span[0] <= h < span[1]]
    if not inside:
        raise CatalogueError(f"{mutation.key}: {mutation.old!r} not found in {mutation.where}")
    if not mutation.rename and len(inside) != 1:
        raise CatalogueError(f"{mutation.key}: {mutation.old!r} occurs {len(inside)} times in {mutation.where}, "
                             f"need exactly one")
    if mutation.rename and re.search(r"\b" + re.escape(mutation.new) + r"\b", source[span[0]:span[1]]):
        raise CatalogueError(f"{mutation.key}: rename target {mutation.new!r} already used in {mutation.where}")
    body = pattern.sub(mutation.new, source[span[0]:span[1]])
    return source[:span[0]] + body + source[span[1]:]


def validate(mutation: Mutation, root: Path = REPO_ROOT) -> None:
    """Raise CatalogueError unless the entry is well formed and applies to the tree at `root`."""
    if mutation.kind not in ("bug", "benign"):
        raise CatalogueError(f"{mutation.key}: kind must be bug or benign")
    registry.get(mutation.demo)
    if mutation.file is None:
        if mutation.kind == "bug" or not mutation.params:
            raise CatalogueError(f"{mutation.key}: a parameter-only entry must be benign and change parameters")
        registry.get(mutation.demo).validate(mutation.params)
        return
    if mutation.file in FORBIDDEN_FILES:
        raise CatalogueError(f"{mutation.key}: {mutation.file} is part of the checking machinery")
    if not mutation.file.split("/")[0] in COPIED:
        raise CatalogueError(f"{mutation.key}: {mutation.file} is outside the copied tree")
    source = (root / mutation.file).read_text(encoding="utf-8")
    patched = apply_patch(source, mutation)
    if patched == source:
        raise CatalogueError(f"{mutation.key}: the patch changes nothing")
    if mutation.file.endswith(".py"):
        try:
            ast.parse(patched)
        except SyntaxError as exc:
            raise CatalogueError(f"{mutation.key}: patched {mutation.file} does not parse: {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# Running one entry.

def copy_tree(dest: Path, root: Path = REPO_ROOT) -> None:
    for name in COPIED:
        shutil.copytree(root / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def run_one(mutation: Mutation, timeout_s: float | None = None, root: Path = REPO_ROOT) -> Outcome:
    """Copy the tree, patch it, run `python -m <demo module>` there; the original is never touched."""
    spec = registry.get(mutation.demo)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kb-mutant-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        try:
            validate(mutation, root)
            copy_tree(src, root)
            if mutation.file:
                path = src / mutation.file
                path.write_text(apply_patch(path.read_text(encoding="utf-8"), mutation), encoding="utf-8")
        except CatalogueError as exc:
            return Outcome(mutation.key, mutation.demo, mutation.kind, mutation.summary, None, [], str(exc), 0.0)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
        cmd = [sys.executable, "-m", spec.module, "--out", str(out), "--json",
               "--params-json", json.dumps(mutation.params)]
        # Its own session, so the whole run (DDP workers included) can be stopped as one group: on a
        # timeout, and when this process is interrupted.
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        _LIVE.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s or spec.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome(mutation.key, mutation.demo, mutation.kind, mutation.summary, False, [],
                           f"timeout after {timeout_s or spec.timeout_s:g} s", time.perf_counter() - start)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            _LIVE.discard(proc)
        seconds = time.perf_counter() - start
        result = _last_json(stdout)
        if result is None:
            tail = (stderr.strip().splitlines() or ["no output"])[-1]
            return Outcome(mutation.key, mutation.demo, mutation.kind, mutation.summary, False, [],
                           f"exit {proc.returncode}, no result: {tail}", seconds)
        failed = [c["name"] for c in result["checks"] if not c["passed"]]
        error = result.get("error")
        if error:
            error = error.strip().splitlines()[-1]
        return Outcome(mutation.key, mutation.demo, mutation.kind, mutation.summary,
                       bool(result["passed"]) and proc.returncode == 0, failed, error, seconds)


_LIVE: set = set()  # demo runs in flight (stopped by main() when it is interrupted)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


# ---------------------------------------------------------------------------------------------------------
# Scores.

def summarize(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for demo in dict.fromkeys(o.demo for o in outcomes):
        mine = [o for o in outcomes if o.demo == demo]
        bugs = [o for o in mine if o.kind == "bug"]
        benign = [o for o in mine if o.kind == "benign"]
        killed = sum(o.verdict == "killed" for o in bugs)
        rows.append({
            "demo": demo, "bugs": len(bugs), "killed": killed,
            "kill_rate": round(killed / len(bugs), 4) if bugs else None,
            "survivors": [o.key for o in bugs if o.verdict == "SURVIVED"],
            "benign": len(benign), "false_alarms": sum(o.verdict == "FALSE-ALARM" for o in benign),
            "catalogue_errors": sum(o.verdict == "catalogue-error" for o in mine),
            "timeouts": sum(o.verdict == "TIMEOUT" for o in mine),
            "seconds": round(sum(o.seconds for o in mine), 1),
        })
    return rows


def select(demos: list[str], fast: bool) -> list[Mutation]:
    from demos.mutations import CATALOGUE

    for d in demos:
        registry.get(d)  # UnknownDemo for a typo
    return [m for m in CATALOGUE if (not demos or m.demo in demos) and (m.fast or not fast)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.mutate", description=__doc__.split("\n")[0])
    parser.add_argument("demos", nargs="*", help="demo ids (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout: per-demo rows and outcomes")
    parser.add_argument("--fast", action="store_true", help="only the CI subset")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: the machine is shared)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="per-run timeout in s (default: 4 × the demo's own, so a busy machine does not turn "
                             "slow runs into timeouts, which count as neither killed nor passed)")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.demos, args.fast)
    except registry.UnknownDemo as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.key:45} {m.kind:6} {'fast ' if m.fast else '     '}{m.summary}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds run_one, which stops its child
    started = time.perf_counter()
    progress = sys.stderr if args.json else sys.stdout

    def one(m: Mutation) -> Outcome:
        o = run_one(m, args.timeout or TIMEOUT_FACTOR * registry.get(m.demo).timeout_s)
        why = ", ".join(o.failed_checks) or o.error or ""
        print(f"{o.verdict:15} {o.key:45} {o.seconds:5.1f}s  {why[:110]}", file=progress, flush=True)
        return o

    try:
        if args.jobs <= 1:
            outcomes = [one(m) for m in chosen]
        else:
            with ThreadPoolExecutor(args.jobs) as pool:
                outcomes = list(pool.map(one, chosen))
    finally:
        for proc in list(_LIVE):  # interrupted: no demo run outlives us
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    rows = summarize(outcomes)
    total_bugs = sum(r["bugs"] for r in rows)
    total_killed = sum(r["killed"] for r in rows)
    total = {"bugs": total_bugs, "killed": total_killed,
             "kill_rate": round(total_killed / total_bugs, 4) if total_bugs else None,
             "benign": sum(r["benign"] for r in rows), "false_alarms": sum(r["false_alarms"] for r in rows),
             "catalogue_errors": sum(r["catalogue_errors"] for r in rows),
             "timeouts": sum(r["timeouts"] for r in rows),
             "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps({"demos": rows, "total": total, "outcomes": [
            {**asdict(o), "verdict": o.verdict} for o in outcomes]}, ensure_ascii=False))
    else:
        print()
        print("| demo | bugs | killed | kill rate | benign | false alarms | s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows + [{"demo": "**all**", **total}]:
            rate = "—" if r["kill_rate"] is None else f"{100 * r['kill_rate']:.0f} %"
            print(f"| {r['demo']} | {r['bugs']} | {r['killed']} | {rate} | {r['benign']} | {r['false_alarms']} "
                  f"| {r['seconds']:.0f} |")
        for r in rows:
            for key in r["survivors"]:
                print(f"survived: {key}")
    ok = (total["killed"] == total["bugs"] and total["false_alarms"] == 0 and total["catalogue_errors"] == 0
          and total["timeouts"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
