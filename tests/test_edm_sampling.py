"""edm-sampling: the ρ schedule, exact NFE, the ideal denoiser, order of convergence, the learned denoiser,
and that every planted bug fails the checks it should."""
import inspect
import math
import json

import pytest
import torch

from demos import diffusion as dm
from demos import edm_sampling as edm
from demos.harness import Report
from demos.spec import DemoParamError


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Small tensors: one intra-op thread is fastest and keeps the shared 2-core machine usable."""
    with dm.torch_threads(torch.device("cpu"), 1):
        yield


def run_demo(tmp_path, **params) -> Report:
    report = Report(tmp_path / "out", quiet=True)
    edm.run(report, **params)
    return report


def test_schedule_n18_values_and_shape():
    sigmas = dm.get_sigmas_karras(18)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (19,), (sigmas.dtype, sigmas.shape)
    # The article's table for N = 18: 80, 57.5860, 40.7856, 28.3746, …, 0.0229, 0.0075, 0.0020, 0.
    assert sigmas[0].item() == pytest.approx(80.0, rel=1e-14)
    assert sigmas[:4].tolist() == pytest.approx([80.0, 57.5860, 40.7856, 28.3746], abs=5e-5)
    assert sigmas[-4:-1].tolist() == pytest.approx([0.0229, 0.0075, 0.0020], abs=5e-5)
    assert sigmas[17].item() == pytest.approx(0.002, rel=1e-12), sigmas[17].item()
    assert sigmas[18].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all()), "schedule must be strictly decreasing"


@pytest.mark.parametrize("n,rho", [(2, 7.0), (18, 7.0), (64, 7.0), (18, 1.0), (40, 3.0)])
def test_schedule_equals_eq5_closed_form(n, rho):
    got = dm.get_sigmas_karras(n, rho=rho).tolist()
    a, b = 80.0 ** (1 / rho), 0.002 ** (1 / rho)
    want = [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]
    assert got == pytest.approx(want, rel=1e-13)


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 steps"):
        dm.get_sigmas_karras(1)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        dm.get_sigmas_karras(10, sigma_min=80.0, sigma_max=0.002)


@pytest.mark.parametrize("n", [2, 5, 18])
def test_exact_denoiser_calls_and_sigmas(n):
    mixture = dm.make_mixture(2)
    sigmas = dm.get_sigmas_karras(n)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    heun, euler = dm.CountingDenoiser(mixture.denoise), dm.CountingDenoiser(mixture.denoise)
    dm.sample_heun(heun, x, sigmas)
    dm.sample_euler(euler, x, sigmas)
    assert heun.calls == 2 * n - 1 == dm.expected_nfe("heun", n), heun.calls
    assert euler.calls == n == dm.expected_nfe("euler", n), euler.calls
    assert heun.sigmas == pytest.approx(edm.expected_heun_sigmas(n), rel=1e-12)
    assert euler.sigmas == pytest.approx(sigmas[:-1].tolist(), rel=0)


def test_churn_zero_is_algorithm_1_and_churn_adds_noise():
    mixture = dm.make_mixture(2)
    sigmas = dm.get_sigmas_karras(18)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 80
    plain = dm.sample_heun(mixture.denoise, x, sigmas)
    zero = dm.sample_heun(mixture.denoise, x, sigmas, s_churn=0.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(plain, zero), "S_churn = 0 must be exactly Algorithm 1"
    counter = dm.CountingDenoiser(mixture.denoise)
    churned = dm.sample_heun(counter, x, sigmas, s_churn=10.0, generator=torch.Generator().manual_seed(5))
    assert counter.calls == 35, counter.calls
    assert float((churned - plain).norm(dim=1).mean()) > 0.01, "churn must change the samples"


def test_ideal_denoiser_is_tweedie_of_the_mixture_density():
    """(D(x; σ) − x) / σ² equals ∇_x log p(x; σ), computed by autograd from the mixture's density."""
    mixture = dm.make_mixture(3)
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.8
    for sigma in (0.01, 0.3, 2.0, 80.0):
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture.log_prob(xg, sigma).sum(), xg)
        score = (mixture.denoise(x, sigma) - x) / sigma ** 2
        assert torch.allclose(score, grad, rtol=1e-9, atol=1e-9), (sigma, float((score - grad).abs().max()))
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    far = mixture.denoise(torch.zeros(1, 3, dtype=torch.float64), 1e4)
    assert torch.allclose(far[0], mean, atol=1e-6), "at huge σ the ideal denoiser returns the data mean"


def test_per_sample_sigma_matches_scalar_sigma():
    mixture = dm.make_mixture(2)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sig = torch.tensor([[0.1], [0.5], [1.0], [5.0]], dtype=torch.float64)
    batched = mixture.denoise(x, sig)
    for i in range(4):
        assert torch.allclose(batched[i], mixture.denoise(x[i:i + 1], float(sig[i]))[0], rtol=1e-12)


def test_order_of_convergence_on_shared_latents():
    mixture = dm.make_mixture(2)
    z = torch.randn(128, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 80
    study = edm.convergence_study(mixture.denoise, mixture.denoise, z, "none", "cpu")
    heun, euler = edm.halving_ratios(study[("heun", 7.0)]), edm.halving_ratios(study[("euler", 7.0)])
    assert all(r >= 3.0 for r in heun), f"Heun must be second order: ratios {heun}"
    assert all(1.6 <= r <= 2.6 for r in euler), f"Euler must be first order: ratios {euler}"
    assert [nfe for nfe, _ in study[("heun", 7.0)]] == [2 * n - 1 for n in edm.SWEEP_STEPS]


def test_distribution_metrics_tell_data_from_wrong_data():
    mixture = dm.make_mixture(2)
    a, _ = mixture.sample(2000, torch.Generator().manual_seed(0))
    b, _ = mixture.sample(2000, torch.Generator().manual_seed(1))
    sw2, mode = dm.reference_spread(mixture, 2000, num_seeds=10)
    assert dm.sliced_wasserstein2(a, b) <= sw2.threshold
    assert dm.sliced_wasserstein2(a, 1.3 * b) > sw2.threshold, "a 30 % wider copy must be told apart"
    assert dm.mode_weight_error(mixture, a) <= mode.threshold
    only_first = mixture.means[:1].repeat(2000, 1)
    assert dm.mode_weight_error(mixture, only_first) == pytest.approx(1 - float(mixture.weights[0]), abs=1e-12)


def test_default_config_passes_and_writes_artifacts(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        edm.main(["--out", str(tmp_path), "--param", "num_samples=1000"])
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert exit_info.value.code == 0, [c for c in result["checks"] if not c["passed"]]
    assert result["passed"] and len(result["checks"]) == 19, result["checks"]
    assert all("(oracle: " in c["detail"] for c in result["checks"]), [c["detail"] for c in result["checks"]]
    assert result["device"] == ("cpu" if not torch.cuda.is_available() else result["device"])
    assert result["metrics"]["heun_nfe"] == 35 and result["metrics"]["euler_nfe"] == 18
    assert result["metrics"]["loss_learned"] <= result["metrics"]["loss_optimum"] * (1 + edm.LOSS_TOL)
    for name in ("samples.png", "error_vs_nfe.png"):
        assert name in result["artifacts"] and (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    assert result["artifacts"] == ["samples.png", "error_vs_nfe.png"], result["artifacts"]
    phases = result["metrics"]["phase_s"]
    assert set(phases) == {"sample", "distribution", "convergence", "tweedie", "train", "learned_eval", "plot"}, phases
    assert sum(phases.values()) <= result["metrics"]["duration_s"] + 0.05, (phases, result["metrics"]["duration_s"])


EXPECTED_FAILURES = {
    "no-heun-correction": {"heun_nfe", "denoiser_sigmas_on_schedule", "heun_second_order"},
    "schedule-reversed": {"schedule_matches_eq5", "schedule_decreasing_endpoints", "denoiser_sigmas_on_schedule",
                          "heun_sw2_vs_data", "heun_mode_weights", "heun_second_order", "euler_first_order"},
    "wrong-sigma": {"denoiser_sigmas_on_schedule", "heun_sw2_vs_data", "heun_mode_weights", "heun_second_order",
                    "euler_first_order"},
}


@pytest.mark.parametrize("variant", sorted(EXPECTED_FAILURES))
def test_planted_bug_fails_its_checks(tmp_path, variant):
    report = run_demo(tmp_path, num_samples=1000, learned=False, variant=variant)
    failed = set(report.failed_checks())
    assert EXPECTED_FAILURES[variant] <= failed, f"{variant}: failed {sorted(failed)}"
    assert not report.passed
    assert "samples_finite" not in failed and "euler_nfe" not in failed, failed


def test_sixteen_dimensions_pass(tmp_path):
    report = run_demo(tmp_path, num_samples=1000, dim=16, learned=False, seed=3)
    assert report.passed, report.failed_checks()
    assert report.metrics["heun_nfe"] == 35


def test_undertrained_network_fails_the_loss_check(tmp_path):
    report = run_demo(tmp_path, num_samples=500, learned=True, train_steps=10)
    failed = set(report.failed_checks())
    assert {"learned_loss_near_optimum", "learned_loss_below_trivial"} <= failed, failed
    assert report.metrics["loss_learned"] > report.metrics["loss_optimum"] * (1 + edm.LOSS_TOL)


def test_ks_oracle_matches_scipy():
    from scipy import stats

    from demos import edm_oracles
    gen = torch.Generator().manual_seed(0)
    for shift, scale in ((0.0, 1.0), (0.05, 1.0), (0.0, 1.1)):
        draws = ((torch.randn(4096, generator=gen, dtype=torch.float64) * 1.2 * scale - 1.2) + shift).exp()
        d, p = edm_oracles.lognormal_ks(draws.tolist())
        ref = stats.kstest(draws.numpy(), "lognorm", args=(1.2, 0.0, math.exp(-1.2)))
        assert d == pytest.approx(ref.statistic, rel=1e-9), (d, ref.statistic)
        assert p == pytest.approx(ref.pvalue, rel=0.15, abs=1e-6), (p, ref.pvalue)


def test_tweedie_oracle_catches_a_wrong_denoiser():
    from demos import edm_oracles
    mixture = dm.make_mixture(2)
    args = (mixture.weights, mixture.means, mixture.stds, (0.05, 0.5, 2.0))
    good = edm_oracles.tweedie_residual(mixture.denoise, *args)
    assert max(good.values()) < 1e-10, good
    bad = edm_oracles.tweedie_residual(lambda x, s: 0.99 * mixture.denoise(x, s), *args)
    assert min(bad.values()) > 1e-3, bad


def test_preconditioning_probes_against_table1():
    from demos import diffusion_learned as dl
    from demos import edm_oracles
    net = dl.EDMPrecond(2)
    for sigma in (0.002, 0.5, 80.0):
        got = [float(c) for c in net.coefficients(torch.tensor(sigma, dtype=torch.float64))]
        assert got == pytest.approx(list(edm_oracles.table1_coefficients(sigma)), rel=1e-12)
        lam = float(dl.loss_weight(torch.tensor(sigma, dtype=torch.float64)))
        assert lam * got[1] ** 2 == pytest.approx(1.0, rel=1e-12), "λ(σ)·c_out(σ)² = 1"
    probes = edm._probe_preconditioning(torch, dl, net, 2, "cpu")
    assert probes["coeff_err"] < 1e-12 and probes["probe_err"] < 1e-5, probes


def test_training_records_its_sigma_draws():
    from demos import diffusion_learned as dl
    mixture = dm.make_mixture(2)
    result = dl.train_denoiser(dl.EDMPrecond(2), mixture, 10, torch.Generator().manual_seed(0), batch_size=64)
    assert result.sigma_draws.shape == (dl.SIGMA_RECORD_STEPS * 64,), result.sigma_draws.shape


def test_sliced_w2_numpy_sort_equals_torch_sort():
    """On CPU the projections are sorted by NumPy (12x cheaper); the value is the torch-sorted one."""
    mixture = dm.make_mixture(16)
    a, _ = mixture.sample(1000, torch.Generator().manual_seed(0))
    b, _ = mixture.sample(1000, torch.Generator().manual_seed(1))
    theta = torch.randn(16, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theta = theta / theta.norm(dim=0)
    want = float((((a @ theta).sort(0).values - (b @ theta).sort(0).values) ** 2).mean().sqrt())
    got = dm.sliced_wasserstein2(a, b, num_projections=64, seed=3)
    assert got == pytest.approx(want, rel=1e-12), (got, want)
    assert dm.sliced_wasserstein2(a, a) == 0.0


def test_adam_and_cosine_match_torch_optim():
    """The written-out Adam (no torch._dynamo import) takes torch.optim.Adam's steps bit for bit, and
    cosine_lr is CosineAnnealingLR's schedule."""
    import copy

    from demos import diffusion_learned as dl
    torch.manual_seed(0)
    ours = dl.EDMPrecond(2)
    ref = copy.deepcopy(ours)
    mixture = dm.make_mixture(2)
    draws = dl.draw_loss_terms(mixture, 64, torch.Generator().manual_seed(1), dtype=torch.float32)
    opt, ref_opt = dl.Adam(ours.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=12)
    for step in range(12):
        opt.lr = dl.cosine_lr(1e-2, step, 12)
        assert opt.lr == pytest.approx(sched.get_last_lr()[0], rel=1e-12, abs=1e-15), step
        for net, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            dl.edm_loss(net, draws).mean().backward()
            o.step()
        sched.step()
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), f"step {step}: {name} differs by {float((p - q).abs().max()):.2e}"


# Run in a fresh single-threaded interpreter, as the demo runs: a test session has threads, and a forked child
# inherits none of them nor any lock they hold (which is why the demo forks only from a single thread).
FORK_SCRIPT = """
import json, sys, torch
from demos import diffusion as dm, diffusion_learned as dl
torch.set_num_threads(1)
mixture, runs = dm.make_mixture(2), []
for background in (False, True):
    torch.manual_seed(0)
    net = dl.EDMPrecond(2)
    wait = dl.start_training(net, mixture, 60, torch.Generator().manual_seed(2), background, batch_size=64)
    result, lines = wait()
    runs.append((net, result, lines))
(here, r_here, l_here), (child, r_child, l_child) = runs
wait = dl.start_training(dl.EDMPrecond(2), dm.make_mixture(3), 5, torch.Generator().manual_seed(0), True)
try:
    wait()
    error = None
except RuntimeError as exc:
    error = str(exc)
print(json.dumps({
    "weights_differ": [k for k, v in here.state_dict().items() if not torch.equal(v, child.state_dict()[k])],
    "same_sigma_draws": torch.equal(r_here.sigma_draws, r_child.sigma_draws),
    "steps": [r_here.steps, r_child.steps], "lines": [l_here, l_child], "child_error": error,
    "dynamo_modules": sorted(m for m in sys.modules if m.startswith("torch._dynamo")),
}))
"""


def test_training_in_a_child_gives_the_in_process_weights_without_dynamo():
    """A forked child trains to the in-process weights bit for bit and logs the same lines; a child that fails
    is raised with its traceback; and training never imports torch._dynamo (torch.optim's first step does:
    ~2 s of CPU here)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], cwd=root, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["weights_differ"] == [] and out["same_sigma_draws"], out
    assert out["steps"] == [60, 60] and out["lines"][0] == out["lines"][1] and len(out["lines"][0]) == 5, out
    assert out["child_error"] and out["child_error"].startswith("training failed in its child process:"), out
    assert "Traceback" in out["child_error"] and "mat1 and mat2" in out["child_error"], out["child_error"][-500:]
    assert out["dynamo_modules"] == [], out["dynamo_modules"]


def test_training_forks_only_with_an_idle_core_and_no_threads():
    import threading
    mixture = dm.make_mixture(2)
    cpu = torch.device("cpu")
    for idle, want in ((0.5, False), (None, False), (1.0, threading.active_count() == 1)):
        net, wait, background = edm._start_learned(torch, dm, cpu, mixture, 0, 2, idle)
        result, lines = wait()
        assert background is want and result.steps == 2, (idle, background, threading.active_count())


def test_idle_cpus_from_proc_stat():
    import os
    import time
    ncpu = len(os.sched_getaffinity(0))
    assert edm.idle_cpus(None) is None
    assert edm.idle_cpus(edm.cpu_ticks()) is None, "a window under 0.1 s of ticks must read as unknown"
    start, t0 = edm.cpu_ticks(), time.perf_counter()
    while time.perf_counter() - t0 < 0.4:  # keep one CPU busy: at most ncpu − 1 can have been idle
        sum(i * i for i in range(1000))
    idle = edm.idle_cpus(start)
    assert idle is not None and 0.0 <= idle <= ncpu - 0.5, (idle, ncpu)


def test_spec_defaults_match_run_signature_and_bounds():
    defaults = {p.name: p.default for p in edm.SPEC.params}
    sig = inspect.signature(edm.run).parameters
    assert {k: sig[k].default for k in defaults} == defaults
    assert edm.SPEC.param("variant").choices == edm.VARIANTS
    with pytest.raises(DemoParamError, match="num_steps"):
        edm.SPEC.validate({"num_steps": 1})
    with pytest.raises(DemoParamError, match="variant"):
        edm.SPEC.validate({"variant": "bogus"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_agree_on_shared_latents():
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    sigmas = dm.get_sigmas_karras(18)
    x_cpu = dm.sample_heun(dm.make_mixture(2).denoise, z, sigmas)
    cuda = torch.device("cuda:0")
    x_cuda = dm.sample_heun(dm.make_mixture(2, device=cuda).denoise, z.to(cuda), sigmas.to(cuda))
    diff = float((x_cpu - x_cuda.cpu()).abs().max())
    assert diff < 1e-9, f"float64 CPU vs CUDA max |Δx| = {diff:.3e}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_demo_runs_on_cuda(tmp_path):
    report = run_demo(tmp_path, num_samples=2000)
    assert report.device.startswith("cuda:0 ("), report.device
    assert report.passed, report.failed_checks()
