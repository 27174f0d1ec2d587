"""Oracles for the edm-sampling checks, written apart from the code they check (`demos.diffusion`,
`demos.diffusion_learned`): nothing here imports or calls a sampler, a denoiser or the preconditioning.

- Eq. 5 in plain Python floats and the article's N = 18 table;
- the σ at which Algorithms 1/2 must call the denoiser (Heun) and at which Euler must;
- Tweedie's identity D(x; σ) = x + σ² ∇ log p_σ(x), with log p_σ the mixture's density written with
  `torch.distributions` and differentiated by autograd;
- Table 1's preconditioning (c_skip, c_out, c_in, c_noise) and loss weight λ(σ) in closed form;
- a Kolmogorov-Smirnov test of training σ against ln σ ~ N(P_mean, P_std²).
"""
from __future__ import annotations

import math

# The article's constants (edm-diffusion-framework, Table 1 and Sec. 5).
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
SIGMA_DATA = 0.5
P_MEAN, P_STD = -1.2, 1.2
# The article's table of the N = 18 schedule: the first four and the last three non-zero σ_i (4 decimals).
ARTICLE_TABLE_N18 = {0: 80.0, 1: 57.5860, 2: 40.7856, 3: 28.3746, 15: 0.0229, 16: 0.0075, 17: 0.0020}


def eq5_sigmas(num_steps: int, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO) -> list[float]:
    """Eq. 5 evaluated in plain Python floats, with σ_N = 0."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (num_steps - 1) * (b - a)) ** rho for i in range(num_steps)] + [0.0]


def expected_heun_sigmas(num_steps: int, s_churn: float = 0.0) -> list[float]:
    """σ of each denoiser call in Algorithm 1/2: t̂_i = σ_i (1 + γ) for the Euler step, σ_{i+1} for the
    correction, none on the last step."""
    sig = eq5_sigmas(num_steps)
    gamma = min(s_churn / num_steps, math.sqrt(2) - 1)
    out = []
    for i in range(num_steps):
        out.append(sig[i] * (1 + gamma))
        if i < num_steps - 1:
            out.append(sig[i + 1])
    return out


def expected_euler_sigmas(num_steps: int) -> list[float]:
    """Euler calls D once per step, at σ_0, …, σ_{N−1}."""
    return eq5_sigmas(num_steps)[:-1]


def same_sequence(seen: list[float], want: list[float], rel: float = 1e-9) -> bool:
    return len(seen) == len(want) and all(math.isclose(a, b, rel_tol=rel) for a, b in zip(seen, want))


def mixture_log_density(weights, means, stds, x, sigma: float):
    """log Σ_k w_k N(x; μ_k, (s_k² + σ²) I), built from torch.distributions (no code of demos.diffusion)."""
    import torch
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    scale = (stds ** 2 + sigma ** 2).sqrt()[:, None].expand_as(means)
    components = Independent(Normal(means, scale), 1)
    return MixtureSameFamily(Categorical(probs=weights / weights.sum()), components).log_prob(x.to(torch.float64))


def tweedie_residual(denoise, weights, means, stds, sigmas, num_points: int = 256, seed: int = 0) -> dict:
    """max |D(x; σ) − (x + σ² ∇ log p_σ(x))| at each σ, over points x drawn around the noised data (mixture
    draws written here, plus σ·ε). Returns {σ: residual}."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for sigma in sigmas:
        k = torch.multinomial(weights, num_points, replacement=True, generator=gen)
        y = means[k] + stds[k, None] * torch.randn(num_points, means.shape[1], generator=gen, dtype=torch.float64)
        x = (y + sigma * torch.randn(y.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture_log_density(weights, means, stds, x, sigma).sum(), x)
        target = x.detach() + sigma ** 2 * grad
        got = denoise(x.detach(), sigma)
        out[sigma] = float((got - target).abs().max())
    return out


def table1_coefficients(sigma: float, sigma_data: float = SIGMA_DATA) -> tuple[float, float, float, float]:
    """c_skip, c_out, c_in, c_noise of Table 1 (EDM column) at σ, in plain floats."""
    root = math.sqrt(sigma * sigma + sigma_data * sigma_data)
    return (sigma_data ** 2 / root ** 2, sigma * sigma_data / root, 1 / root, math.log(sigma) / 4)


def table1_loss_weight(sigma: float, sigma_data: float = SIGMA_DATA) -> float:
    return (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data) ** 2


def lognormal_ks(sigmas, p_mean: float = P_MEAN, p_std: float = P_STD) -> tuple[float, float]:
    """(KS statistic D, p-value) of the σ draws against ln σ ~ N(P_mean, P_std²). Written out rather than
    scipy.stats.kstest because importing scipy.stats costs ~0.8 s of the demo's 8 s budget; D is exact and
    p uses the Kolmogorov distribution with Stephens' small-sample correction (tests/test_edm_sampling.py
    compares both with scipy)."""
    logs = sorted(math.log(float(s)) for s in sigmas)
    n = len(logs)
    cdf = [0.5 * (1 + math.erf((v - p_mean) / (p_std * math.sqrt(2)))) for v in logs]
    d = max(max((i + 1) / n - c, c - i / n) for i, c in enumerate(cdf))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(1.0, max(0.0, p))
