"""Demo runs on the Celery pool against a real redis-server and real `python -m demos worker` processes:
the live log and result come back, every replica sees the run, queue positions and cancel work, a killed
worker fails its run with a clear message, and a broker that is down is a clear error."""
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demos.runner import RunnerUnavailable

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = importlib.import_module("tests.runner_fixture_demo").SPEC


def start_worker(broker: str, runs_dir: Path, concurrency: int = 2) -> subprocess.Popen:
    """`python -m demos worker` in its own process group, once its heartbeat is in Redis."""
    import redis
    env = dict(os.environ, KB_DEMO_BROKER=broker, KB_DEMO_EXTRA_MODULES="tests.runner_fixture_demo",
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "demos", "worker", "--concurrency", str(concurrency), "--gpus", "0",
                             "--runs-dir", str(runs_dir), "--loglevel", "WARNING"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    r = redis.Redis.from_url(broker)
    deadline = time.monotonic() + 60
    while not list(r.scan_iter("kb:workers:cpu:*")):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            raise RuntimeError(f"the demo worker did not come up (exit {proc.poll()})")
        time.sleep(0.1)
    return proc


def stop_worker(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def pool(redis_url, tmp_path_factory):
    """One worker (2 threads) on database 0 of the session's redis-server, for this module."""
    proc = start_worker(redis_url, tmp_path_factory.mktemp("worker-runs"))
    yield redis_url
    stop_worker(proc)


def remote(url, folder):
    from demos.remote import RemoteRunner
    return RemoteRunner(folder, url)


def test_a_demo_runs_on_the_worker_and_every_replica_sees_it(pool, tmp_path):
    a, b = remote(pool, tmp_path / "a"), remote(pool, tmp_path / "b")
    handle = a.submit("gc-cycles")
    lines = list(handle.lines())                       # streamed while it runs, ends with the run
    result = handle.wait(30)
    assert handle.status == "passed", lines
    assert handle.worker.startswith("cpu-"), handle.worker
    checks = [l for l in lines if l.startswith("CHECK ✓")]
    assert len(checks) == len(result["checks"]) >= 5 and all(c["passed"] for c in result["checks"])
    folder = tmp_path / "a" / handle.id
    assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["checks"] == result["checks"]
    assert (folder / "log.txt").read_text(encoding="utf-8").splitlines() == lines
    assert json.loads((folder / "run.json").read_text(encoding="utf-8"))["status"] == "passed"
    # Replica b did not launch it but finds it, finished, with the same checks, in its history.
    seen = {h.id: h for h in b.load_history()}
    assert seen[handle.id].status == "passed" and seen[handle.id].result["checks"] == result["checks"]
    assert b.history() == [], "b launched nothing itself"


def test_queue_position_cancel_and_parallel_runs(pool, tmp_path):
    runner = remote(pool, tmp_path / "runs")
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    first = [runner.submit(FIXTURE, {"mode": "gate", "gate": str(g)}) for g in gates[:2]]
    deadline = time.monotonic() + 30
    while not all(h.status == "running" for h in first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [h.status for h in first] == ["running", "running"], "two runs at once on a 2-thread worker"
    third = runner.submit(FIXTURE, {"mode": "gate", "gate": str(gates[2])})
    deadline = time.monotonic() + 5
    while third.queue_position is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (third.status, third.queue_position) == ("queued", 1)
    third.cancel()
    assert third.wait(5)["error"] == "cancelled before it started" and third.status == "cancelled"
    for g in gates[:2]:
        g.touch()
    assert [h.wait(30) and h.status for h in first] == ["passed", "passed"]


def test_a_killed_worker_fails_its_run_with_a_clear_message(redis_url, tmp_path):
    url = redis_url[:-1] + "1"                         # its own database: no other worker takes the run
    proc = start_worker(url, tmp_path / "worker-runs", concurrency=1)
    gate = tmp_path / "gate"
    try:
        handle = remote(url, tmp_path / "runs").submit(FIXTURE, {"mode": "gate", "gate": str(gate)})
        deadline = time.monotonic() + 30
        while handle.status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handle.status == "running"
        stop_worker(proc, signal.SIGKILL)
        killed = time.monotonic()
        result = handle.wait(15)
        assert time.monotonic() - killed < 10, "declared lost within the heartbeat expiry, well inside the timeout"
        assert handle.status == "failed" and "worker 失联" in result["error"], result
        assert "worker 失联" in list(handle.lines())[-1]
    finally:
        gate.touch()                                   # the orphaned demo process exits at once
        stop_worker(proc, signal.SIGKILL)


def test_a_broker_that_is_down_is_a_clear_error(tmp_path):
    from servers import free_port
    url = f"redis://127.0.0.1:{free_port()}/0"
    t0 = time.monotonic()
    with pytest.raises(RunnerUnavailable, match="演示队列.*连不上"):
        remote(url, tmp_path / "runs").submit("gc-cycles")
    assert time.monotonic() - t0 < 5
    proc = subprocess.run([sys.executable, "-m", "demos", "run", "gc-cycles", "--runs-dir", str(tmp_path / "cli")],
                          cwd=ROOT, env=dict(os.environ, KB_DEMO_BROKER=url, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and err[0].startswith("error: 演示队列"), proc.stderr
