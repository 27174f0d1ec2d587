"""Demo edm-sampling: EDM's deterministic sampler (Karras et al. 2022, Algorithm 1) and Euler on a Gaussian
mixture whose ideal denoiser is analytic, plus a small learned denoiser with EDM preconditioning.

    python -m demos.edm_sampling --out /tmp/edm
    python -m demos.edm_sampling --param dim=16 --param variant=wrong-sigma --out /tmp/edm-bug

What it checks (each can fail): the ρ = 7 schedule equals Eq. 5; exact denoiser-call counts (Heun 2N − 1 =
35 for N = 18, Euler N); D evaluated exactly at the schedule's σ_i; finite samples; sliced W2 and
mode-weight error of Heun's samples against fresh data within thresholds taken from the data-vs-data
spread measured in the same run; Heun 2nd order and Euler 1st order on shared latents; the trained
network's EDM loss close to the analytic optimum. Planted bugs (`variant`) each break at least one check.
The maths lives in `demos.diffusion` and `demos.diffusion_learned`, the figures in `demos.edm_plots`; this
module wires and checks. On CPU, when a core is idle, the learned denoiser trains in a forked child process
while this one samples, measures and plots (on 2 cores the training is the run's critical path); the metrics
`phase_s` and `phase_cpu_s` give each phase's wall and CPU seconds.
"""
from __future__ import annotations

import math
import os
import time

from demos import edm_oracles as oracle
from demos import edm_plots as plots
from demos.edm_oracles import eq5_sigmas, expected_heun_sigmas  # noqa: F401 - tests import them from here
from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

VARIANTS = ("none", "no-heun-correction", "schedule-reversed", "wrong-sigma")

SPEC = DemoSpec(
    id="edm-sampling",
    title="EDM 采样：ρ=7 时间步、Heun 二阶与 Euler 一阶",
    summary="在解析去噪器已知的高斯混合上运行 EDM 的 Heun 采样器（Algorithm 1）与 Euler，检查调度、NFE、分布与收敛阶，并训练一个带预条件的小 MLP。",
    articles=("edm-diffusion-framework", "diffusion-sde"),
    module="demos.edm_sampling",
    params=(
        Param("num_samples", int, 2000, "样本数（分布检查用）", min=200, max=20000),
        Param("num_steps", int, 18, "采样步数 N（Heun 的 NFE = 2N−1）", min=2, max=512),
        Param("dim", int, 2, "高斯混合的维数", min=2, max=64),
        Param("seed", int, 0, "随机种子", min=0, max=2**31 - 1),
        Param("learned", bool, True, "是否训练带 EDM 预条件的小 MLP 去噪器"),
        Param("train_steps", int, 800, "MLP 训练步数", min=1, max=20000),
        Param("s_churn", float, 0.0, "Algorithm 2 的 S_churn（0 即确定性的 Algorithm 1）", min=0.0, max=100.0),
        Param("variant", str, "none", "植入的错误", choices=VARIANTS, advanced=True),
    ),
    device="cuda-preferred",
    timeout_s=300,
)

# Order-of-convergence study. Errors are medians over latents of ‖x_N − x_ref‖ against Heun with
# REF_STEPS steps: a few latents near a boundary between modes switch mode under coarse steps, and their
# O(mode distance) errors are a separate, non-smooth effect that the median leaves out. ORDER_STEPS is
# where the asymptotic regime holds for ρ = 7 (measured, 2-D, seed 0): Heun's halving ratios are 8.3,
# 8.9, 5.4 for N = 4→8→16→32 (pre-asymptotic) and 4.6, 4.3 for 32→64→128; Euler's stay 2.0-2.3.
REF_STEPS = 1024
ORDER_STEPS = (32, 64, 128)
SWEEP_STEPS = (4, 8, 16, 32, 64, 128, 256)
HEUN_MIN_RATIO = 3.0
EULER_RATIO = (1.6, 2.6)
NUM_CONV_LATENTS = 512
SPREAD_SEEDS, SPREAD_K = 10, 4.0
# Learned denoiser: its loss must be within LOSS_TOL of the optimum and close at least 3/4 of the gap
# between the trivial denoiser c_skip·x and the optimum (800 steps reached 1.4 % above the optimum in 2-D
# and 2.7 % in 16-D; 20 steps stay ~20 % above).
LOSS_TOL = 0.05
MAX_GAP_LEFT = 0.25
# Tweedie: D(x; σ) vs x + σ² ∇log p_σ(x) at these σ; float64 rounding of x + σ²·score at σ = 80 is ~1e-13.
TWEEDIE_SIGMAS = (0.002, 0.05, 0.5, 2.0, 80.0)
TWEEDIE_TOL = 1e-9
# Preconditioning probed at these σ: the float64 coefficients and λ must equal Table 1 to 1e-12, the float32
# network's D with a zeroed (unit-bias) output layer must give c_skip·x (+ c_out) to 1e-5.
COEFF_SIGMAS = (0.002, 0.5, 80.0)
# The learned denoiser may sit LOSS_TOL above the optimum, so its samples get a wider band than the exact
# sampler's (measured over seeds 0-1 in 2-D: mode error up to 0.040 against a data-vs-data mean of 0.021).
LEARNED_SPREAD_K = 6.0
KS_MIN_P = 1e-3  # training σ vs log-normal, 8 batches × 512 draws
NUM_LOSS_DRAWS = 16384


def schedule(variant: str, num_steps: int, rho: float = 7.0, device="cpu"):
    """The σ_i the sampler walks; the `schedule-reversed` bug runs them from σ_min up to σ_max."""
    from demos.diffusion import get_sigmas_karras

    sigmas = get_sigmas_karras(num_steps, rho=rho, device=device)
    if variant == "schedule-reversed":
        import torch

        sigmas = torch.cat([sigmas[:-1].flip(0), sigmas[-1:]])
    return sigmas


def wrap_denoiser(variant: str, denoise):
    """The denoiser as the sampler sees it; the `wrong-sigma` bug feeds it 2σ instead of σ."""
    if variant == "wrong-sigma":
        return lambda x, sigma: denoise(x, 2 * sigma)
    return denoise


def heun_sampler(variant: str, s_churn: float = 0.0, generator=None):
    """What runs as "Heun"; `no-heun-correction` drops Alg. 1 lines 6-8, which leaves Euler's method."""
    from demos.diffusion import sample_euler, sample_heun

    if variant == "no-heun-correction":
        return sample_euler
    return lambda denoise, x, sigmas: sample_heun(denoise, x, sigmas, s_churn=s_churn, generator=generator)


def convergence_study(denoise_ref, denoise, z, variant: str, device) -> dict:
    """Median final-sample error against fine-step Heun for Euler and Heun at ρ = 1 and ρ = 7 over
    SWEEP_STEPS, on shared latents z (already scaled by σ_max). Keys (sampler, rho) → list of (nfe, error).
    Both ρ run in one batch: the latents twice, each half with its own schedule as a per-point σ (the
    samplers and the denoiser work elementwise in σ), which halves the denoiser calls of the sweep."""
    import torch

    from demos.diffusion import CountingDenoiser, get_sigmas_karras, sample_euler, sample_heun

    x_ref = sample_heun(denoise_ref, z, get_sigmas_karras(REF_STEPS, device=device))
    n, rhos = len(z), (7.0, 1.0)
    z_both = torch.cat([z] * len(rhos))
    study = {}
    for name, sampler in (("euler", sample_euler), ("heun", heun_sampler(variant))):
        for steps in SWEEP_STEPS:
            sigmas = torch.stack([schedule(variant, steps, rho, device) for rho in rhos], 1)    # (N+1, 2)
            counter = CountingDenoiser(denoise)
            x = sampler(counter, z_both, sigmas.repeat_interleave(n, dim=1)[..., None])         # σ: (N+1, 2n, 1)
            for k, rho in enumerate(rhos):
                err = (x[k * n:(k + 1) * n] - x_ref).norm(dim=1).median()
                study.setdefault((name, rho), []).append((counter.calls, float(err)))
    return {key: study[key] for key in ((s, rho) for rho in rhos for s in ("euler", "heun"))}


class PhaseClock:
    """Seconds per phase of a run, wall (`phase_s`) and this process's CPU (`phase_cpu_s`, which a busy
    machine inflates less): `clock.lap("name")` charges the time since the previous lap to `name`."""

    def __init__(self):
        self.last = (time.perf_counter(), time.process_time())
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[name] = round(self.wall.get(name, 0.0) + now[0] - self.last[0], 3)
        self.cpu[name] = round(self.cpu.get(name, 0.0) + now[1] - self.last[1], 3)
        self.last = now


def halving_ratios(rows) -> list[float]:
    err = {SWEEP_STEPS[i]: e for i, (_, e) in enumerate(rows)}
    return [err[a] / err[b] for a, b in zip(ORDER_STEPS[:-1], ORDER_STEPS[1:])]


def run(report: Report, num_samples: int = 2000, num_steps: int = 18, dim: int = 2, seed: int = 0,
        learned: bool = True, train_steps: int = 800, s_churn: float = 0.0, variant: str = "none") -> None:
    ticks = cpu_ticks()  # importing torch (a second or more) is the window in which idle CPUs are measured
    import torch

    from demos import diffusion as dm

    device, report.device = dm.pick_device()
    idle = idle_cpus(ticks)
    with dm.torch_threads(device):
        _run(report, torch, dm, device, num_samples, num_steps, dim, seed, learned, train_steps, s_churn, variant,
             idle)


def cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs so far, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return ticks[3] + ticks[4], sum(ticks)   # idle + iowait; user … steal


def idle_cpus(since: tuple[int, int] | None, min_ticks: int = 20) -> float | None:
    """How many CPUs stood idle on average since `since` (a `cpu_ticks()` reading); None when unknown or
    when the window is shorter than `min_ticks` (0.1 s of 2 CPUs at 100 Hz)."""
    now = cpu_ticks()
    if since is None or now is None or now[1] - since[1] < min_ticks:
        return None
    return len(os.sched_getaffinity(0)) * (now[0] - since[0]) / (now[1] - since[1])


def _run(report, torch, dm, device, num_samples, num_steps, dim, seed, learned, train_steps, s_churn, variant,
         idle):
    t_start = time.perf_counter()
    clock = PhaseClock()
    mixture_cpu = dm.make_mixture(dim)
    mixture = mixture_cpu.to(device)
    report.log(f"device {report.device}; {mixture.num_components}-component Gaussian mixture in {dim}-D; "
               f"N = {num_steps}, n = {num_samples}, variant = {variant}")

    # Time step discretization, Eq. 5 (σ_min = 0.002, σ_max = 80, ρ = 7, σ_N = 0).
    sigmas = schedule(variant, num_steps, device=device)
    used, eq5 = sigmas.tolist(), oracle.eq5_sigmas(num_steps)
    rel_err = max(abs(u - o) / o if o else abs(u) for u, o in zip(used, eq5))
    report.metric("sigma_first", used[0])
    report.metric("sigma_last_nonzero", used[-2])
    report.log("σ_i: " + " ".join(f"{s:.4g}" for s in used))

    # The learned denoiser trains while the rest runs when a core is idle (a forked process; see _start_learned).
    report.metric("load_average_1m", round(os.getloadavg()[0], 2))
    report.metric("idle_cpus", None if idle is None else round(idle, 2))
    trainer = _start_learned(torch, dm, device, mixture, seed, train_steps, idle) if learned else None

    # Latents x_0 ~ N(0, σ_0² I) (Alg. 1 line 2), drawn on the CPU so every device samples the same ones.
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, dim, generator=gen, dtype=dm.FLOAT).to(device)
    churn_gen = torch.Generator(device).manual_seed(seed + 1)
    heun_counter, euler_counter = dm.CountingDenoiser(mixture.denoise), dm.CountingDenoiser(mixture.denoise)
    t0 = time.perf_counter()
    x_heun = heun_sampler(variant, s_churn, churn_gen)(wrap_denoiser(variant, heun_counter), z * sigmas[0], sigmas)
    x_euler = dm.sample_euler(wrap_denoiser(variant, euler_counter), z * sigmas[0], sigmas)
    report.metric("sampling_s", round(time.perf_counter() - t0, 3))
    report.metric("heun_nfe", heun_counter.calls)
    report.metric("euler_nfe", euler_counter.calls)
    clock.lap("sample")

    # Distribution checks against FRESH data, thresholds from the data-vs-data spread at the same n.
    fresh, _ = mixture_cpu.sample(num_samples, torch.Generator().manual_seed(seed + 7_919))
    sw2_spread, mode_spread = dm.reference_spread(mixture_cpu, num_samples, SPREAD_SEEDS, SPREAD_K)
    x_heun_cpu, x_euler_cpu = x_heun.cpu(), x_euler.cpu()
    finite = bool(torch.isfinite(x_heun_cpu).all() and torch.isfinite(x_euler_cpu).all())
    sw2_heun = dm.sliced_wasserstein2(x_heun_cpu, fresh) if finite else math.inf
    sw2_euler = dm.sliced_wasserstein2(x_euler_cpu, fresh) if finite else math.inf
    mode_heun = dm.mode_weight_error(mixture_cpu, x_heun_cpu) if finite else math.inf
    mode_euler = dm.mode_weight_error(mixture_cpu, x_euler_cpu) if finite else math.inf
    clock.lap("distribution")
    for name, sp in (("sw2", sw2_spread), ("mode_error", mode_spread)):
        report.metric(f"{name}_data_vs_data_mean", round(sp.mean, 5))
        report.metric(f"{name}_data_vs_data_std", round(sp.std, 5))
        report.metric(f"{name}_threshold", round(sp.threshold, 5))
    report.metric("sw2_heun", sw2_heun)
    report.metric("sw2_euler", sw2_euler)
    report.metric("mode_error_heun", mode_heun)
    report.metric("mode_error_euler", mode_euler)
    report.log(f"sliced W2 to fresh data: Heun {sw2_heun:.4f}, Euler {sw2_euler:.4f} "
               f"(data vs data {sw2_spread.mean:.4f} ± {sw2_spread.std:.4f} over {SPREAD_SEEDS} seeds)")

    # Order of convergence on shared latents against a fine-step reference (no churn: the ODE itself).
    t0 = time.perf_counter()
    n_conv = min(num_samples, NUM_CONV_LATENTS)
    z_conv = torch.randn(n_conv, dim, generator=torch.Generator().manual_seed(seed + 1_000_003),
                         dtype=dm.FLOAT).to(device) * 80.0
    study = convergence_study(mixture.denoise, wrap_denoiser(variant, mixture.denoise), z_conv, variant, device)
    heun_ratios, euler_ratios = halving_ratios(study[("heun", 7.0)]), halving_ratios(study[("euler", 7.0)])
    report.metric("convergence_s", round(time.perf_counter() - t0, 3))
    clock.lap("convergence")
    report.metric("error_vs_nfe", {f"{s}_rho{int(r)}": rows for (s, r), rows in study.items()})
    report.metric("heun_halving_ratios", [round(r, 3) for r in heun_ratios])
    report.metric("euler_halving_ratios", [round(r, 3) for r in euler_ratios])

    tweedie = oracle.tweedie_residual(mixture_cpu.denoise, mixture_cpu.weights, mixture_cpu.means,
                                      mixture_cpu.stds, TWEEDIE_SIGMAS, seed=seed + 5)
    report.metric("tweedie_residual", {str(k): v for k, v in tweedie.items()})
    clock.lap("tweedie")
    error_png = plots.error_vs_nfe_png(study, num_steps, REF_STEPS)  # drawn now, while the training may run
    clock.lap("plot")
    learned_result = _learned(report, torch, dm, device, mixture, mixture_cpu, z, sigmas, fresh,
                              seed, trainer, clock) if learned else None
    plots.samples_png(report.artifact("samples.png"), mixture_cpu, fresh, x_heun_cpu, x_euler_cpu,
                      None if learned_result is None else learned_result["samples"], num_steps)
    report.artifact("error_vs_nfe.png").write_bytes(error_png)  # after samples.png: the artifacts keep their order
    clock.lap("plot")
    report.metric("phase_s", clock.wall)
    report.metric("phase_cpu_s", clock.cpu)
    report.metric("duration_s", round(time.perf_counter() - t_start, 2))

    table_ok = num_steps != 18 or all(abs(used[i] - v) <= 5e-5 for i, v in oracle.ARTICLE_TABLE_N18.items())
    report.check("schedule_matches_eq5", rel_err < 1e-12 and used[-1] == 0.0 and table_ok,
                 f"max relative difference to Eq. 5 {rel_err:.2e} (< 1e-12), σ_N = {used[-1]}"
                 + (f", the article's N = 18 table matched to 5e-5: {table_ok}" if num_steps == 18 else "")
                 + " (oracle: Eq. 5 in plain floats" + (", the article's table)" if num_steps == 18 else ")"))
    decreasing = all(a > b for a, b in zip(used[:-1], used[1:]))
    ends = (math.isclose(used[0], 80.0, rel_tol=1e-12) and math.isclose(used[-2], 0.002, rel_tol=1e-12)
            and used[-1] == 0.0)
    report.check("schedule_decreasing_endpoints", decreasing and ends,
                 f"strictly decreasing: {decreasing}; σ_0 = {used[0]:.6g} (80), σ_N−1 = {used[-2]:.6g} (0.002), "
                 f"σ_N = {used[-1]} (oracle: the article's σ_max = 80, σ_min = 0.002)")
    want_heun, want_euler = 2 * num_steps - 1, num_steps
    report.check("heun_nfe", heun_counter.calls == want_heun,
                 f"{heun_counter.calls} denoiser calls, expected 2N − 1 = {want_heun} (oracle: Alg. 1, no correction "
                 f"on the step to σ_N = 0)")
    report.check("euler_nfe", euler_counter.calls == want_euler,
                 f"{euler_counter.calls} denoiser calls, expected N = {want_euler} (oracle: one call per step)")
    want_sigmas = oracle.expected_heun_sigmas(num_steps, s_churn)
    report.check("denoiser_sigmas_on_schedule", oracle.same_sequence(heun_counter.sigmas, want_sigmas),
                 "Heun called D at σ = " + ", ".join(f"{s:.4g}" for s in heun_counter.sigmas[:5])
                 + f", … ({len(heun_counter.sigmas)} calls), expected "
                 + ", ".join(f"{s:.4g}" for s in want_sigmas[:5])
                 + f", … ({len(want_sigmas)}) (oracle: Alg. 1/2 lines 4-7 on Eq. 5 in plain floats, rel 1e-9)")
    report.check("euler_sigmas_on_schedule",
                 oracle.same_sequence(euler_counter.sigmas, oracle.expected_euler_sigmas(num_steps)),
                 "Euler called D at σ = " + ", ".join(f"{s:.4g}" for s in euler_counter.sigmas[:4])
                 + f", … ({len(euler_counter.sigmas)} calls), expected σ_0 … σ_N−1 (oracle: Eq. 5 in plain floats, "
                 f"rel 1e-9)")
    worst_tweedie = max(tweedie.values())
    report.check("ideal_denoiser_is_tweedie", worst_tweedie <= TWEEDIE_TOL,
                 f"max |D(x; σ) − (x + σ² ∇log p_σ(x))| = {worst_tweedie:.1e} ≤ {TWEEDIE_TOL:g} at σ ∈ "
                 f"{TWEEDIE_SIGMAS} (oracle: the mixture's density from torch.distributions, gradient by autograd)")
    report.check("samples_finite", finite, f"all Heun and Euler samples finite: {finite} (oracle: torch.isfinite)")
    report.check("heun_sw2_vs_data", sw2_heun <= sw2_spread.threshold,
                 f"SW2 {sw2_heun:.4f} ≤ {sw2_spread.threshold:.4f} (data-vs-data mean {sw2_spread.mean:.4f} "
                 f"+ {SPREAD_K:g}·std {sw2_spread.std:.4f}, n = {num_samples}) (oracle: fresh mixture draws and the "
                 f"data-vs-data spread over {SPREAD_SEEDS} seeds)")
    report.check("heun_mode_weights", mode_heun <= mode_spread.threshold,
                 f"TV(mode fractions, weights) {mode_heun:.4f} ≤ {mode_spread.threshold:.4f} (data-vs-data "
                 f"mean {mode_spread.mean:.4f} + {SPREAD_K:g}·std {mode_spread.std:.4f}) (oracle: the mixture's "
                 f"weights w_k ∝ k + 1)")
    report.check("heun_second_order", all(r >= HEUN_MIN_RATIO for r in heun_ratios),
                 f"error ratios when halving the step at N = {ORDER_STEPS}: "
                 f"{', '.join(f'{r:.2f}' for r in heun_ratios)} (each ≥ {HEUN_MIN_RATIO}) (oracle: a 2nd-order "
                 f"method's error falls 4× per halving; reference Heun at N = {REF_STEPS})")
    report.check("euler_first_order", all(EULER_RATIO[0] <= r <= EULER_RATIO[1] for r in euler_ratios),
                 f"error ratios at N = {ORDER_STEPS}: {', '.join(f'{r:.2f}' for r in euler_ratios)} "
                 f"(each in [{EULER_RATIO[0]}, {EULER_RATIO[1]}]) (oracle: a 1st-order method's error halves)")
    if learned_result is not None:
        _learned_checks(report, learned_result, sw2_spread, mode_spread)


def _learned_checks(report, r, sw2_spread, mode_spread) -> None:
    L, O, T, Z = (r[k] for k in ("learned", "optimum", "c_skip", "zero"))
    report.check("learned_loss_near_optimum", L <= O * (1 + LOSS_TOL),
                 f"EDM loss {L:.4f} ≤ optimum {O:.4f} × {1 + LOSS_TOL:g} = {O * (1 + LOSS_TOL):.4f} (oracle: the "
                 f"ideal denoiser's loss on the same {NUM_LOSS_DRAWS} draws)")
    report.check("learned_loss_below_trivial", L - O <= MAX_GAP_LEFT * (T - O),
                 f"gap left {(L - O) / (T - O):.3f} of (c_skip·x loss {T:.4f} − optimum) (≤ {MAX_GAP_LEFT}); "
                 f"D = 0 loss {Z:.2f} (oracle: the trivial and the ideal denoiser on the same draws)")
    sw2_max = sw2_spread.mean + LEARNED_SPREAD_K * sw2_spread.std
    mode_max = mode_spread.mean + LEARNED_SPREAD_K * mode_spread.std
    report.check("learned_sw2_vs_data", r["sw2"] <= sw2_max,
                 f"learned-denoiser Heun samples: SW2 {r['sw2']:.4f} ≤ {sw2_max:.4f} (data-vs-data mean + "
                 f"{LEARNED_SPREAD_K:g}·std) (oracle: fresh mixture draws and the data-vs-data spread)")
    report.check("learned_mode_weights", r["mode_error"] <= mode_max,
                 f"TV(mode fractions, weights) {r['mode_error']:.4f} ≤ {mode_max:.4f} (data-vs-data mean + "
                 f"{LEARNED_SPREAD_K:g}·std) (oracle: the mixture's weights)")
    report.check("preconditioning_table1", r["coeff_err"] <= 1e-12 and r["probe_err"] <= 1e-5,
                 f"c_skip, c_out, c_in, c_noise at σ ∈ {COEFF_SIGMAS}: max relative error {r['coeff_err']:.1e} "
                 f"(≤ 1e-12); D with a zeroed / unit-bias output layer vs c_skip·x (+ c_out): {r['probe_err']:.1e} "
                 f"(≤ 1e-5) (oracle: Table 1 in closed form)")
    report.check("loss_weight_table1", r["weight_err"] <= 1e-12 and r["identity_err"] <= 1e-12,
                 f"λ(σ) vs (σ² + σ_data²)/(σ σ_data)²: {r['weight_err']:.1e}; max |λ(σ)·c_out(σ)² − 1| = "
                 f"{r['identity_err']:.1e} at σ ∈ {COEFF_SIGMAS} (≤ 1e-12) (oracle: Table 1 in closed form)")
    ks_d, ks_p = r["ks"]
    report.check("training_sigma_lognormal", ks_p >= KS_MIN_P,
                 f"KS test of {r['n_sigma']} training σ against ln σ ~ N({oracle.P_MEAN}, {oracle.P_STD}²): "
                 f"D = {ks_d:.4f}, p = {ks_p:.3g} (≥ {KS_MIN_P:g}) (oracle: the log-normal CDF with the article's "
                 f"P_mean, P_std)")


def _start_learned(torch, dm, device, mixture, seed, train_steps, idle: float | None):
    """Build the preconditioned MLP and start its training; returns (net, wait, whether it trains in a child
    process). The training runs in a forked child when that can overlap it with this process's sampling,
    metrics and plots: on CPU, from a single-threaded process (the demo's own, not a test session's), with
    about a core idle while torch was imported (`idle` ≥ 0.75 CPUs). Where no core is free a second process
    only shares this one's CPU time (at load 7-9 on 2 cores it made the run slower), so there, on a GPU, and
    when `idle` is unknown, the training runs in-process when waited for. Same seeds and draws either way,
    so the same weights."""
    import threading

    from demos import diffusion_learned as dl

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = dl.EDMPrecond(mixture.dim).to(device)
    background = (device.type == "cpu" and threading.active_count() == 1
                  and idle is not None and idle >= 0.75)
    wait = dl.start_training(net, mixture, train_steps, torch.Generator(device).manual_seed(seed + 2),
                             background=background)
    return net, wait, background


def _learned(report, torch, dm, device, mixture, mixture_cpu, z, sigmas, fresh, seed, trainer, clock) -> dict:
    """Wait for the preconditioned MLP's training, score it against the ideal and trivial denoisers, sample
    with it, and probe its preconditioning and loss weight against Table 1."""
    from demos import diffusion_learned as dl

    net, wait, background = trainer
    result, lines = wait()
    for line in lines:
        report.log(line)
    report.metric("train_steps_per_s", round(result.steps / result.seconds, 1))
    report.metric("train_s", round(result.seconds, 3))
    report.metric("train_in_child_process", background)
    clock.lap("train")
    ks = oracle.lognormal_ks(result.sigma_draws.numpy())
    draws = dl.draw_loss_terms(mixture_cpu, NUM_LOSS_DRAWS, torch.Generator().manual_seed(seed + 3))
    draws_dev = dl.LossDraws(draws.y.to(device), draws.sigma.to(device), draws.eps.to(device))
    with torch.no_grad():
        losses = {
            "learned": float(dl.edm_loss(net, draws_dev).mean()),
            "optimum": float(dl.edm_loss(mixture_cpu.denoise, draws).mean()),
            "c_skip": float(dl.edm_loss(dl.c_skip_denoiser(), draws).mean()),
            "zero": float(dl.edm_loss(lambda x, sigma: torch.zeros_like(x), draws).mean()),
        }
        x_learned = dm.sample_heun(net, z * sigmas[0], sigmas).cpu()
        probes = _probe_preconditioning(torch, dl, net, mixture.dim, device)
    for k, v in losses.items():
        report.metric(f"loss_{k}", round(v, 5))
    finite = bool(torch.isfinite(x_learned).all())
    sw2 = dm.sliced_wasserstein2(x_learned, fresh) if finite else math.inf
    mode = dm.mode_weight_error(mixture_cpu, x_learned) if finite else math.inf
    report.metric("sw2_learned", sw2)
    report.metric("mode_error_learned", mode)
    report.metric("training_sigma_ks", [round(ks[0], 5), ks[1]])
    clock.lap("learned_eval")
    report.log(f"learned denoiser: EDM loss {losses['learned']:.4f} vs optimum {losses['optimum']:.4f}, "
               f"c_skip·x {losses['c_skip']:.4f}; Heun samples SW2 {sw2:.4f}")
    return {**losses, **probes, "samples": x_learned, "sw2": sw2, "mode_error": mode, "ks": ks,
            "n_sigma": len(result.sigma_draws)}


def _probe_preconditioning(torch, dl, net, dim, device) -> dict:
    """Coefficients and λ against Table 1; the network's D with its output layer zeroed (F = 0: D = c_skip x)
    and with a unit bias (F = 1: D = c_skip x + c_out), which shows that forward() uses those coefficients."""
    import copy

    coeff_err = weight_err = identity_err = probe_err = 0.0
    x = torch.linspace(-1.5, 1.5, 4 * dim, dtype=torch.float32, device=device).reshape(4, dim)
    zeroed, unit = copy.deepcopy(net), copy.deepcopy(net)
    with torch.no_grad():
        for model, bias in ((zeroed, 0.0), (unit, 1.0)):
            model.net[-1].weight.zero_()
            model.net[-1].bias.fill_(bias)
    for sigma in COEFF_SIGMAS:
        got = [float(c) for c in net.coefficients(torch.tensor(sigma, dtype=torch.float64))]
        want = oracle.table1_coefficients(sigma)
        coeff_err = max(coeff_err, *(abs(g - w) / abs(w) for g, w in zip(got, want)))
        lam = float(dl.loss_weight(torch.tensor(sigma, dtype=torch.float64)))
        weight_err = max(weight_err, abs(lam - oracle.table1_loss_weight(sigma)) / oracle.table1_loss_weight(sigma))
        identity_err = max(identity_err, abs(lam * got[1] ** 2 - 1))
        c_skip, c_out = want[0], want[1]
        for model, extra in ((zeroed, 0.0), (unit, c_out)):
            with torch.no_grad():
                d = model(x, sigma).double()
            expect = c_skip * x.double() + extra
            probe_err = max(probe_err, float(((d - expect).abs() / expect.abs().clamp_min(1e-3)).max()))
    return {"coeff_err": coeff_err, "weight_err": weight_err, "identity_err": identity_err, "probe_err": probe_err}


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
