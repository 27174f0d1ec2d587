"""The SDE view of diffusion (Song et al. 2021) on the analytic mixture: VP and VE forward SDEs
dx = f(t) x dt + g(t) dw, the reverse-time SDE solved with Euler–Maruyama and the probability-flow ODE
solved with Heun, both driven by the score ∇ log p_t(x) taken from the ideal denoiser.

Each process is also written in EDM's form x = s(t) (x_0 + σ(t) ε) (Karras et al. 2022, Table 1), so the
score is ∇_x log p_t(x) = (D(x/s; σ) − x/s) / (s σ²) with D the denoiser of `demos.diffusion`. Parameters
follow the diffusion-sde article: VP β_min = 0.1, β_max = 20; VE σ_min = 0.01, σ_max = 50; t ∈ [ε, 1],
ε = 10⁻³. This module knows the processes and the integrators; it knows nothing of demos or plots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from demos.diffusion import FLOAT, get_sigmas_karras


@dataclass(frozen=True)
class VPSDE:
    """Variance preserving: dx = −½ β(t) x dt + √β(t) dw, β(t) = β_min + t (β_max − β_min)."""
    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3
    name: str = "VP"

    def B(self, t: float) -> float:
        """∫_0^t β(s) ds."""
        return self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)

    def f(self, t: float) -> float:
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))

    def g2(self, t: float) -> float:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def s(self, t: float) -> float:
        return math.exp(-0.5 * self.B(t))

    def sigma(self, t: float) -> float:
        return math.sqrt(math.expm1(self.B(t)))

    def t_of_sigma(self, sigma: float) -> float:
        """Inverse of σ(t): solve ½ β_d t² + β_min t = ln(1 + σ²), β_d = β_max − β_min."""
        beta_d = self.beta_max - self.beta_min
        return (math.sqrt(self.beta_min ** 2 + 2 * beta_d * math.log1p(sigma ** 2)) - self.beta_min) / beta_d


@dataclass(frozen=True)
class VESDE:
    """Variance exploding: dx = √(d[σ_VE²]/dt) dw with σ_VE(t) = σ_min (σ_max/σ_min)^t. The perturbation
    kernel's variance is σ_VE(t)² − σ_VE(0)², so EDM's σ(t) = √(σ_VE(t)² − σ_min²), s(t) = 1."""
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    eps: float = 1e-3
    name: str = "VE"

    def sigma_ve(self, t: float) -> float:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def f(self, t: float) -> float:
        return 0.0

    def g2(self, t: float) -> float:
        return 2 * math.log(self.sigma_max / self.sigma_min) * self.sigma_ve(t) ** 2

    def s(self, t: float) -> float:
        return 1.0

    def sigma(self, t: float) -> float:
        return self.sigma_min * math.sqrt(math.expm1(2 * t * math.log(self.sigma_max / self.sigma_min)))

    def t_of_sigma(self, sigma: float) -> float:
        """Inverse of σ(t): σ_VE(t)² = σ² + σ_min²."""
        return 0.5 * math.log1p((sigma / self.sigma_min) ** 2) / math.log(self.sigma_max / self.sigma_min)


PROCESSES = {"VP": VPSDE(), "VE": VESDE()}


def time_grid(process, num_steps: int, rho: float = 7.0, device="cpu") -> torch.Tensor:
    """num_steps + 1 times from t = 1 down to t = ε: EDM's ρ-spaced noise levels (Eq. 5) between σ(1) and
    σ(ε), mapped back through t = σ⁻¹(σ_i) as in Karras et al. (2022), Table 1, "time steps". Uniform t
    (the article's choice) puts VP's last steps where h/t ≈ 1 and is ~5× less accurate for the same NFE.
    Flip the grid to integrate forward (encode)."""
    sigmas = get_sigmas_karras(num_steps + 1, process.sigma(process.eps), process.sigma(1.0), rho)[:-1]
    ts = [process.t_of_sigma(s) for s in sigmas.tolist()]
    ts[0], ts[-1] = 1.0, process.eps  # exact ends, free of round-trip rounding
    return torch.tensor(ts, dtype=FLOAT, device=device)


def prior_std(process) -> float:
    """Std of the latent x(1) ≈ N(0, s(1)² σ(1)² I): the data's own spread is negligible beside it."""
    return process.s(1.0) * process.sigma(1.0)


def score(denoise, process, x: torch.Tensor, t: float) -> torch.Tensor:
    """∇_x log p_t(x) = (D(x/s; σ) − x/s) / (s σ²), Tweedie's formula in EDM's scaled form."""
    s, sigma = process.s(t), process.sigma(t)
    x_hat = x / s
    return (denoise(x_hat, sigma) - x_hat) / (s * sigma ** 2)


def sample_euler_maruyama(denoise, process, x: torch.Tensor, ts: torch.Tensor, generator: torch.Generator,
                          *, score_scale: float = 1.0, trajectory: list | None = None) -> torch.Tensor:
    """Reverse-time SDE dx = [f x − g² ∇log p_t] dt + g dw̄ (Anderson 1982) by Euler–Maruyama from ts[0]
    down to ts[-1]. `score_scale` multiplies g² ∇log p_t (1 is the reverse SDE; planted bugs change it).
    `trajectory`, when given, receives x after each step (x at ts[1], ts[2], …), unscaled."""
    x = x.to(FLOAT)
    for t_cur, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = t_cur - t_next  # > 0: time runs backwards
        # Reverse drift at t_i, then the Brownian increment g √h z.
        drift = process.f(t_cur) * x - score_scale * process.g2(t_cur) * score(denoise, process, x, t_cur)
        z = torch.randn(x.shape, generator=generator, dtype=FLOAT, device=x.device)
        x = x - drift * h + math.sqrt(process.g2(t_cur) * h) * z
        if trajectory is not None:
            trajectory.append(x)
    return x


def integrate_pf_ode(denoise, process, x: torch.Tensor, ts: torch.Tensor, *, score_scale: float = 0.5,
                     trajectory: list | None = None) -> torch.Tensor:
    """Probability-flow ODE dx/dt = f x − ½ g² ∇log p_t by Heun's method from ts[0] to ts[-1], in either
    direction: decreasing times decode (sample), increasing times encode data into latents. `trajectory`,
    when given, receives x after each step, unscaled."""
    def velocity(x, t):
        return process.f(t) * x - score_scale * process.g2(t) * score(denoise, process, x, t)

    x = x.to(FLOAT)
    for t_cur, t_next in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = t_next - t_cur
        # Euler predictor, then the trapezoidal (Heun) correction.
        d_cur = velocity(x, t_cur)
        x_next = x + h * d_cur
        d_prime = velocity(x_next, t_next)
        x = x + h * (0.5 * d_cur + 0.5 * d_prime)
        if trajectory is not None:
            trajectory.append(x)
    return x
