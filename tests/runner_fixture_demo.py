"""A demo for the runner's tests only: passes, fails, crashes, raises, hangs with children, or waits
for a gate file, as `mode` says. Run through the same harness and runner as the real demos."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="runner-fixture",
    title="运行器测试用例",
    summary="runner tests only",
    articles=(),
    module="tests.runner_fixture_demo",
    params=(
        Param("mode", str, "pass", choices=("pass", "fail", "crash", "raise", "sleep", "gate")),
        Param("gate", str, "", "gate mode: wait until this file exists"),
    ),
    timeout_s=30,
)

CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def run(report: Report, mode: str = "pass", gate: str = "") -> None:
    report.log(f"mode {mode}")
    if mode == "crash":
        os._exit(3)  # no result.json, no harness epilogue
    if mode == "raise":
        raise RuntimeError("planted failure")
    if mode == "sleep":
        # Two children that ignore SIGTERM: only the group-wide SIGKILL ends them.
        children = [subprocess.Popen([sys.executable, "-c", CHILD]) for _ in range(2)]
        Path("pids.txt").write_text(" ".join(str(c.pid) for c in children) + f" {os.getpid()}\n")
        report.log("children started")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
    if mode == "gate":
        report.log("waiting for gate")
        deadline = time.monotonic() + 25
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        report.check("gate opened", Path(gate).exists(), gate)
        return
    report.check("the planted outcome", mode == "pass", f"mode {mode}")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
