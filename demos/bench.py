"""Benchmark of the edm-sampling core: Heun sampling throughput at NFE 35 (N = 18) on the 2-D mixture
for 10⁴ … 10⁷ samples, CPU and CUDA (when present), CPU-vs-CUDA agreement on shared latents (float64), and
the learned denoiser's training steps/s. Prints Markdown tables; `--json PATH` also writes the numbers.

    python -m demos.bench --quick            # a few seconds on CPU
    python -m demos.bench --json bench.json  # CPU up to --max-samples (10⁶), CUDA up to 10⁷
    python -m demos.bench --gpu-report       # eager vs CUDA graph, bytes/sample, roofline ratio

It measures; it checks nothing (the demos and tests do). Speed numbers belong here, not in tests.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass

NUM_STEPS = 18


@dataclass
class SamplingRow:
    device: str
    samples: int
    batch: int
    nfe: int
    seconds: float
    samples_per_s: float


@dataclass
class TrainingRow:
    device: str
    steps: int
    batch: int
    seconds: float
    steps_per_s: float


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    threads = torch.get_num_threads()
    return f"cpu ({cpu_name()}, {threads} thread{'s' if threads != 1 else ''})"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_batched(mixture, z, batch: int):
    """Heun N = 18 from latents z (on the target device), in batches; returns samples and denoiser calls."""
    import torch

    from demos.diffusion import CountingDenoiser, get_sigmas_karras, sample_heun

    sigmas = get_sigmas_karras(NUM_STEPS, device=z.device)
    counter = CountingDenoiser(mixture.denoise)
    out = [sample_heun(counter, chunk * sigmas[0], sigmas) for chunk in z.split(batch)]
    return torch.cat(out), counter.calls // len(out)


def time_sampling(device, n: int, batch: int, seed: int = 0) -> SamplingRow:
    import torch

    from demos.diffusion import FLOAT, make_mixture

    mixture = make_mixture(2, device=device)
    z = torch.randn(n, 2, generator=torch.Generator(device).manual_seed(seed), dtype=FLOAT, device=device)
    _sync(device)
    start = time.perf_counter()
    x, nfe = sample_batched(mixture, z, batch)
    _sync(device)
    seconds = time.perf_counter() - start
    assert torch.isfinite(x).all(), "non-finite samples"
    return SamplingRow(device_label(device), n, min(batch, n), nfe, round(seconds, 4), round(n / seconds, 1))


def agreement(n: int, seed: int = 0) -> float:
    """Max |x_cpu − x_cuda| for the same float64 latents sampled on both devices."""
    import torch

    from demos.diffusion import FLOAT, make_mixture

    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=FLOAT)
    cuda = torch.device("cuda:0")
    x_cpu, _ = sample_batched(make_mixture(2), z, n)
    x_cuda, _ = sample_batched(make_mixture(2, device=cuda), z.to(cuda), n)
    return float((x_cpu - x_cuda.cpu()).abs().max())


def time_training(device, steps: int, batch: int = 512) -> TrainingRow:
    import torch

    from demos.diffusion import make_mixture
    from demos.diffusion_learned import EDMPrecond, train_denoiser

    mixture = make_mixture(2, device=device)
    torch.manual_seed(0)
    net = EDMPrecond(2).to(device)
    train_denoiser(net, mixture, 5, torch.Generator(device).manual_seed(0), batch_size=batch)  # warm-up
    _sync(device)
    result = train_denoiser(net, mixture, steps, torch.Generator(device).manual_seed(1), batch_size=batch)
    _sync(device)
    return TrainingRow(device_label(device), steps, batch, round(result.seconds, 3),
                       round(steps / result.seconds, 1))


def run_bench(quick: bool = False, max_samples: int = 10**6, cpu_batch: int = 250_000,
              cuda_batch: int = 10**7, log=print) -> dict:
    import torch

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not quick:
        devices.append(torch.device("cuda:0"))
    sizes = [10**4, 10**5] if quick else [10**4, 10**5, 10**6, 10**7]
    sampling, training = [], []
    for device in devices:
        cap = max_samples if device.type == "cpu" else 10**7
        batch = cpu_batch if device.type == "cpu" else cuda_batch
        time_sampling(device, 1000, batch)  # warm-up: allocator, kernels, thread pool
        for n in sizes:
            if n > cap:
                continue
            row = time_sampling(device, n, batch)
            log(f"sampling {row.device}: {n:>9,} samples in {row.seconds:.3f} s ({row.samples_per_s:,.0f}/s)")
            sampling.append(row)
        steps = 50 if quick else (200 if device.type == "cpu" else 1000)
        row = time_training(device, steps)
        log(f"training {row.device}: {row.steps_per_s:,.1f} steps/s (batch {row.batch})")
        training.append(row)
    max_diff = agreement(10**5) if len(devices) > 1 else None
    if max_diff is not None:
        log(f"CPU vs CUDA on the same 10^5 latents: max |Δx| = {max_diff:.3e}")
    return {
        "torch": torch.__version__,
        "devices": [device_label(d) for d in devices],
        "sampling": [asdict(r) for r in sampling],
        "training": [asdict(r) for r in training],
        "cpu_cuda_max_abs_diff": max_diff,
        "num_steps": NUM_STEPS,
    }


def gpu_report(sizes=(10**6, 10**7), repeats: int = 3, log=print) -> dict:
    """Heun N = 18 on the 2-D mixture: eager vs one captured CUDA graph (same latents, max |Δx|), samples/s,
    the unfused implementation's bytes per sample, the device's copy bandwidth and data-sheet peak, and the
    roofline ratio (achieved bytes/s ÷ bandwidth). On a CPU only the eager rows (no graph to capture)."""
    import torch

    from demos import gpu_sampler as gs
    from demos.diffusion import FLOAT, make_mixture

    device = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else cpu_name()
    per_sample = gs.traffic_bytes_per_sample()
    copy_bw = gs.copy_bandwidth(device, nbytes=(1 << 30) if device.type == "cuda" else (1 << 26))
    peak = gs.spec_bandwidth(name) if device.type == "cuda" else None
    log(f"{name}: unfused Heun traffic {per_sample:,.0f} B/sample; copy bandwidth {copy_bw / 1e9:,.0f} GB/s"
        + (f", data sheet {peak / 1e9:,.0f} GB/s" if peak else ""))
    mixture = make_mixture(2, device=device)
    rows = []
    for n in sizes if device.type == "cuda" else [s for s in sizes if s <= 10**6]:
        z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=FLOAT).to(device)
        modes = [("eager", lambda z=z: gs.eager_heun(mixture, z))]
        graphed = None
        if device.type == "cuda":
            t0 = time.perf_counter()
            graphed = gs.GraphedHeun(mixture, n)
            _sync(device)
            capture_s = time.perf_counter() - t0
            modes.append(("cuda-graph", lambda z=z: graphed(z)))
            try:  # Inductor fuses the elementwise ops (less traffic); "reduce-overhead" adds CUDA graphs
                compiled = torch.compile(lambda z: gs.eager_heun(mixture, z), mode="reduce-overhead",
                                         fullgraph=True, dynamic=False)
                t0 = time.perf_counter()
                compiled(z)
                _sync(device)
                log(f"torch.compile(mode='reduce-overhead'): compiled in {time.perf_counter() - t0:.1f} s")
                modes.append(("compiled", lambda z=z: compiled(z).clone()))
            except Exception as exc:  # no Triton, no compiler: report it, keep the other rows
                log(f"torch.compile unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        outs = {}
        for mode, fn in modes:
            best = float("inf")
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                outs[mode] = fn()
                _sync(device)
                best = min(best, time.perf_counter() - t0)
            rate = n / best
            bw = rate * per_sample
            row = {"device": name, "mode": mode, "samples": n, "seconds": round(best, 4), "samples_per_s": round(rate),
                   "bytes_per_sample": round(per_sample), "achieved_GBps": round(bw / 1e9, 1),
                   "roofline_copy": round(bw / copy_bw, 3), "roofline_spec": round(bw / peak, 3) if peak else None,
                   "capture_s": round(capture_s, 3) if mode == "cuda-graph" else None}
            rows.append(row)
            log(f"{mode:10} {n:>11,} samples {best:.4f} s  {rate:,.0f}/s  {bw / 1e9:,.0f} GB/s  "
                f"roofline {row['roofline_copy']:.2f} of copy bandwidth")
        for row in rows[-len(modes):]:
            if row["mode"] != "eager":
                diff = float((outs[row["mode"]] - outs["eager"]).abs().max())
                row["max_abs_diff_vs_eager"] = diff
                log(f"{row['mode']} vs eager on the same {n:,} latents: max |Δx| = {diff:.3e}")
            del graphed
            torch.cuda.empty_cache()
    return {"device": name, "bytes_per_sample": per_sample, "copy_bandwidth": copy_bw, "spec_bandwidth": peak,
            "rows": rows}


def gpu_markdown(report: dict) -> str:
    lines = [f"{report['device']}: unfused Heun N = 18 traffic {report['bytes_per_sample']:,.0f} B/sample; "
             f"copy bandwidth {report['copy_bandwidth'] / 1e9:,.0f} GB/s"
             + (f", data sheet {report['spec_bandwidth'] / 1e9:,.0f} GB/s" if report["spec_bandwidth"] else ""), "",
             "| mode | samples | seconds | samples/s | GB/s | of copy bw | of data sheet | max |Δx| vs eager |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        spec = "—" if r["roofline_spec"] is None else f"{r['roofline_spec']:.2f}"
        diff = r.get("max_abs_diff_vs_eager")
        lines.append(f"| {r['mode']} | {r['samples']:,} | {r['seconds']:.4f} | {r['samples_per_s']:,} | "
                     f"{r['achieved_GBps']:,.0f} | {r['roofline_copy']:.2f} | {spec} | "
                     f"{'—' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    lines = [f"torch {result['torch']}; Heun N = {result['num_steps']} (NFE {2 * result['num_steps'] - 1}), "
             "2-D 8-component mixture, float64", "",
             "| device | samples | batch | NFE | seconds | samples/s |", "|---|---:|---:|---:|---:|---:|"]
    for r in result["sampling"]:
        lines.append(f"| {r['device']} | {r['samples']:,} | {r['batch']:,} | {r['nfe']} | {r['seconds']:.3f} | "
                     f"{r['samples_per_s']:,.0f} |")
    lines += ["", "| device | training steps | batch | seconds | steps/s |", "|---|---:|---:|---:|---:|"]
    for r in result["training"]:
        lines.append(f"| {r['device']} | {r['steps']} | {r['batch']} | {r['seconds']:.3f} | {r['steps_per_s']:,.1f} |")
    if result["cpu_cuda_max_abs_diff"] is not None:
        lines += ["", f"CPU vs CUDA, same 10^5 latents: max |x_cpu − x_cuda| = {result['cpu_cuda_max_abs_diff']:.3e}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU only, 10^4 and 10^5 samples, 50 training steps")
    parser.add_argument("--max-samples", type=int, default=10**6, help="largest sample count on CPU (default 10^6)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--gpu-report", action="store_true",
                        help="eager vs CUDA-graph Heun with the roofline ratio (on a CPU: the eager rows only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 with --quick, since on a busy "
                             "2-core machine two threads ran the 10^4-sample case 20× slower than one)")
    args = parser.parse_args(argv)
    if args.max_samples < 1:
        parser.error("--max-samples must be ≥ 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be ≥ 1")
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if args.gpu_report:
        result = gpu_report(sizes=(10**5,) if args.quick else (10**6, 10**7))
        print()
        print(gpu_markdown(result))
    else:
        result = run_bench(quick=args.quick, max_samples=args.max_samples)
        print()
        print(markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, ensure_ascii=False, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
