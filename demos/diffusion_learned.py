"""A learned denoiser for the mixture: a small MLP wrapped in EDM preconditioning (Karras et al. 2022,
Table 1 and Eq. 7), trained with the EDM loss (Eq. 2 weighted by λ(σ), ln σ ~ N(P_mean, P_std²)).

It knows the preconditioning, the loss on fixed draws (so a trained network, the analytic ideal denoiser
and trivial denoisers are scored on the same σ and noise) and a bounded training loop. It does not know
samplers: a trained `EDMPrecond` is just another `denoise(x, σ)`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from demos.diffusion import FLOAT, GaussianMixture

SIGMA_RECORD_STEPS = 8


class EDMPrecond(nn.Module):
    """D_θ(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ)) (Eq. 7) with F_θ a small MLP."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, sigma_data: float = 0.5,
                 num_freqs: int = 8):
        super().__init__()
        self.sigma_data = sigma_data
        # c_noise enters as sin/cos features so the MLP can resolve σ over four decades.
        self.register_buffer("freqs", 2.0 ** torch.arange(num_freqs, dtype=torch.float32) * math.pi / 8)
        layers, width = [], dim + 1 + 2 * num_freqs
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c_skip, c_out, c_in, c_noise at σ: preconditioning, Table 1 (EDM column)."""
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1).expand(len(x), 1)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        emb = c_noise * self.freqs
        F_x = self.net(torch.cat([c_in * x, c_noise, emb.sin(), emb.cos()], 1))
        D_x = c_skip * x + c_out * F_x
        return D_x.to(dtype)


@dataclass(frozen=True)
class LossDraws:
    """Fixed draws for the EDM loss: clean data y, noise levels σ and unit noise ε (n = σ ε)."""
    y: torch.Tensor      # (M, d)
    sigma: torch.Tensor  # (M, 1)
    eps: torch.Tensor    # (M, d)


def draw_loss_terms(mixture: GaussianMixture, m: int, generator: torch.Generator,
                    P_mean: float = -1.2, P_std: float = 1.2, dtype=FLOAT) -> LossDraws:
    """y ~ p_data, ln σ ~ N(P_mean, P_std²) (Sec. 5, training), ε ~ N(0, I)."""
    y, _ = mixture.sample(m, generator)
    device = mixture.means.device
    rnd_normal = torch.randn(m, 1, generator=generator, dtype=FLOAT, device=device)
    sigma = (rnd_normal * P_std + P_mean).exp()
    eps = torch.randn(y.shape, generator=generator, dtype=FLOAT, device=device)
    return LossDraws(y.to(dtype), sigma.to(dtype), eps.to(dtype))


def loss_weight(sigma, sigma_data: float = 0.5):
    """λ(σ) = (σ² + σ_data²) / (σ σ_data)², Table 1: the weight that makes the effective weight λ c_out² = 1."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(denoise, draws: LossDraws, sigma_data: float = 0.5) -> torch.Tensor:
    """λ(σ) ‖D(y + n; σ) − y‖² per sample, averaged over dimensions."""
    y, sigma = draws.y, draws.sigma
    n = draws.eps * sigma
    weight = loss_weight(sigma, sigma_data)
    D_yn = denoise(y + n, sigma)
    return (weight * (D_yn - y) ** 2).mean(1)


def c_skip_denoiser(sigma_data: float = 0.5):
    """The trivial denoiser D(x; σ) = c_skip(σ) x, i.e. F_θ = 0: the loss an untrained network starts from."""
    return lambda x, sigma: sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2) * x


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    final_batch_loss: float
    sigma_draws: torch.Tensor   # the σ of the first SIGMA_RECORD_STEPS batches, as trained on


def train_denoiser(net: EDMPrecond, mixture: GaussianMixture, steps: int, generator: torch.Generator,
                   batch_size: int = 512, lr: float = 1e-2, P_mean: float = -1.2, P_std: float = 1.2,
                   log=None) -> TrainResult:
    """Adam on the EDM loss with fresh mixture draws each step and a cosine learning-rate decay. The σ of
    the first SIGMA_RECORD_STEPS batches are returned, so the caller can test their distribution."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    start = time.perf_counter()
    loss = torch.zeros(())
    recorded = []
    for step in range(steps):
        draws = draw_loss_terms(mixture, batch_size, generator, P_mean, P_std, dtype=torch.float32)
        if step < SIGMA_RECORD_STEPS:
            recorded.append(draws.sigma.detach().reshape(-1).to("cpu", torch.float64))
        loss = edm_loss(net, draws, net.sigma_data).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % max(steps // 5, 1) == 0:
            log(f"train step {step + 1}/{steps}: batch loss {loss.item():.4f}")
    return TrainResult(steps, time.perf_counter() - start, float(loss.detach()), torch.cat(recorded))
