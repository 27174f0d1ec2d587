"""ddp-launch: start DDP training the way torchrun does and check it against a single-process full-batch run.

What it does. On CPU (gloo) it runs torch's elastic agent, the same `LaunchConfig`/`elastic_launch` that
`torchrun --standalone --nproc-per-node N` runs, inside this process and lets it FORK the N workers
(`demos.ddp_worker.main`): measured on the 2-core machine, the subprocess way cost three more interpreter
start-ups and imports of torch (torchrun's and each worker's), about half of the demo's CPU time. With NCCL
(at least N GPUs; no fork after CUDA) or `--param launcher=torchrun` it runs
`python -m torch.distributed.run --standalone ... -m demos.ddp_worker` as a subprocess and forwards its
lines. Workers print their lines (prefixed `[rank r]`) as they go. Then it checks that

- the workers exited 0 (a crashed rank makes the agent stop the others: a clear failure with that rank's
  error, not a hang; the collectives also carry a timeout, and a watchdog here is the last resort);
- the parameters were bit-identical on every rank after EVERY step (the workers all_gather them each step);
- the first update, the parameters after every step and every recorded batch loss equal a single-process
  reference written here apart from the worker (its own copy of the data, nn.Linear's init, the MSE, its
  gradient by torch.autograd.grad, θ ← θ − lr·∇L; float64, 1e-10): a bug in the worker's shared helpers
  cannot move both sides;
- the full-dataset loss went down.

Ports: `--standalone` starts the rendezvous store on a free port that the OS picks, so two runs on one host
never collide (tests/test_ddp_launch.py starts two at once).

Across nodes, run the worker module itself with torchrun on every node (the launcher here is single-node),
pointing all nodes at one rendezvous endpoint on node 0:

    # on each of the 2 nodes (same command; c10d assigns the node ranks):
    python -m torch.distributed.run --nnodes 2 --nproc-per-node 2 \\
        --rdzv-backend c10d --rdzv-endpoint NODE0_HOST:29400 --rdzv-id ddp-demo-1 \\
        -m demos.ddp_worker --out /shared/run --backend nccl

    # or with static ranks: --node-rank 0 on node 0 and --node-rank 1 on node 1, plus
    #   --master-addr NODE0_HOST --master-port 29500 instead of the --rdzv-* options

Global rank 0 writes `record.json` into `--out`; the bit-identity check runs inside the workers (all_gather),
so it holds across nodes too.

Variants (planted bugs): `no-ddp` (no gradient averaging: ranks diverge, the bit-identity check fails),
`same-shard` (every rank trains on rank 0's shard: ranks agree but differ from the full-batch run),
`crash-rank1` (rank 1 raises at step 2: the run fails promptly with rank 1's error).

CPU time of the default run (launcher and workers together): about 7 s forked, 14 s through torchrun,
measured on the shared 2-core machine.

    python -m demos.ddp_launch --param nproc=2 --param variant=no-ddp --out /tmp/ddp
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from demos.harness import Report, main_for
from demos.spec import DemoParamError, DemoSpec, Param

REPO_ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-10        # float64 parameters vs. the single-process run
WATCHDOG_S = 150.0       # last resort below SPEC.timeout_s: stop torchrun (and so its workers)

SPEC = DemoSpec(
    id="ddp-launch",
    title="用 torchrun 启动 DDP 训练",
    summary="torchrun 启动多进程 DDP 训练，逐步校验各 rank 参数逐位一致，并与单进程全批次训练对比",
    articles=("pytorch-ddp",),
    module="demos.ddp_launch",
    params=(
        Param("nproc", int, 2, "每个节点的进程数（--nproc-per-node）", min=1, max=4),
        Param("epochs", int, 2, "训练轮数", min=1, max=20),
        Param("global_batch", int, 16, "全局批大小（各 rank 批大小之和）", min=2, max=128),
        Param("lr", float, 0.1, "SGD 学习率", min=1e-4, max=1.0),
        Param("seed", int, 0, "模型初始化与采样器的随机种子", min=0, max=2**31 - 1),
        Param("variant", str, "none", "植入的错误", choices=("none", "no-ddp", "same-shard", "crash-rank1"),
              advanced=True),
        Param("launcher", str, "auto", "启动方式：auto（CPU 上在本进程内 fork，GPU 上用 torchrun 子进程）、fork 或 torchrun",
              choices=("auto", "fork", "torchrun"), advanced=True),
    ),
    device="cuda-preferred",
    processes=2,
    timeout_s=180.0,
    tags=("pytorch", "distributed"),
)


def pick_backend(nproc: int) -> str:
    """NCCL when every process can have its own GPU, else gloo on CPU."""
    import torch

    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= nproc else "gloo"


def torchrun_command(out: Path, nproc: int, epochs: int, global_batch: int, lr: float, seed: int,
                     backend: str, variant: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
        "--monitor-interval", "0.1",   # notice a dead worker quickly
        "-m", "demos.ddp_worker",
        "--out", str(out), "--epochs", str(epochs), "--global-batch", str(global_batch),
        "--lr", repr(lr), "--seed", str(seed), "--backend", backend, "--variant", variant,
    ]


def launch(cmd: list[str], report: Report, log_path: Path, watchdog_s: float = WATCHDOG_S) -> tuple[int, list[str]]:
    """Run torchrun, forwarding each output line to report.log as it comes; returns (exit code, lines)."""
    env = dict(os.environ)
    # TORCH_ELASTIC_SHUTDOWN_TIMEOUT: after a rank dies, SIGKILL survivors 5 s after SIGTERM (default 30 s);
    # the environment variable rather than --shutdown-timeout, which torch < 2.13 does not know.
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCH_ELASTIC_SHUTDOWN_TIMEOUT="5",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    # torchrun stays in our process group, so a runner that kills the group reaches it; torchrun forwards
    # SIGTERM to its workers (each of which it keeps in a session of its own).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)

    def stop():
        report.log(f"[launcher] watchdog: torchrun still running after {watchdog_s:.0f} s, stopping it")
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    timer = threading.Timer(watchdog_s, stop)
    timer.daemon = True
    timer.start()
    lines = []
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                log.write(line + "\n")
                report.log(line)
        rc = proc.wait()
    finally:
        timer.cancel()
    return rc, lines


def launch_forked(worker_argv: list[str], nproc: int, report: Report, log_path: Path,
                  watchdog_s: float = WATCHDOG_S) -> tuple[int, list[str], str | None]:
    """Run the workers through torch's elastic agent (what torchrun runs) in THIS process, forking them
    from it: no torchrun interpreter, no worker interpreters, no three more imports of torch. Rendezvous
    as `--standalone` (c10d on a free port). Workers print their lines straight to our stdout (live) and
    append them to `log_path`. Returns (0 or 1, the lines, the first failing rank's error)."""
    import signal
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from demos import ddp_worker

    log_path.write_text("", encoding="utf-8")
    saved = {k: os.environ.get(k) for k in ("DDP_DEMO_LOG", "OMP_NUM_THREADS")}
    os.environ.update(DDP_DEMO_LOG=str(log_path), OMP_NUM_THREADS="1")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"ddp-demo-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="fork", shutdown_timeout=5)

    def stop():  # the agent's SIGTERM handler stops the workers and raises SignalException here
        report.log(f"[launcher] watchdog: workers still running after {watchdog_s:.0f} s, stopping them")
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(watchdog_s, stop)
    timer.daemon = True
    timer.start()
    error = None
    try:
        sys.stdout.flush()
        elastic_launch(config, ddp_worker.main)(worker_argv)
    except ChildFailedError as exc:
        def text(failure):
            return (failure.message.get("message") if isinstance(failure.message, dict) else failure.message) or ""

        # The root cause: the earliest failure (timestamps are whole seconds), preferring a rank whose own
        # error is not the broken connection that a dead peer leaves behind.
        rank, failure = min(exc.failures.items(), key=lambda kv: (kv[1].timestamp, "by peer" in text(kv[1])))
        error = f"rank {rank} (exit code {failure.exitcode}): {text(failure) or 'no message'}"
        if "by peer" in error:   # the crashed rank may have been stopped before its failure was recorded
            own = next((line for line in log_path.read_text(encoding="utf-8").splitlines()
                        if line.startswith("[rank ") and "Error: " in line and "by peer" not in line), None)
            error = own or error
    except SignalException as exc:
        error = f"stopped by signal {exc.sigval.name}"
    finally:
        timer.cancel()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    lines = log_path.read_text(encoding="utf-8").splitlines()
    if error:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"[launcher] {error}\n")
    return (1 if error else 0), lines, error


def first_error(lines: list[str]) -> str:
    """The failing rank's exception: the first 'XError: message' in torchrun's root-cause section, else anywhere."""
    pattern = re.compile(r"\b(\w*(?:Error|Exception)|run\.py: error): (.+)")  # the latter: torchrun's usage errors
    root = next((i for i, line in enumerate(lines) if "Root Cause" in line), 0)
    for line in lines[root:] + lines[:root]:
        m = pattern.search(line)
        if m and m.group(1) != "ChildFailedError":
            return f"{m.group(1)}: {m.group(2).strip()}"
    signal_line = next((line.strip() for line in lines[root:] if "Signal" in line and "received" in line), None)
    return signal_line or "no exception line in the output"


def reference_data() -> tuple:
    """The demo's dataset by its definition (x ~ N(0, 1)⁴, w ~ N(0, 1)⁴, y = sin(x·w) + 0.1·noise, 128
    samples, generator seed 0, float64), written here rather than imported from the worker."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, generator=g, dtype=torch.float64)
    return x, torch.sin(x @ w) + 0.1 * torch.randn(128, 1, generator=g, dtype=torch.float64)


def initial_params(seed: int) -> list[float]:
    """θ_0: torch.nn.Linear's own initialisation of 4→16 and 16→1 after torch.manual_seed(seed), as float64,
    flattened in parameter order (W1, b1, W2, b2)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = (torch.nn.Linear(4, 16), torch.nn.Linear(16, 1))
    return torch.cat([p.detach().to(torch.float64).reshape(-1) for layer in layers
                      for p in (layer.weight, layer.bias)]).tolist()


def _mse(theta, x, y):
    """Mean squared error of the 4→16→1 tanh MLP whose parameters are the flat vector θ."""
    w1, b1 = theta[:64].reshape(16, 4), theta[64:80]
    w2, b2 = theta[80:96].reshape(1, 16), theta[96:97]
    return ((((x @ w1.T + b1).tanh() @ w2.T) + b2 - y) ** 2).mean()


def reference_run(epochs: int, global_batch: int, lr: float, seed: int) -> tuple[list[list[float]], list[float]]:
    """Single process, full global batch, sharing no code with the worker: the data and θ_0 above, each
    epoch's order from torch.randperm seeded with seed + epoch (DistributedSampler's documented shuffle),
    consecutive global batches (the last partial one dropped), the loss `_mse`, its gradient by
    torch.autograd.grad and θ ← θ − lr·∇L. Returns θ after every step and the loss before it."""
    import torch

    x, y = reference_data()
    theta = torch.tensor(initial_params(seed), dtype=torch.float64)
    params, losses = [], []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, len(x) - global_batch + 1, global_batch):
            idx = order[start:start + global_batch]
            theta = theta.detach().requires_grad_(True)
            loss = _mse(theta, x[idx], y[idx])
            (grad,) = torch.autograd.grad(loss, theta)
            theta = theta.detach() - lr * grad
            losses.append(loss.item())
            params.append(theta.tolist())
    return params, losses


def full_loss(flat: list[float], seed: int = 0) -> float:
    """Mean squared error over the whole dataset for the MLP holding parameters `flat` (`seed` unused, kept for
    callers)."""
    import torch

    x, y = reference_data()
    with torch.no_grad():
        return _mse(torch.tensor(flat, dtype=torch.float64), x, y).item()


def plot_losses(path: Path, ddp_losses: list[float], ref_losses: list[float], world: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ref_losses, "o-", color="0.6", lw=3, label="single process, full batch")
    ax.plot(ddp_losses, ".--", color="C0", label=f"DDP, {world} ranks (mean of ranks)")
    ax.set_xlabel("step")
    ax.set_ylabel("batch MSE")
    ax.legend()
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.95)  # fixed margins: tight_layout cost ~1 s of CPU per figure
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(report: Report, nproc: int = 2, epochs: int = 2, global_batch: int = 16, lr: float = 0.1,
        seed: int = 0, variant: str = "none", launcher: str = "auto") -> None:
    from demos.ddp_worker import N_SAMPLES, RECORD_FILE

    if global_batch % nproc or N_SAMPLES % nproc:
        raise DemoParamError(f"global_batch ({global_batch}) and the dataset size ({N_SAMPLES}) must both be "
                             f"divisible by nproc ({nproc}) so every rank gets equal batches")
    backend = pick_backend(nproc)
    work = report.out / "ddp"
    work.mkdir(parents=True, exist_ok=True)
    (work / RECORD_FILE).unlink(missing_ok=True)
    cmd = torchrun_command(work, nproc, epochs, global_batch, lr, seed, backend, variant)
    forked = launcher == "fork" or (launcher == "auto" and backend == "gloo")  # never fork after CUDA
    t0 = time.monotonic()
    if forked:
        report.log(f"[launcher] backend={backend}; elastic agent in this process, {nproc} forked workers: "
                   f"demos.ddp_worker {' '.join(cmd[cmd.index('--out'):])}")
        rc, lines, error = launch_forked(cmd[cmd.index("--out"):], nproc, report, report.artifact("torchrun.log"))
    else:
        report.log(f"[launcher] backend={backend}; running: {' '.join(cmd[1:])}")
        rc, lines = launch(cmd, report, report.artifact("torchrun.log"))
        error = first_error(lines) if rc else None
    report.metric("launch_s", round(time.monotonic() - t0, 2))
    report.metric("launcher", "fork" if forked else "torchrun")
    report.metric("world_size", nproc)
    report.metric("backend", backend)

    rec_path = work / RECORD_FILE
    ok = rc == 0 and rec_path.exists()
    detail = (f"workers exit code 0, {rec_path.name} written (oracle: the agent's exit status)" if ok else
              f"exit code {rc} after {time.monotonic() - t0:.1f} s; first error: {error}")
    if not report.check("workers_exit_cleanly", ok, detail):
        return  # nothing to compare: the failure above is the result
    rec = json.loads(rec_path.read_text())
    report.device = rec["device"] if rec["device"] == "cpu" else f"{rec['device']} ({rec['device_name']})"
    steps = rec["steps"]

    expected_steps = epochs * (N_SAMPLES // global_batch)
    report.check("step_count", len(steps) == expected_steps,
                 f"{len(steps)} steps recorded, expected {epochs} epochs × {N_SAMPLES // global_batch} (oracle: "
                 f"128 samples // global batch, per epoch)")

    mismatched = [i for i, s in enumerate(steps) if not s["identical"]]
    max_rank_diff = max((s["max_rank_diff"] for s in steps), default=0.0)
    report.metric("max_param_diff_across_ranks", max_rank_diff)
    report.check("params_bit_identical_every_step", bool(steps) and not mismatched,
                 f"{len(steps) - len(mismatched)}/{len(steps)} steps bit-identical across {nproc} rank{'s' if nproc > 1 else ''}"
                 + (f"; first mismatch at step {mismatched[0]}, max |Δ| = {max_rank_diff:.3e}" if mismatched else "")
                 + " (oracle: every rank's parameters all_gathered and compared as 64-bit patterns)")

    ref_params, ref_losses = reference_run(epochs, global_batch, lr, seed)
    if steps and ref_params:
        first = max(abs(a - b) for a, b in zip(steps[0]["params"], ref_params[0]))
        report.check("first_update_from_own_autograd", first <= TOLERANCE,
                     f"max |θ_1(DDP) − (θ_0 − lr·∇L)| = {first:.3e} ≤ {TOLERANCE:.0e} (oracle: θ_0 from nn.Linear's "
                     f"init, the first global batch of randperm(seed), the MSE and its gradient by autograd, "
                     f"written in the launcher, no code shared with the worker)")
    n = min(len(ref_params), len(steps))
    diffs = [max(abs(a - b) for a, b in zip(steps[i]["params"], ref_params[i])) for i in range(n)]
    max_ref_diff = max(diffs, default=float("inf"))
    report.metric("max_param_diff_vs_single_process", max_ref_diff)
    worst = max(range(n), key=diffs.__getitem__) if n else -1
    report.check("matches_single_process_full_batch", n == len(ref_params) and max_ref_diff <= TOLERANCE,
                 f"max |θ_ddp − θ_single| over {n} steps = {max_ref_diff:.3e} (step {worst}); "
                 f"tolerance {TOLERANCE:.0e} (oracle: the same independent reference run for every step)")
    loss_diff = max((abs(s["loss"] - r) / max(abs(r), 1e-300) for s, r in zip(steps, ref_losses)), default=float("inf"))
    report.metric("max_rel_loss_diff_vs_single_process", loss_diff)
    report.check("batch_losses_match_reference", n == len(ref_losses) and loss_diff <= 1e-9,
                 f"recorded global-batch loss vs the reference's, max relative difference {loss_diff:.2e} (≤ 1e-9) "
                 f"(oracle: the reference run's MSE before each update)")

    loss0 = full_loss(initial_params(seed), seed)
    loss1 = full_loss(steps[-1]["params"], seed)
    report.metric("full_loss_initial", loss0)
    report.metric("full_loss_final", loss1)
    report.check("loss_decreases", loss1 < loss0,
                 f"full-dataset MSE {loss0:.6f} → {loss1:.6f} (oracle: the launcher's own MSE on its own copy of the data)")

    plot_losses(report.artifact("loss.png"), [s["loss"] for s in steps], ref_losses, nproc)


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
