"""The Heun sampler on CUDA captured as one CUDA graph, and the memory traffic it moves (for a roofline).

    python -m demos.bench --gpu-report       # graphed vs eager, samples/s, bytes/sample, roofline ratio
    bash demos/gpu_check.sh                   # the one script for a session that is lent a GPU

`GraphedHeun` captures Algorithm 1 (N = 18, NFE 35, float64) on the analytic mixture denoiser once per
batch shape with `torch.cuda.CUDAGraph`: the σ_i are Python floats baked into the kernels, latents are
copied into a static input buffer, every kernel of the 35 denoiser calls and 18 updates replays with one
launch. The sampler code is `demos.diffusion.sample_heun` itself, unchanged: the graph runs the same
kernels in the same order, so the samples equal the eager path's (checked to 1e-12 on the same latents).
On a CPU there is nothing to capture and `GraphedHeun` refuses to build.

`traffic_bytes_per_sample` counts the bytes every aten op of one Heun run reads and writes (inputs +
outputs, through a TorchDispatchMode on a small CPU batch) and divides by the batch: the traffic of this
unfused implementation, the "same traffic" the roofline divides by the card's memory bandwidth.
"""
from __future__ import annotations

import time

import torch
# Private but long-standing torch modules: the dispatch-level hook sees every aten op with its tensors.
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from demos.diffusion import FLOAT, get_sigmas_karras, make_mixture, sample_heun


class GraphedHeun:
    """Heun N-step sampling of a fixed batch shape, captured once and replayed."""

    def __init__(self, mixture, batch: int, num_steps: int = 18, warmup: int = 2):
        device = mixture.means.device
        if device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device; on the CPU use demos.diffusion.sample_heun")
        self.sigmas = get_sigmas_karras(num_steps).tolist()  # Python floats: constants in the graph
        self.denoise = mixture.denoise
        self.x_in = torch.zeros(batch, mixture.dim, dtype=FLOAT, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm-up outside the graph (allocator, cuBLAS handles)
            for _ in range(warmup):
                sample_heun(self.denoise, self.x_in * self.sigmas[0], self.sigmas)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.x_out = sample_heun(self.denoise, self.x_in * self.sigmas[0], self.sigmas)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Samples from unit latents z (the shape captured); returns a fresh tensor."""
        self.x_in.copy_(z)
        self.graph.replay()
        return self.x_out.clone()


def eager_heun(mixture, z: torch.Tensor, num_steps: int = 18) -> torch.Tensor:
    """The same computation without a graph (σ_i as Python floats too)."""
    sigmas = get_sigmas_karras(num_steps).tolist()
    return sample_heun(mixture.denoise, z * sigmas[0], sigmas)


class _Traffic(TorchDispatchMode):
    """Sums the bytes of every tensor an aten op reads (inputs) and writes (outputs)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves((args, kwargs, out)):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


def traffic_bytes_per_sample(dim: int = 2, num_steps: int = 18, batch: int = 4096) -> float:
    """Bytes read + written per sample by one unfused Heun run (each op's inputs and outputs once)."""
    mixture = make_mixture(dim)
    z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0), dtype=FLOAT)
    with _Traffic() as mode:
        eager_heun(mixture, z, num_steps)
    return mode.bytes / batch


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Achieved device-memory bandwidth of a large tensor copy (bytes read + written per second)."""
    n = nbytes // 8
    src = torch.empty(n, dtype=torch.float64, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n * 8 * repeats / (time.perf_counter() - start)


# Peak memory bandwidth from the vendors' data sheets (bytes/s), by a substring of the device name.
SPEC_BANDWIDTH = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
                  "A100-SXM4-80GB": 2.039e12, "A100 80GB PCIe": 1.935e12, "A100": 1.555e12, "L40S": 0.864e12}


def spec_bandwidth(name: str) -> float | None:
    for key, value in SPEC_BANDWIDTH.items():
        if key in name:
            return value
    return None
