"""The in-process side of a demo run: collect checks, metrics and artifacts; write result.json.

A demo's core function receives a `Report`, logs to it (lines go to stdout, so the runner streams them
live), records checks that can fail, and saves artifacts into `report.out`. `main_for(spec, run)` is the
whole command line of a demo module: `python -m demos.<name> [--param k=v ...] [--out DIR] [--json]`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from demos.spec import DemoParamError, DemoSpec

RESULT_FILE = "result.json"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    out: Path
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    device: str = "cpu"
    quiet: bool = False

    def __post_init__(self):
        self.out = Path(self.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        passed = bool(passed)
        self.checks.append(Check(name, passed, detail))
        self.log(f"CHECK {'✓' if passed else '✗'} {name}: {detail}")
        return passed

    def metric(self, name: str, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        self.metrics[name] = value
        return value

    def artifact(self, name: str) -> Path:
        """Path for an artifact file inside the run folder; the file is listed in result.json."""
        if name not in self.artifacts:
            self.artifacts.append(name)
        self.log(f"ARTIFACT {name}")
        return self.out / name

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def write_result(report: Report, spec: DemoSpec, params: dict, started: float, error: str | None = None) -> dict:
    result = {
        "demo": spec.id,
        "params": params,
        "device": report.device,
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 3),
        "passed": report.passed and error is None,
        "checks": [asdict(c) for c in report.checks],
        "metrics": report.metrics,
        "artifacts": report.artifacts,
    }
    if error:
        result["error"] = error
    (report.out / RESULT_FILE).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def parse_param_args(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise DemoParamError(f"--param expects k=v, got {pair!r}")
        k, v = pair.split("=", 1)
        params[k.strip()] = v
    return params


def main_for(spec: DemoSpec, run: Callable[..., None], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {spec.module}", description=spec.summary)
    parser.add_argument("--param", action="append", default=[], metavar="K=V")
    parser.add_argument("--params-json", default=None, help="parameters as one JSON object")
    parser.add_argument("--out", default=".", help="run folder for result.json and artifacts")
    parser.add_argument("--json", action="store_true", help="print result.json on stdout at the end")
    args = parser.parse_args(argv)
    try:
        given = json.loads(args.params_json) if args.params_json else {}
        given.update(parse_param_args(args.param))
        params = spec.validate(given)
    except (DemoParamError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report(Path(args.out))
    started = time.time()
    error = None
    try:
        run(report, **params)
    except Exception:  # the run fails with its traceback in result.json, never silently
        error = traceback.format_exc()
        print(error, file=sys.stderr, flush=True)
    result = write_result(report, spec, params, started, error)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        verdict = "PASSED" if result["passed"] else "FAILED"
        print(f"{verdict}: {sum(c.passed for c in report.checks)}/{len(report.checks)} checks passed")
    return 0 if result["passed"] else 1
