"""sde-vs-ode: the VP/VE processes in EDM's form, the score, ODE determinism and invertibility, SDE
randomness, and the planted bugs."""
import inspect
import json
import math

import pytest
import torch

from demos import diffusion as dm
from demos import diffusion_sde as ds
from demos import sde_vs_ode as demo
from demos.harness import Report


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    with dm.torch_threads(torch.device("cpu"), 1):
        yield


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_process_coefficients_match_edm_form(name):
    """f = ṡ/s and g² = s² d(σ²)/dt (Karras et al. 2022, Eq. 28 form), checked by central differences."""
    p = ds.PROCESSES[name]
    h = 1e-6
    for t in (0.01, 0.2, 0.5, 0.9):
        s_dot = (p.s(t + h) - p.s(t - h)) / (2 * h)
        var_dot = (p.sigma(t + h) ** 2 - p.sigma(t - h) ** 2) / (2 * h)
        assert p.f(t) == pytest.approx(s_dot / p.s(t), rel=1e-6), (name, t)
        assert p.g2(t) == pytest.approx(p.s(t) ** 2 * var_dot, rel=1e-6), (name, t)
        assert p.t_of_sigma(p.sigma(t)) == pytest.approx(t, rel=1e-12), (name, t)


def test_perturbation_kernels_match_the_article():
    vp, ve = ds.VPSDE(), ds.VESDE()
    for t in (0.1, 0.5, 1.0):
        # VP: N(x0 e^{−B/2}, (1 − e^{−B}) I) with B = ∫β; VE: N(x0, (σ_VE(t)² − σ_VE(0)²) I).
        assert vp.s(t) == pytest.approx(math.exp(-0.5 * vp.B(t)), rel=1e-14)
        assert (vp.s(t) * vp.sigma(t)) ** 2 == pytest.approx(1 - math.exp(-vp.B(t)), rel=1e-12)
        assert ve.sigma(t) ** 2 == pytest.approx(ve.sigma_ve(t) ** 2 - ve.sigma_min ** 2, rel=1e-12)
    assert vp.B(1.0) == pytest.approx(0.1 + 0.5 * 19.9, rel=1e-14)
    assert ds.prior_std(ve) == pytest.approx(math.sqrt(50.0 ** 2 - 0.01 ** 2), rel=1e-12)


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_time_grid_runs_from_one_to_eps(name):
    p = ds.PROCESSES[name]
    ts = ds.time_grid(p, 50)
    assert ts.shape == (51,) and ts.dtype == torch.float64
    assert ts[0].item() == 1.0 and ts[-1].item() == p.eps
    assert bool((ts[1:] < ts[:-1]).all()), "time grid must decrease strictly"


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_score_is_gradient_of_log_p_t(name):
    """∇ log p_t(x) with p_t(x) = s^{−d} p(x/s; σ), by autograd, equals the denoiser-based score."""
    p, mixture = ds.PROCESSES[name], dm.make_mixture(2)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (0.01, 0.3, 0.8):
        s, sigma = p.s(t), p.sigma(t)
        xt = (s * x * (1 + sigma)).requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture.log_prob(xt / s, sigma).sum(), xt)
        got = ds.score(mixture.denoise, p, xt.detach(), t)
        assert torch.allclose(got, grad, rtol=1e-8, atol=1e-10), (name, t, float((got - grad).abs().max()))


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_ode_deterministic_and_invertible_sde_random(name):
    p, mixture = ds.PROCESSES[name], dm.make_mixture(2)
    ts = ds.time_grid(p, 400)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * ds.prior_std(p)
    first = ds.integrate_pf_ode(mixture.denoise, p, z, ts)
    assert torch.equal(first, ds.integrate_pf_ode(mixture.denoise, p, z, ts)), "ODE must be bit-identical"
    y, _ = mixture.sample(64, torch.Generator().manual_seed(2))
    latent = ds.integrate_pf_ode(mixture.denoise, p, y * p.s(p.eps), ts.flip(0))
    back = ds.integrate_pf_ode(mixture.denoise, p, latent, ts) / p.s(p.eps)
    err = float((back - y).norm(dim=1).max())
    assert err <= demo.ROUNDTRIP_TOL, f"{name}: round trip max error {err:.2e}"
    assert float(latent.std() / ds.prior_std(p)) == pytest.approx(1.0, abs=0.15), "latents look like the prior"

    grid = ds.time_grid(p, 100)
    a = ds.sample_euler_maruyama(mixture.denoise, p, z, grid, torch.Generator().manual_seed(3))
    b = ds.sample_euler_maruyama(mixture.denoise, p, z, grid, torch.Generator().manual_seed(3))
    c = ds.sample_euler_maruyama(mixture.denoise, p, z, grid, torch.Generator().manual_seed(4))
    assert torch.equal(a, b), "same noise seed must reproduce the SDE run"
    assert float((a - c).norm(dim=1).mean()) > 0.3, "other noise must move SDE samples by a clear margin"


def test_default_config_passes_and_writes_artifact(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path), "--param", "num_samples=1000"])
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert exit_info.value.code == 0, [c for c in result["checks"] if not c["passed"]]
    assert result["passed"] and len(result["checks"]) == 20, result["checks"]
    assert all("(oracle: " in c["detail"] for c in result["checks"]), [c["detail"] for c in result["checks"]]
    for name in ("VP", "VE"):
        assert result["metrics"][f"{name}_roundtrip_max"] <= demo.ROUNDTRIP_TOL
    assert (tmp_path / "sde_vs_ode.png").read_bytes()[:4] == b"\x89PNG"


EXPECTED_FAILURES = {
    "ode-full-score": {f"{p}_{c}" for p in ("VP", "VE") for c in ("ode_sw2_vs_data", "ode_mode_weights")},
    "sde-half-score": {f"{p}_{c}" for p in ("VP", "VE") for c in ("sde_sw2_vs_data", "sde_mode_weights")},
}


@pytest.mark.parametrize("variant", sorted(EXPECTED_FAILURES))
def test_planted_bug_fails_its_checks(tmp_path, variant):
    report = Report(tmp_path / "out", quiet=True)
    demo.run(report, num_samples=600, sde_steps=100, ode_steps=200, num_roundtrip=32, variant=variant)
    failed = set(report.failed_checks())
    assert EXPECTED_FAILURES[variant] <= failed, f"{variant}: failed {sorted(failed)}"
    other = "sde" if variant.startswith("ode") else "ode"
    assert not any(f"_{other}_" in name for name in failed), f"only the {variant[:3]} side may fail: {failed}"


@pytest.mark.parametrize("name", ["VP", "VE"])
def test_marginal_oracle_agrees_with_the_processes(name):
    """The check's own s(t), σ(t) (the article's formulas) and the processes' (the code under test)."""
    process = ds.PROCESSES[name]
    for t in (1e-3, 0.1, 0.5, 1.0):
        s_t, sigma_t = demo.oracle_s_sigma(name, t)
        assert s_t == pytest.approx(process.s(t), rel=1e-12) and sigma_t == pytest.approx(process.sigma(t), rel=1e-9)


def test_marginals_catch_an_underpowered_sde(tmp_path, monkeypatch):
    """Too little Brownian noise: the SDE still lands near the modes, its path is wrong on the way."""
    real = ds.sample_euler_maruyama

    def quiet(denoise, process, x, ts, generator, **kw):
        return real(denoise, process, x, ts, generator, **kw) if False else _quiet_em(denoise, process, x, ts, generator, **kw)
    monkeypatch.setattr(ds, "sample_euler_maruyama", quiet)
    report = Report(tmp_path / "out", quiet=True)
    demo.run(report, num_samples=1000, sde_steps=100, ode_steps=200, num_roundtrip=32)
    failed = set(report.failed_checks())
    assert {"VP_sde_marginals_on_the_way", "VE_sde_marginals_on_the_way"} <= failed, failed
    assert not any("_ode_" in name for name in failed), failed


def _quiet_em(denoise, process, x, ts, generator, *, score_scale=1.0, trajectory=None):
    """Euler–Maruyama with 0.7 of the noise variance (a planted bug)."""
    import math as _m
    x = x.to(torch.float64)
    for t_cur, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = t_cur - t_next
        drift = process.f(t_cur) * x - score_scale * process.g2(t_cur) * ds.score(denoise, process, x, t_cur)
        z = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        x = x - drift * h + _m.sqrt(0.7 * process.g2(t_cur) * h) * z
        if trajectory is not None:
            trajectory.append(x)
    return x


def test_coefficient_identities_catch_a_wrong_g2():
    for process in ds.PROCESSES.values():
        assert max(demo.process_identity_errors(process)) < 1e-10

    class WrongG2(ds.VPSDE):  # β_min + t β_max: half a percent off, invisible in the samples
        def g2(self, t):
            return self.beta_min + t * self.beta_max
    assert demo.process_identity_errors(WrongG2())[1] > 1e-3


def test_spec_defaults_match_run_signature():
    defaults = {p.name: p.default for p in demo.SPEC.params}
    sig = inspect.signature(demo.run).parameters
    assert {k: sig[k].default for k in defaults} == defaults


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_demo_runs_on_cuda(tmp_path):
    report = Report(tmp_path / "out", quiet=True)
    demo.run(report, num_samples=2000)
    assert report.device.startswith("cuda:0 ("), report.device
    assert report.passed, report.failed_checks()
