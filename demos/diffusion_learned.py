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
DRAW_CHUNK_STEPS = 50   # training batches drawn per sampling call


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


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) with torch.optim.Adam's defaults (no weight decay, no AMSGrad),
    the update of its multi-tensor path written out with `torch._foreach_*` ops. Not torch.optim.Adam itself
    because its first step imports torch._dynamo: 2.0 s of CPU on the 2-core machine, a quarter of the demo's
    8 s budget. tests/test_edm_sampling.py checks each step against torch.optim.Adam."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]      # m_t
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]   # v_t

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.t += 1
        grads = [p.grad for p in self.params]
        # m_t = β1 m + (1 − β1) g;  v_t = β2 v + (1 − β2) g².
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - beta2)
        # θ −= lr / (1 − β1^t) · m_t / (√v_t / √(1 − β2^t) + ε).
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, (1 - beta2 ** self.t) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -self.lr / (1 - beta1 ** self.t))


def cosine_lr(lr: float, step: int, total: int) -> float:
    """Cosine decay from lr to 0 over `total` steps (torch's CosineAnnealingLR with eta_min = 0, closed form)."""
    return lr * (1 + math.cos(math.pi * step / total)) / 2


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    final_batch_loss: float
    sigma_draws: torch.Tensor   # the σ of the first SIGMA_RECORD_STEPS batches, as trained on


def train_denoiser(net: EDMPrecond, mixture: GaussianMixture, steps: int, generator: torch.Generator,
                   batch_size: int = 512, lr: float = 1e-2, P_mean: float = -1.2, P_std: float = 1.2,
                   log=None) -> TrainResult:
    """Adam on the EDM loss with fresh mixture draws each step and a cosine learning-rate decay. Draws are
    made DRAW_CHUNK_STEPS batches at a time (one sampling call instead of one per step), then sliced. The σ
    of the first SIGMA_RECORD_STEPS batches are returned, so the caller can test their distribution."""
    opt = Adam(net.parameters(), lr=lr)
    start = time.perf_counter()
    loss = torch.zeros(())
    recorded = []
    for step in range(steps):
        if step % DRAW_CHUNK_STEPS == 0:
            chunk = draw_loss_terms(mixture, batch_size * min(DRAW_CHUNK_STEPS, steps - step), generator,
                                    P_mean, P_std, dtype=torch.float32)
        rows = slice((step % DRAW_CHUNK_STEPS) * batch_size, (step % DRAW_CHUNK_STEPS + 1) * batch_size)
        draws = LossDraws(chunk.y[rows], chunk.sigma[rows], chunk.eps[rows])
        if step < SIGMA_RECORD_STEPS:
            recorded.append(draws.sigma.detach().reshape(-1).to("cpu", torch.float64))
        loss = edm_loss(net, draws, net.sigma_data).mean()
        opt.zero_grad()
        loss.backward()
        opt.lr = cosine_lr(lr, step, steps)
        opt.step()
        if log is not None and (step + 1) % max(steps // 5, 1) == 0:
            log(f"train step {step + 1}/{steps}: batch loss {loss.item():.4f}")
    return TrainResult(steps, time.perf_counter() - start, float(loss.detach()), torch.cat(recorded))


def start_training(net: EDMPrecond, mixture: GaussianMixture, steps: int, generator: torch.Generator,
                   background: bool, **kwargs):
    """Begin `train_denoiser(net, mixture, steps, generator, **kwargs)` and return `wait()`, which gives
    (TrainResult, the lines the training logged) once `net` holds the trained weights.

    background=True trains in a forked child process, so that on the 2-core machine the caller's own work
    (sampling, metrics, plots) overlaps with the training; the child sends the weights back and `wait()` loads
    them into `net`. The child inherits the same net, mixture, generator state and one intra-op thread, so
    the weights are those an in-process run gives (tests/test_edm_sampling.py compares them bit for bit).
    Use it only from a single-threaded CPU process: a fork copies no other thread, and any lock one held."""
    if not background:
        def train_here():
            lines: list[str] = []
            return train_denoiser(net, mixture, steps, generator, log=lines.append, **kwargs), lines
        return train_here

    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_train_child, args=(send, net, mixture, steps, generator, kwargs), daemon=True,
                        name="edm-train")
    child.start()
    send.close()

    def wait():
        try:
            status, *payload = receive.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"the training process ended without a result (exit code {child.exitcode})") from None
        finally:
            receive.close()
        child.join()
        if status != "ok":
            raise RuntimeError("training failed in its child process:\n" + payload[0])
        state, (steps_done, seconds, final_loss, sigma_draws), lines = payload
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        return TrainResult(steps_done, seconds, final_loss, torch.from_numpy(sigma_draws)), lines
    return wait


def _train_child(send, net, mixture, steps, generator, kwargs) -> None:
    """The forked trainer: NumPy arrays over the pipe (torch's own pickling would pass shared-memory handles)."""
    try:
        torch.set_num_threads(1)
        lines: list[str] = []
        result = train_denoiser(net, mixture, steps, generator, log=lines.append, **kwargs)
        state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        send.send(("ok", state, (result.steps, result.seconds, result.final_batch_loss,
                                 result.sigma_draws.numpy()), lines))
    except BaseException:  # the parent re-raises it with this traceback
        import traceback

        send.send(("error", traceback.format_exc()))
    finally:
        send.close()
