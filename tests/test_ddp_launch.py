"""ddp-launch: torchrun with 2 gloo workers; the planted bugs fail exactly the checks they should."""
import json
import os
import subprocess
import sys

import pytest

from demos import ddp_launch, registry
from demos.harness import Report
from demos.spec import DemoParamError

ROOT = ddp_launch.REPO_ROOT


def _run(tmp_path, **params) -> Report:
    report = Report(tmp_path / "run", quiet=True)
    ddp_launch.run(report, **params)
    return report


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _checks(report: Report) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


def test_spec_registered():
    spec = registry.get("ddp-launch")
    assert spec is ddp_launch.SPEC
    assert spec.processes == 2
    assert spec.validate({}) == {"nproc": 2, "epochs": 2, "global_batch": 16, "lr": 0.1, "seed": 0,
                                 "variant": "none", "launcher": "auto"}
    assert spec.param("variant").advanced


def test_uneven_batch_is_refused_before_launch(tmp_path):
    with pytest.raises(DemoParamError, match=r"global_batch \(15\).*divisible by nproc \(2\)"):
        _run(tmp_path, global_batch=15)
    assert not (tmp_path / "run" / "torchrun.log").exists(), "nothing may be launched for bad parameters"


def test_first_error_prefers_root_cause():
    lines = ["RuntimeError: Connection closed by peer", "Root Cause (first observed failure):",
             "  traceback : Traceback (most recent call last):", "  RuntimeError: planted crash: rank 1"]
    assert ddp_launch.first_error(lines) == "RuntimeError: planted crash: rank 1"
    assert ddp_launch.first_error(["Root Cause", "  traceback : Signal 6 (SIGABRT) received by PID 7"]) \
        == "traceback : Signal 6 (SIGABRT) received by PID 7"


@pytest.mark.timeout(30)
def test_watchdog_stops_a_hung_launch(tmp_path):
    report = Report(tmp_path, quiet=True)
    hung = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]
    rc, lines = ddp_launch.launch(hung, report, tmp_path / "log.txt", watchdog_s=1.0)
    assert rc == -15, "SIGTERM from the watchdog"
    assert lines == ["started"] and (tmp_path / "log.txt").read_text() == "started\n"


def m_launcher(result: dict) -> str:
    return result["metrics"]["launcher"]


def test_independent_reference_agrees_with_the_workers_own_code():
    """Two implementations written apart: the launcher's reference (own data, init, loss, autograd step) and
    the worker's make_dataset/make_model/sgd_step run single-process over the same global batches."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from demos import ddp_worker

    ref_params, ref_losses = ddp_launch.reference_run(epochs=2, global_batch=16, lr=0.1, seed=5)
    x, y = ddp_worker.make_dataset()
    assert torch.equal(torch.cat(ddp_launch.reference_data(), 1), torch.cat((x, y), 1)), "same data by definition"
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5)
    model = ddp_worker.make_model(5)
    assert ddp_worker.flat_params(model).tolist() == ddp_launch.initial_params(5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    worker_params, worker_losses = [], []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for xb, yb in DataLoader(dataset, batch_size=16, sampler=sampler, drop_last=True):
            worker_losses.append(ddp_worker.sgd_step(model, opt, xb, yb))
            worker_params.append(ddp_worker.flat_params(model).tolist())
    assert len(worker_params) == len(ref_params) == 16
    worst = max(abs(a - b) for wp, rp in zip(worker_params, ref_params) for a, b in zip(wp, rp))
    assert worst < 1e-13, worst
    assert worker_losses == pytest.approx(ref_losses, rel=1e-12)


def test_reference_run_is_deterministic_and_learns():
    params_a, losses_a = ddp_launch.reference_run(epochs=1, global_batch=32, lr=0.1, seed=3)
    params_b, _ = ddp_launch.reference_run(epochs=1, global_batch=32, lr=0.1, seed=3)
    assert len(params_a) == 4 and len(losses_a) == 4, "128 samples / 32 per batch = 4 steps"
    assert params_a == params_b, "same seed, same float64 parameters bit for bit"
    assert ddp_launch.full_loss(params_a[-1], 3) < ddp_launch.full_loss(ddp_launch.initial_params(3), 3)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_concurrent_default_runs_both_pass(tmp_path):
    """Two launches at once on one host: --standalone ports never collide; both pass every check."""
    procs = []
    for name in ("a", "b"):
        out = tmp_path / name
        out.mkdir()
        procs.append((out, subprocess.Popen([sys.executable, "-m", "demos.ddp_launch", "--out", "."], cwd=out,
                                            env={**_env(), "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True)))
    for out, proc in procs:
        stdout, _ = proc.communicate(timeout=110)
        assert proc.returncode == 0, stdout[-3000:]
        result = json.loads((out / "result.json").read_text())
        assert result["passed"] is True
        assert [c["name"] for c in result["checks"]] == [
            "workers_exit_cleanly", "step_count", "params_bit_identical_every_step",
            "first_update_from_own_autograd", "matches_single_process_full_batch", "batch_losses_match_reference",
            "loss_decreases"]
        assert m_launcher(result) == "fork"
        m = result["metrics"]
        assert m["world_size"] == 2 and m["backend"] == "gloo"
        assert m["max_param_diff_across_ranks"] == 0.0
        assert m["max_param_diff_vs_single_process"] <= 1e-10
        # Every rank's per-step line was forwarded to stdout (the UI shows them live).
        for rank in (0, 1):
            assert sum(f"[rank {rank}] epoch" in line for line in stdout.splitlines()) == 16, stdout[-2000:]
        assert set(result["artifacts"]) == {"torchrun.log", "loss.png"}
        assert (out / "ddp" / "record.json").exists()



@pytest.mark.slow
@pytest.mark.timeout(90)
def test_no_ddp_variant_breaks_bit_identity(tmp_path):
    report = _run(tmp_path, variant="no-ddp")
    assert _checks(report) == {"workers_exit_cleanly": True, "step_count": True,
                               "params_bit_identical_every_step": False, "first_update_from_own_autograd": False,
                               "matches_single_process_full_batch": False, "batch_losses_match_reference": False,
                               "loss_decreases": True}
    detail = next(c.detail for c in report.checks if c.name == "params_bit_identical_every_step")
    assert detail.startswith("0/16 steps bit-identical") and "first mismatch at step 0" in detail, detail
    assert report.metrics["max_param_diff_across_ranks"] > 1e-6


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_same_shard_variant_stays_identical_but_misses_full_batch(tmp_path):
    report = _run(tmp_path, variant="same-shard")
    assert _checks(report) == {"workers_exit_cleanly": True, "step_count": True,
                               "params_bit_identical_every_step": True, "first_update_from_own_autograd": False,
                               "matches_single_process_full_batch": False, "batch_losses_match_reference": False,
                               "loss_decreases": True}
    assert report.metrics["max_param_diff_across_ranks"] == 0.0
    assert report.metrics["max_param_diff_vs_single_process"] > 1e-6


@pytest.mark.slow
@pytest.mark.timeout(60)  # a hang here is the bug under test; the timeout turns it into a failure
def test_crashed_rank_fails_the_run_with_its_error(tmp_path):
    report = _run(tmp_path, variant="crash-rank1")
    assert [(c.name, c.passed) for c in report.checks] == [("workers_exit_cleanly", False)]
    detail = report.checks[0].detail
    assert "exit code 1" in detail and "RuntimeError: planted crash: rank 1 fails before step 2" in detail, detail
    assert not (report.out / "ddp" / "record.json").exists()


_FAILED_RANK = """
import atexit, os, sys, time
import torch.distributed as dist
from demos import ddp_worker

def boom(*args):
    raise RuntimeError("planted failure in train")

def destroy():
    print("destroy_process_group called on the failure path", flush=True)

ddp_worker.train = boom
ddp_worker.FAILED_EXIT_S = 2.0
dist.destroy_process_group = destroy
atexit.register(time.sleep, 600)  # an exit that never finishes, as a stuck gloo teardown would be
ddp_worker.main(["--out", sys.argv[1]])
"""


def test_failed_rank_skips_destroy_and_cannot_stall_its_exit(tmp_path):
    """A rank whose training raised says its error, leaves the process group alone (destroying it while a
    peer waits in a collective can block for good) and, when its exit stalls, dumps its stacks and ends
    with exit code 1 after FAILED_EXIT_S instead of holding its peer until the collective timeout."""
    from servers import free_port

    env = {**_env(), "PYTHONPATH": str(ROOT), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-c", _FAILED_RANK, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[rank 0] RuntimeError: planted failure in train"], proc.stdout
    assert "Timeout (0:00:02)!" in proc.stderr and "in main" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "record.json").exists()
