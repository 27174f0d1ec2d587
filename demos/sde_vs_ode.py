"""Demo sde-vs-ode: the reverse-time SDE (Euler–Maruyama) and the probability-flow ODE (Heun) on the same
Gaussian mixture and the same analytic score, in the VP and VE forms of Song et al. (2021).

    python -m demos.sde_vs_ode --out /tmp/sde
    python -m demos.sde_vs_ode --param variant=ode-full-score --out /tmp/sde-bug

Checks (each can fail): SDE and ODE samples both match fresh data (sliced W2 and mode-weight error within
the data-vs-data spread measured in the same run); the ODE is deterministic (same latent → bit-identical
sample) and invertible (encode data to latents by integrating forward, decode back: max error below a
tolerance); the SDE is not (two runs from the same latent with different noise land about as far apart as
two independent data points). The processes and integrators live in `demos.diffusion_sde`.
"""
from __future__ import annotations

import math
import time

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

VARIANTS = ("none", "ode-full-score", "sde-half-score")

SPEC = DemoSpec(
    id="sde-vs-ode",
    title="逆向 SDE 与概率流 ODE：同一得分，两种采样",
    summary="在解析得分已知的高斯混合上比较 VP/VE 的逆向 SDE（Euler–Maruyama）与概率流 ODE（Heun）：都回到数据分布，ODE 确定且可逆，SDE 随机。",
    articles=("diffusion-sde", "edm-diffusion-framework"),
    module="demos.sde_vs_ode",
    params=(
        Param("num_samples", int, 2000, "样本数（分布检查用）", min=200, max=20000),
        Param("dim", int, 2, "高斯混合的维数", min=2, max=64),
        Param("seed", int, 0, "随机种子", min=0, max=2**31 - 1),
        Param("sde_steps", int, 250, "Euler–Maruyama 步数", min=50, max=5000),
        Param("ode_steps", int, 400, "概率流 ODE 的 Heun 步数", min=20, max=2000),
        Param("num_roundtrip", int, 256, "编码—解码往返检查的数据点数", min=16, max=4096),
        Param("variant", str, "none", "植入的错误", choices=VARIANTS, advanced=True),
    ),
    device="cuda-preferred",
    timeout_s=300,  # a safety bound: ~25 s of CPU; a busy shared machine has stretched it past 120 s
)

SPREAD_SEEDS, SPREAD_K = 10, 4.0
# Round trip ε → 1 → ε with Heun on the ρ = 7 time grid, 400 steps each way, 256 points, worst of 20
# seeds: max error 1.7e-4 (VP) and 7.7e-5 (VE) in 2-D, 1.3e-3 and 9.1e-4 in 16-D (200 steps: up to 1.0e-2
# in 16-D; a uniform t grid at 400 steps: 4.0e-3 for VP in 2-D). The tolerance is 1/8 of the narrowest
# mixture component's std (0.04).
ROUNDTRIP_TOL = 5e-3
# Two SDE runs from one latent: mean distance ≥ this fraction of the mean distance between independent
# data points (measured ≥ 0.95 of it over 10 seeds in 2-D and 6 in 16-D: the VP/VE SDE forgets where it
# started almost entirely).
SDE_MIN_SPREAD = 0.5
NUM_PAIR_LATENTS = 512
NUM_TRAJECTORIES = 8
# Marginals on the way: at the grid times nearest these σ(t), the SDE's and the ODE's x/s(t) must match the
# closed-form marginal p_t = data ⊛ N(0, σ(t)² I) (sliced W2 within that distribution's own data-vs-data
# spread, same k). The oracle's s(t) and σ(t) are the article's formulas, written here, not the processes'.
MARGINAL_SIGMAS = (5.0, 1.0, 0.2)


def oracle_s_sigma(name: str, t: float) -> tuple[float, float]:
    """s(t), σ(t) of the article's VP (β_min = 0.1, β_max = 20) and VE (σ_min = 0.01, σ_max = 50) SDEs:
    VP: B(t) = β_min t + ½ t² (β_max − β_min), s = e^{−B/2}, σ = √(e^B − 1); VE: s = 1,
    σ = √(σ_VE(t)² − σ_min²) with σ_VE(t) = σ_min (σ_max/σ_min)^t."""
    if name == "VP":
        big_b = 0.1 * t + 0.5 * t * t * (20.0 - 0.1)
        return math.exp(-0.5 * big_b), math.sqrt(math.expm1(big_b))
    sigma_ve = 0.01 * (50.0 / 0.01) ** t
    return 1.0, math.sqrt(sigma_ve ** 2 - 0.01 ** 2)


def process_identity_errors(process, times=(0.1, 0.5, 1.0), nodes: int = 200) -> tuple[float, float]:
    """EDM Table 1 ties the SDE's coefficients to its perturbation kernel: s(t) = exp(∫_0^t f), and
    σ(t)² = ∫_0^t g(u)² / s(u)² du. Both sides come from the code under test (f, g² vs s, σ), the integrals
    from Gauss–Legendre quadrature (numpy). Returns (max rel. error of s, max rel. error of σ²) and
    separately the gap to the article's closed forms is checked by `oracle_s_sigma`."""
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(nodes)
    err_s = err_sigma = 0.0
    for t in times:
        u = 0.5 * t * (x + 1)
        int_f = 0.5 * t * sum(wi * process.f(ui) for ui, wi in zip(u, w))
        int_g = 0.5 * t * sum(wi * process.g2(ui) / process.s(ui) ** 2 for ui, wi in zip(u, w))
        err_s = max(err_s, abs(process.s(t) - math.exp(int_f)) / math.exp(int_f))
        err_sigma = max(err_sigma, abs(process.sigma(t) ** 2 - int_g) / int_g)
    return err_s, err_sigma


def marginal_spread(torch, dm, mixture_cpu, sigma: float, n: int, seed: int):
    """Data-vs-data SW2 spread of the noised mixture y + σ ε at sample size n."""
    values = []
    for k in range(SPREAD_SEEDS):
        gen = torch.Generator().manual_seed(seed + k)
        a, _ = mixture_cpu.sample(n, gen)
        b, _ = mixture_cpu.sample(n, gen)
        a = a + sigma * torch.randn(a.shape, generator=gen, dtype=torch.float64)
        b = b + sigma * torch.randn(b.shape, generator=gen, dtype=torch.float64)
        values.append(dm.sliced_wasserstein2(a, b))
    return dm.Spread(tuple(values), SPREAD_K)


def marginal_errors(torch, dm, name, mixture_cpu, ts, trajectory, fresh, seed) -> list[tuple]:
    """For each MARGINAL_SIGMAS: (target σ, t, oracle σ(t), SW2 of x/s(t) vs data ⊛ N(0, σ(t)²), threshold)."""
    times = ts.tolist()[1:]  # trajectory[j] is x at ts[j + 1]
    rows = []
    for target in MARGINAL_SIGMAS:
        j = min(range(len(times)), key=lambda i: abs(math.log(oracle_s_sigma(name, times[i])[1] / target)))
        s_t, sigma_t = oracle_s_sigma(name, times[j])
        x = trajectory[j].cpu() / s_t
        gen = torch.Generator().manual_seed(seed + 101)
        ref = fresh + sigma_t * torch.randn(fresh.shape, generator=gen, dtype=torch.float64)
        spread = marginal_spread(torch, dm, mixture_cpu, sigma_t, len(fresh), seed + 202)
        sw2 = dm.sliced_wasserstein2(x, ref) if bool(torch.isfinite(x).all()) else math.inf
        rows.append((target, times[j], sigma_t, sw2, spread.threshold))
    return rows


def _scales(variant: str) -> tuple[float, float]:
    """Score coefficients (SDE, ODE): g² and ½g²; the planted bugs use g² in the ODE or ½g² in the SDE."""
    return (0.5 if variant == "sde-half-score" else 1.0), (1.0 if variant == "ode-full-score" else 0.5)


def run(report: Report, num_samples: int = 2000, dim: int = 2, seed: int = 0, sde_steps: int = 250,
        ode_steps: int = 400, num_roundtrip: int = 256, variant: str = "none") -> None:
    import torch

    from demos import diffusion as dm

    device, report.device = dm.pick_device()
    with dm.torch_threads(device):
        _run(report, torch, dm, device, num_samples, dim, seed, sde_steps, ode_steps, num_roundtrip, variant)


def _run(report, torch, dm, device, num_samples, dim, seed, sde_steps, ode_steps, num_roundtrip, variant):
    from demos import diffusion_sde as ds

    t_start = time.perf_counter()
    mixture_cpu = dm.make_mixture(dim)
    mixture = mixture_cpu.to(device)
    sde_scale, ode_scale = _scales(variant)
    report.log(f"device {report.device}; {mixture.num_components}-component mixture in {dim}-D; n = {num_samples}; "
               f"SDE {sde_steps} Euler–Maruyama steps, ODE {ode_steps} Heun steps; variant = {variant}")
    fresh, _ = mixture_cpu.sample(num_samples, torch.Generator().manual_seed(seed + 7_919))
    sw2_spread, mode_spread = dm.reference_spread(mixture_cpu, num_samples, SPREAD_SEEDS, SPREAD_K)
    a, b = fresh[: len(fresh) // 2], fresh[len(fresh) // 2: 2 * (len(fresh) // 2)]
    data_pair_dist = float((a - b).norm(dim=1).mean())
    report.metric("sw2_threshold", round(sw2_spread.threshold, 5))
    report.metric("mode_error_threshold", round(mode_spread.threshold, 5))
    report.metric("data_pair_distance", round(data_pair_dist, 4))
    report.log(f"data vs data over {SPREAD_SEEDS} seeds: SW2 {sw2_spread.mean:.4f} ± {sw2_spread.std:.4f}, "
               f"mode error {mode_spread.mean:.4f} ± {mode_spread.std:.4f}")
    results, paths = {}, {}
    for name, process in ds.PROCESSES.items():
        results[name], paths[name] = _one_process(report, torch, dm, ds, device, mixture, mixture_cpu, process,
                                                  fresh, num_samples, seed, sde_steps, ode_steps, num_roundtrip,
                                                  sde_scale, ode_scale)
    _plot(report, ds, mixture_cpu, fresh, results, paths)
    report.metric("duration_s", round(time.perf_counter() - t_start, 2))

    for name, r in results.items():
        for kind in ("sde", "ode"):
            sw2, mode = r[f"{kind}_sw2"], r[f"{kind}_mode"]
            report.check(f"{name}_{kind}_sw2_vs_data", sw2 <= sw2_spread.threshold,
                         f"SW2 {sw2:.4f} ≤ {sw2_spread.threshold:.4f} (data-vs-data mean {sw2_spread.mean:.4f} + "
                         f"{SPREAD_K:g}·std {sw2_spread.std:.4f}) (oracle: fresh mixture draws and their data-vs-data "
                         f"spread)")
            report.check(f"{name}_{kind}_mode_weights", mode <= mode_spread.threshold,
                         f"TV(mode fractions, weights) {mode:.4f} ≤ {mode_spread.threshold:.4f} (oracle: the mixture's "
                         f"weights)")
        for kind in ("sde", "ode"):
            rows = r["marginals"][kind]
            report.check(f"{name}_{kind}_marginals_on_the_way", all(sw2 <= thr for *_, sw2, thr in rows),
                         "; ".join(f"σ(t = {t:.3f}) = {sig:.3g}: SW2 {sw2:.4f} ≤ {thr:.4f}" for _, t, sig, sw2, thr in rows)
                         + " (oracle: the closed-form marginal data ⊛ N(0, σ(t)² I), s(t) and σ(t) from the article's "
                         "formulas, threshold from its own data-vs-data spread)")
        err_s, err_sigma = r["identity_errors"]
        report.check(f"{name}_coefficients_consistent", max(err_s, err_sigma) <= 1e-9 and r["formula_errors"] <= 1e-9,
                     f"s(t) vs exp(∫f) {err_s:.1e}, σ(t)² vs ∫g²/s² {err_sigma:.1e}, s and σ vs the article's "
                     f"formulas {r['formula_errors']:.1e} at t = 0.1, 0.5, 1 (≤ 1e-9) (oracle: EDM Table 1's "
                     f"s = exp∫f, σ² = ∫g²/s² by Gauss–Legendre quadrature, and the closed forms)")
        report.check(f"{name}_ode_deterministic", r["ode_identical"],
                     f"two ODE runs from the same {r['n_pair']} latents bit-identical: {r['ode_identical']} "
                     f"(max diff {r['ode_rerun_max']:.1e}) (oracle: torch.equal on a rerun)")
        report.check(f"{name}_ode_invertible", r["roundtrip_max"] <= ROUNDTRIP_TOL,
                     f"encode→decode max error {r['roundtrip_max']:.2e} ≤ {ROUNDTRIP_TOL:g} over {num_roundtrip} "
                     f"data points (oracle: the data points themselves)")
        report.check(f"{name}_sde_stochastic", r["sde_pair_dist"] >= SDE_MIN_SPREAD * data_pair_dist,
                     f"two SDE runs, same latents, other noise: mean distance {r['sde_pair_dist']:.3f} ≥ "
                     f"{SDE_MIN_SPREAD} × independent-data distance {data_pair_dist:.3f} (oracle: distance between "
                     f"independent data points)")


def _one_process(report, torch, dm, ds, device, mixture, mixture_cpu, process, fresh, n, seed, sde_steps,
                 ode_steps, num_roundtrip, sde_scale, ode_scale):
    name = process.name
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, mixture.dim, generator=gen, dtype=dm.FLOAT).to(device) * ds.prior_std(process)
    ts_sde, ts_ode = ds.time_grid(process, sde_steps, device=device), ds.time_grid(process, ode_steps, device=device)
    s_eps = process.s(process.eps)

    def sde(x, noise_seed, trajectory=None):
        noise = torch.Generator(device).manual_seed(noise_seed)
        return ds.sample_euler_maruyama(mixture.denoise, process, x, ts_sde, noise, score_scale=sde_scale,
                                        trajectory=trajectory) / s_eps

    def ode(x, ts=ts_ode, trajectory=None):
        return ds.integrate_pf_ode(mixture.denoise, process, x, ts, score_scale=ode_scale, trajectory=trajectory)

    t0 = time.perf_counter()
    sde_traj, ode_traj = [], []
    x_sde = sde(z, seed + 11, trajectory=sde_traj).cpu()
    t_sde = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_ode = (ode(z, trajectory=ode_traj) / s_eps).cpu()
    t_ode = time.perf_counter() - t0
    marginals = {"sde": marginal_errors(torch, dm, name, mixture_cpu, ts_sde, sde_traj, fresh, seed),
                 "ode": marginal_errors(torch, dm, name, mixture_cpu, ts_ode, ode_traj, fresh, seed)}
    del sde_traj, ode_traj

    # Determinism: rerun on the same latents. Stochasticity: another noise seed from the same latents.
    n_pair = min(n, NUM_PAIR_LATENTS)
    first, second = ode(z[:n_pair]), ode(z[:n_pair])
    sde_other = sde(z[:n_pair], seed + 12).cpu()
    # Invertibility: data at t = ε → latent at t = 1 → back to t = ε.
    y, _ = mixture_cpu.sample(num_roundtrip, torch.Generator().manual_seed(seed + 13))
    y = y.to(device)
    latent = ode(y * s_eps, ts_ode.flip(0))
    y_back = ode(latent) / s_eps
    # A few paths, in x/s coordinates, for the figure.
    ode_path, sde_path = [z[:NUM_TRAJECTORIES]], [z[:NUM_TRAJECTORIES]]
    ode(z[:NUM_TRAJECTORIES], trajectory=ode_path)
    sde(z[:NUM_TRAJECTORIES], seed + 14, trajectory=sde_path)

    finite = bool(torch.isfinite(x_sde).all() and torch.isfinite(x_ode).all())
    r = {
        "sde_samples": x_sde, "ode_samples": x_ode, "n_pair": n_pair,
        "sde_sw2": dm.sliced_wasserstein2(x_sde, fresh) if finite else math.inf,
        "ode_sw2": dm.sliced_wasserstein2(x_ode, fresh) if finite else math.inf,
        "sde_mode": dm.mode_weight_error(mixture_cpu, x_sde) if finite else math.inf,
        "ode_mode": dm.mode_weight_error(mixture_cpu, x_ode) if finite else math.inf,
        "ode_identical": bool(torch.equal(first, second)),
        "ode_rerun_max": float((first - second).abs().max()),
        "roundtrip_max": float((y_back - y).norm(dim=1).max()),
        "sde_pair_dist": float((x_sde[:n_pair] - sde_other).norm(dim=1).mean()),
        "sde_vs_ode_dist": float((x_sde - x_ode).norm(dim=1).mean()),
        "latent_std_ratio": float(latent.std() / ds.prior_std(process)),
        "marginals": marginals,
        "identity_errors": process_identity_errors(process),
        "formula_errors": max(max(abs(a - b) / b for a, b in zip((process.s(t), process.sigma(t)),
                                                                  oracle_s_sigma(name, t)))
                              for t in (0.1, 0.5, 1.0)),
    }
    for k in ("sde_sw2", "ode_sw2", "sde_mode", "ode_mode", "roundtrip_max", "sde_pair_dist", "sde_vs_ode_dist",
              "latent_std_ratio"):
        report.metric(f"{name}_{k}", r[k])
    report.metric(f"{name}_sde_s", round(t_sde, 3))
    report.metric(f"{name}_ode_s", round(t_ode, 3))
    report.log(f"{name}: SDE SW2 {r['sde_sw2']:.4f} ({t_sde:.2f}s), ODE SW2 {r['ode_sw2']:.4f} ({t_ode:.2f}s); "
               f"round trip max {r['roundtrip_max']:.1e}; SDE vs ODE from the same latent: mean distance "
               f"{r['sde_vs_ode_dist']:.3f}")
    return r, {"ode": (ts_ode.tolist(), torch.stack(ode_path).cpu()),
               "sde": (ts_sde.tolist(), torch.stack(sde_path).cpu())}


def _plot(report, ds, mixture, fresh, results, paths) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(13, 4.2 * len(results)))
    lim = 1.3 * float(mixture.means[:, :2].abs().max()) + 0.3
    for row, (name, r) in zip(axes, results.items()):
        process = ds.PROCESSES[name]
        for kind, style in (("ode", "-"), ("sde", "-")):
            t, path = paths[name][kind]
            sigma, scale = [process.sigma(ti) for ti in t], [process.s(ti) for ti in t]
            for j in range(path.shape[1]):
                row[0].plot(sigma, [v / sc for v, sc in zip(path[:, j, 0].tolist(), scale)], style, lw=1.2 if kind == "ode" else 0.5,
                            color=f"C{j % 10}", alpha=1.0 if kind == "ode" else 0.6)
        row[0].set_xscale("log")
        row[0].set_ylim(-3 * lim, 3 * lim)
        row[0].invert_xaxis()
        row[0].set_xlabel("σ(t)  (time runs 1 → ε, left to right)")
        row[0].set_ylabel("x₁ / s(t)")
        row[0].set_title(f"{name}: ODE paths (thick) and SDE paths (thin)")
        for ax, kind in zip(row[1:], ("ode", "sde")):
            ax.scatter(fresh[:, 0], fresh[:, 1], s=2, alpha=0.25, color="gray", label="data")
            pts = r[f"{kind}_samples"][:, :2].clamp(-3 * lim, 3 * lim)
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, label=kind.upper())
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"{name} {kind.upper()} samples, SW2 {r[f'{kind}_sw2']:.3f}")
            ax.legend(loc="upper right", markerscale=4)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.96, wspace=0.25, hspace=0.3)  # fixed margins: tight_layout cost ~1 s of CPU per figure
    fig.savefig(report.artifact("sde_vs_ode.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
