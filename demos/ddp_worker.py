"""One DDP worker of the ddp-launch demo, plus the model, data and SGD step it shares with the reference run.

torchrun starts this module once per process (`-m demos.ddp_worker`), or the launcher forks `main` through
torch's elastic agent (the same agent torchrun runs); it reads RANK/WORLD_SIZE/LOCAL_RANK
from the environment torchrun sets, trains a 2-layer MLP regression in float64 on a fixed synthetic dataset
with a DistributedSampler, and after EVERY step all_gathers the flattened parameters of every rank and
compares them bit for bit. Global rank 0 writes `record.json` (per-step losses, the bit-identity verdict,
its parameters) that the launcher (`demos/ddp_launch.py`) compares with a single-process full-batch run that
it writes itself, sharing no code with this module.

Variants plant bugs the launcher's checks must catch: `no-ddp` (no DDP wrapper, so no gradient averaging),
`same-shard` (every rank samples rank 0's shard), `crash-rank1` (rank 1 raises mid-run).

This module knows nothing about the demo harness; it only writes `record.json` into `--out`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import faulthandler
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

N_SAMPLES = 128          # fixed synthetic dataset size
N_FEATURES = 4
HIDDEN = 16
VARIANTS = ("none", "no-ddp", "same-shard", "crash-rank1")
CRASH_STEP = 2           # crash-rank1 raises on rank 1 before this (0-based) step
RECORD_FILE = "record.json"
FAILED_EXIT_S = 10.0     # a failed rank still alive this long after its error dumps its stacks and exits


def make_dataset(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, 1)^4, y = sin(x·w) + 0.1·noise, float64; the same tensors on every rank and in the reference."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=g, dtype=torch.float64)
    w = torch.randn(N_FEATURES, 1, generator=g, dtype=torch.float64)
    y = torch.sin(x @ w) + 0.1 * torch.randn(N_SAMPLES, 1, generator=g, dtype=torch.float64)
    return x, y


def make_model(seed: int) -> torch.nn.Module:
    """The 2-layer MLP (4 -> 16 -> 1, tanh) in float64, initialised from `seed`."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 1),
    ).to(torch.float64)


def sgd_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One step on the mean squared error of this batch; under DDP backward() averages gradients over ranks."""
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def param_digest(flat: torch.Tensor) -> str:
    """Short sha256 of the parameters' bytes: equal digests mean bit-identical parameters."""
    return hashlib.sha256(flat.cpu().numpy().tobytes()).hexdigest()[:12]


def say(line: str) -> None:
    """One write(2) per line: lines from several ranks sharing a pipe never splice into each other. With
    DDP_DEMO_LOG set (the in-process launcher), the line is also appended to that file."""
    data = (line + "\n").encode()
    os.write(1, data)
    log = os.environ.get("DDP_DEMO_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demos.ddp_worker", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for record.json (global rank 0 writes it)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    p.add_argument("--variant", choices=VARIANTS, default="none")
    p.add_argument("--timeout-s", type=float, default=60.0, help="collective timeout (a dead peer fails, not hangs)")
    return p.parse_args(argv)


def ranks_identical(flat: torch.Tensor, world: int) -> tuple[bool, float]:
    """The bit-identity check (checking code, never a mutation target): every rank's parameters all_gathered
    and compared as raw 64-bit patterns; also the largest absolute difference to rank 0."""
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    bits = [t.view(torch.int64) for t in gathered]
    identical = all(torch.equal(bits[0], b) for b in bits[1:])
    max_diff = max(((t - gathered[0]).abs().max().item() for t in gathered[1:]), default=0.0)
    return identical, max_diff


def train(args: argparse.Namespace, rank: int, world: int, local_rank: int, device: torch.device) -> list[dict]:
    """This rank's training loop: DistributedSampler shard, DDP-wrapped MLP, SGD; one record per step."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    tag = f"[rank {rank}]"
    x, y = make_dataset()
    dataset = TensorDataset(x, y)
    # Correct: each rank its own 1/world of the permutation. same-shard: everyone takes rank 0's part.
    shard = 0 if args.variant == "same-shard" else rank
    sampler = DistributedSampler(dataset, num_replicas=world, rank=shard, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.global_batch // world, sampler=sampler, drop_last=True)
    model = make_model(args.seed).to(device)
    # DDP broadcasts rank 0's parameters at construction and averages gradients in backward().
    net = model if args.variant == "no-ddp" else DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    say(f"{tag} backend={args.backend} device={device} world={world} "
        f"local_batch={args.global_batch // world} variant={args.variant}")

    steps = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # same permutation on every rank, a new one each epoch
        for xb, yb in loader:
            step = len(steps)
            if args.variant == "crash-rank1" and rank == 1 and step == CRASH_STEP:
                raise RuntimeError(f"planted crash: rank 1 fails before step {step}")
            local_loss = sgd_step(net, opt, xb.to(device), yb.to(device))
            # The mean of the ranks' local losses is the global batch's loss (equal local batch sizes).
            loss_t = torch.tensor([local_loss], dtype=torch.float64, device=device)
            dist.all_reduce(loss_t)
            flat = flat_params(model)
            identical, max_diff = ranks_identical(flat, world)
            say(f"{tag} epoch {epoch} step {step:2d} local_loss {local_loss:.6f} "
                f"params {param_digest(flat)} ranks_identical={identical}")
            steps.append({"epoch": epoch, "loss": loss_t.item() / world, "identical": identical,
                          "max_rank_diff": max_diff, "params": flat.cpu().tolist()})
    return steps


@record  # torchrun then prints this rank's traceback in its failure summary
def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    # A worker forked by the launcher inherits its Python SIGTERM handler, which cannot run while this rank
    # waits inside a collective; the default action lets the agent stop a survivor at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    tag = f"[rank {rank}]"
    if args.global_batch % world:
        raise SystemExit(f"{tag} global batch {args.global_batch} is not divisible by world size {world}")
    if args.backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(args.backend, timeout=_dt.timedelta(seconds=args.timeout_s),
                            device_id=device if device.type == "cuda" else None)
    try:
        steps = train(args, rank, world, local_rank, device)
        if rank == 0:
            rec = {"world_size": world, "backend": args.backend, "device": str(device),
                   "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "variant": args.variant, "epochs": args.epochs, "global_batch": args.global_batch,
                   "lr": args.lr, "seed": args.seed, "steps": steps}
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / (RECORD_FILE + ".tmp")
            tmp.write_text(json.dumps(rec))  # json floats round-trip float64 exactly
            tmp.replace(out / RECORD_FILE)
    except Exception as exc:
        # Said at once, before the agent may stop this rank: a peer's "connection closed" can reach the
        # agent first, and the launcher then finds the root cause in the log by this line.
        say(f"{tag} {type(exc).__name__}: {exc}")
        # No destroy_process_group() here: while a peer still waits inside a collective it can block
        # this rank for good (as torchtitan found, pytorch/torchtitan#1342), and then neither rank exits
        # before the collective timeout. Exiting closes this rank's sockets, which is what fails the peer.
        # Should the exit itself stall, print where and end the process with exit code 1.
        faulthandler.dump_traceback_later(FAILED_EXIT_S, exit=True)
        raise
    say(f"{tag} done: {len(steps)} steps")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Skip interpreter finalisation: with gloo it aborts now and then ("terminate called without an active
    # exception", about 1 run in 10 here) AFTER destroy_process_group returned, which would turn a finished,
    # recorded run into a failure. Everything is written and flushed by now.
    sys.stdout.flush()
    os._exit(0)
