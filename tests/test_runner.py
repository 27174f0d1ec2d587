"""The demo runner: validation, statuses, result.json, timeouts that leave no process behind, the queue,
live lines, history, and the `python -m demos` command line."""
import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demos import registry
from demos.__main__ import main as cli_main
from demos.runner import LOG_FILE, RUN_FILE, Runner
from demos.spec import DemoParamError

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = importlib.import_module("tests.runner_fixture_demo").SPEC
WAIT = 60  # generous upper bound for a run to end; tests never assert on durations


@pytest.fixture
def runner(tmp_path):
    r = Runner(tmp_path / "runs", max_concurrent=2, gpu_available=False, kill_grace_s=0.5)
    yield r
    r.close()


def alive(pid: int) -> bool:
    """Running (or stopped), i.e. neither gone nor a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def group_survivors(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                out.append(int(entry.name))
    return out


def wait_for_line(handle, text: str) -> list[str]:
    seen = []
    for line in handle.lines():
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"run ended without printing {text!r}: {seen}")


# ---- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("demo, params, exc, message", [
    ("nope", {}, registry.UnknownDemo,
     "unknown demo 'nope'; known: edm-sampling, sde-vs-ode, ddp-launch, pdb-transcript, list-tuple, generator, "
     "mutability, gc-cycles, mro, object-reference, tf-export, autograd"),
    ("mro", {"depth": 3}, DemoParamError, "demo 'mro' has no parameter 'depth' (known: seed, hierarchies, classes)"),
    ("mro", {"hierarchies": 0}, DemoParamError, "parameter 'hierarchies' must be ≥ 1; got 0"),
    ("mro", {"hierarchies": 5000}, DemoParamError, "parameter 'hierarchies' must be ≤ 2000; got 5000"),
    ("mro", {"seed": "abc"}, DemoParamError, "parameter 'seed' expects int, got 'abc'"),
    ("generator", {"n": 2.5}, DemoParamError, "parameter 'n' expects int, got 2.5"),
])
def test_submit_validates_before_starting(runner, demo, params, exc, message):
    with pytest.raises(exc) as info:
        runner.submit(demo, params)
    assert str(info.value) == message
    assert list(runner.runs_dir.iterdir()) == [], "a refused run must not leave a folder"
    assert runner.history() == []


def test_bad_timeout_is_refused(runner):
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
        runner.submit(FIXTURE, {}, timeout_s=0)


# ---- statuses and result.json -----------------------------------------------------------------------

def test_passing_run_writes_result_and_log(runner):
    handle = runner.submit("mro", {"hierarchies": 20})
    result = handle.wait(WAIT)
    assert handle.status == "passed", handle.result
    assert handle.returncode == 0
    assert set(result) == {"demo", "params", "device", "started", "duration_s", "passed", "checks", "metrics", "artifacts"}
    assert result["demo"] == "mro" and result["passed"] is True and result["device"] == "cpu"
    assert result["params"] == {"seed": 0, "hierarchies": 20, "classes": 8}
    assert len(result["checks"]) == 7 and all(c["passed"] for c in result["checks"])
    assert json.loads((handle.run_dir / "result.json").read_text()) == result
    assert handle.run_dir.parent == runner.runs_dir and handle.run_dir.name.split("-")[2] == "mro"
    log = (handle.run_dir / LOG_FILE).read_text().splitlines()
    assert log == list(handle.lines()) and log[-1] == "PASSED: 7/7 checks passed"
    record = json.loads((handle.run_dir / RUN_FILE).read_text())
    assert (record["status"], record["returncode"], record["demo"]) == ("passed", 0, "mro")


def test_failing_check_means_failed_and_nonzero_exit(runner):
    handle = runner.submit(FIXTURE, {"mode": "fail"})
    result = handle.wait(WAIT)
    assert handle.status == "failed"
    assert handle.returncode == 1
    assert result["passed"] is False
    assert result["checks"] == [{"name": "the planted outcome", "passed": False, "detail": "mode fail"}]


def test_crash_without_result_is_error_with_log_tail(runner):
    handle = runner.submit(FIXTURE, {"mode": "crash"})
    result = handle.wait(WAIT)
    assert handle.status == "error"
    assert handle.returncode == 3
    assert result["passed"] is False and result["checks"] == []
    assert result["error"] == "no result.json; process exited with code 3"
    assert "mode crash" in result["log_tail"].splitlines()
    assert json.loads((handle.run_dir / "result.json").read_text())["status"] == "error"


def test_exception_in_demo_is_error(runner):
    handle = runner.submit(FIXTURE, {"mode": "raise"})
    result = handle.wait(WAIT)
    assert handle.status == "error"
    assert "RuntimeError: planted failure" in result["error"]


def test_timeout_kills_the_whole_process_group(runner):
    handle = runner.submit(FIXTURE, {"mode": "sleep"}, timeout_s=4)
    result = handle.wait(WAIT)
    assert handle.status == "timeout"
    assert result["error"] == "timed out after 4 s; process group killed"
    pids = [int(p) for p in (handle.run_dir / "pids.txt").read_text().split()]
    assert len(pids) == 3, "two children and the demo itself"
    assert [p for p in pids if alive(p)] == [], "a process of the run survived the timeout"
    assert group_survivors(handle.pgid) == []
    assert handle.returncode in (-9, -15), handle.returncode
    assert list(handle.lines())[-1] == "[runner] timed out after 4 s; process group killed"


def test_cancel_running_and_queued(tmp_path):
    r = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False, kill_grace_s=0.5)
    first = r.submit(FIXTURE, {"mode": "sleep"})
    second = r.submit(FIXTURE, {"mode": "pass"})
    wait_for_line(first, "children started")
    second.cancel()
    assert second.status == "cancelled" and second.result["error"] == "cancelled before it started"
    first.cancel()
    first.wait(WAIT)
    assert first.status == "cancelled"
    pids = [int(p) for p in (first.run_dir / "pids.txt").read_text().split()]
    assert [p for p in pids if alive(p)] == []
    assert second.returncode is None
    assert (second.run_dir / LOG_FILE).read_text() == "[runner] cancelled before it started\n"


def test_close_returns_when_the_running_demos_are_gone(tmp_path):
    """The app's shutdown calls close() and then exits: close() itself must see the runs' process groups end,
    SIGKILL included for processes that ignore SIGTERM (a killer thread would die with the app)."""
    r = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False, kill_grace_s=0.5)
    running = r.submit(FIXTURE, {"mode": "sleep"})
    queued = r.submit(FIXTURE, {"mode": "pass"})
    wait_for_line(running, "children started")
    pids = [int(p) for p in (running.run_dir / "pids.txt").read_text().split()]
    r.close()
    assert [p for p in pids if alive(p)] == [] and group_survivors(running.pgid) == [], \
        "a process of the run outlived close()"
    assert queued.status == "cancelled"
    running.wait(WAIT)
    assert running.status == "cancelled"


# ---- queue and live output ----------------------------------------------------------------------------

def test_max_concurrent_queues_fifo(tmp_path):
    r = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False)
    gate = tmp_path / "gate"
    first = r.submit(FIXTURE, {"mode": "gate", "gate": str(gate)})
    second = r.submit(FIXTURE, {"mode": "pass"})
    third = r.submit(FIXTURE, {"mode": "pass"})
    assert (first.status, first.queue_position) == ("running", None)
    assert (second.status, second.queue_position) == ("queued", 1)
    assert (third.status, third.queue_position) == ("queued", 2)
    wait_for_line(first, "waiting for gate")
    assert (second.status, second.queue_position) == ("queued", 1), "the slot is taken until the first run ends"
    gate.touch()
    for h in (first, second, third):
        h.wait(WAIT)
    assert [h.status for h in (first, second, third)] == ["passed"] * 3
    assert [h.queue_position for h in (first, second, third)] == [None] * 3
    assert first.ended <= second.started and second.ended <= third.started
    assert r.history() == [first, second, third]


def test_cancelling_a_queued_run_moves_the_others_up(tmp_path):
    r = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False)
    gate = tmp_path / "gate"
    first = r.submit(FIXTURE, {"mode": "gate", "gate": str(gate)})
    second = r.submit(FIXTURE, {"mode": "pass"})
    third = r.submit(FIXTURE, {"mode": "pass"})
    second.cancel()
    assert (second.status, second.queue_position) == ("cancelled", None)
    assert third.queue_position == 1
    gate.touch()
    assert third.wait(WAIT)["passed"] is True


def test_gpu_runs_take_the_gpu_lock_one_at_a_time(tmp_path):
    r = Runner(tmp_path / "runs", max_concurrent=3, gpu_available=True)
    gpu_spec = dataclasses.replace(FIXTURE, device="cuda-preferred")
    gate = tmp_path / "gate"
    gpu1 = r.submit(gpu_spec, {"mode": "gate", "gate": str(gate)})
    gpu2 = r.submit(gpu_spec, {"mode": "pass"})
    cpu = r.submit(FIXTURE, {"mode": "pass"})
    assert gpu1.status == "running"
    assert (gpu2.status, gpu2.queue_position) == ("queued", 1), "a free slot is not enough without the GPU"
    assert cpu.wait(WAIT)["passed"] is True, "a CPU run goes ahead of a run waiting for the GPU"
    assert gpu2.status == "queued"
    gate.touch()
    assert gpu2.wait(WAIT)["passed"] is True
    assert gpu1.ended <= gpu2.started


def test_lines_stream_before_the_run_ends(runner, tmp_path):
    gate = tmp_path / "gate"
    handle = runner.submit(FIXTURE, {"mode": "gate", "gate": str(gate)})
    seen = wait_for_line(handle, "waiting for gate")
    assert seen == ["mode gate", "waiting for gate"]
    assert handle.status == "running" and not handle.done, "the line arrived while the run was still going"
    gate.touch()
    handle.wait(WAIT)
    replay = list(handle.lines())
    assert replay[:2] == seen, "lines() replays from the start"
    assert replay[-2:] == [f"CHECK ✓ gate opened: {gate}", "PASSED: 1/1 checks passed"]


def test_load_history_reads_past_runs(tmp_path):
    first = Runner(tmp_path / "runs", gpu_available=False)
    ok = first.submit(FIXTURE, {"mode": "pass"})
    bad = first.submit(FIXTURE, {"mode": "fail"})
    ok.wait(WAIT), bad.wait(WAIT)
    later = Runner(tmp_path / "runs", gpu_available=False)
    past = later.load_history()
    assert [h.id for h in past] == [ok.id, bad.id]
    assert [h.status for h in past] == ["passed", "failed"]
    assert [h.params for h in past] == [{"mode": "pass", "gate": ""}, {"mode": "fail", "gate": ""}]
    assert past[1].result == bad.result and list(past[1].lines()) == list(bad.lines())
    assert all(h.done for h in past) and past[0].wait(0) == ok.result


# ---- command line ---------------------------------------------------------------------------------------

def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "demos", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_run_json_passes(tmp_path):
    proc = run_cli("run", "gc-cycles", "--json", "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["demo"] == "gc-cycles" and result["passed"] is True
    assert "CHECK ✓ getrefcount 随引用增减: [2, 3, 6, 2, 1] (oracle: the article's counts [2, 3, 6, 2, 1]: name + " \
           "argument, +1 alias, +3 slots, back, temporary)" in proc.stderr.splitlines()


@pytest.mark.parametrize("args, message", [
    (("run", "nope"), "error: unknown demo 'nope'; known: " + ", ".join(registry.DEMO_IDS)),
    (("run", "mro", "--param", "seed=-1"), "error: parameter 'seed' must be ≥ 0; got -1"),
    (("run", "mro", "--param", "colour=red"),
     "error: demo 'mro' has no parameter 'colour' (known: seed, hierarchies, classes)"),
    (("run", "mro", "--param", "seed"), "error: --param expects k=v, got 'seed'"),
])
def test_cli_usage_errors_exit_2(tmp_path, args, message):
    proc = run_cli(*args, "--runs-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_cli_failed_run_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.MODULES, "runner-fixture", "tests.runner_fixture_demo")
    code = cli_main(["run", "runner-fixture", "--param", "mode=fail", "--json", "--runs-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["passed"] is False
    assert "CHECK ✗ the planted outcome: mode fail" in err.splitlines()
    assert err.splitlines()[-1].startswith("FAILED: runner-fixture (")


def test_cli_timeout_option_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.MODULES, "runner-fixture", "tests.runner_fixture_demo")
    gate = tmp_path / "never"
    code = cli_main(["run", "runner-fixture", "--param", "mode=gate", "--param", f"gate={gate}",
                     "--timeout", "1", "--runs-dir", str(tmp_path / "runs")])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.splitlines()[-2:] == ["[runner] timed out after 1 s; process group killed",
                                     f"TIMEOUT: runner-fixture ({next((tmp_path / 'runs').iterdir())})"]
