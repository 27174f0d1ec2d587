"""demos.gpu_sampler and `demos.bench --gpu-report`: the traffic count is exact on known ops and scales with
the batch, the float-σ eager path equals the tensor-σ sampler, the CPU report runs; on CUDA (skipped here)
the captured graph reproduces the eager samples to 1e-12 and the CPU's to 1e-9."""
import pytest
import torch

from demos import bench
from demos import diffusion as dm
from demos import gpu_sampler as gs

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    with dm.torch_threads(torch.device("cpu"), 1):
        yield


def test_traffic_counts_inputs_and_outputs_exactly():
    a = torch.ones(100, dtype=torch.float64)
    b = torch.ones(100, dtype=torch.float32)
    with gs._Traffic() as mode:
        c = a + a          # reads 2 × 800 B, writes 800 B
        d = b * 2.0        # reads 400 B, writes 400 B
    assert mode.bytes == 2400 + 800, mode.bytes
    assert c.sum().item() == 200.0 and d.sum().item() == 200.0


def test_heun_traffic_scales_with_the_batch():
    small, large = gs.traffic_bytes_per_sample(batch=1024), gs.traffic_bytes_per_sample(batch=4096)
    assert large == pytest.approx(small, rel=0.01), (small, large)
    # At least: 35 denoiser calls each read x and write D (2 × 16 B), 18 updates read and write x.
    assert large > 35 * 32 + 18 * 32, large


def test_float_sigmas_give_the_same_samples_as_tensor_sigmas():
    mixture = dm.make_mixture(2)
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = dm.get_sigmas_karras(18)
    tensor_path = dm.sample_heun(mixture.denoise, z * sigmas[0], sigmas)
    float_path = gs.eager_heun(mixture, z)
    assert float((tensor_path - float_path).abs().max()) <= 1e-12


def test_graphs_refuse_the_cpu():
    with pytest.raises(RuntimeError, match="CUDA graphs need a CUDA device"):
        gs.GraphedHeun(dm.make_mixture(2), 16)


def test_cpu_gpu_report_rows_and_roofline():
    report = bench.gpu_report(sizes=(2000,), repeats=1, log=lambda line: None)
    if CUDA:
        pytest.skip("the CPU-only shape of the report")
    (row,) = report["rows"]
    assert row["mode"] == "eager" and row["samples"] == 2000 and row["samples_per_s"] > 0
    achieved = row["samples_per_s"] * report["bytes_per_sample"]  # bytes/s
    assert row["achieved_GBps"] == pytest.approx(achieved / 1e9, abs=0.051), "rounded to 0.1 GB/s"
    assert 0 < row["roofline_copy"] == pytest.approx(achieved / report["copy_bandwidth"], abs=0.0011)
    assert report["spec_bandwidth"] is None and row["roofline_spec"] is None
    text = bench.gpu_markdown(report)
    assert "| eager | 2,000 |" in text, text
    assert gs.spec_bandwidth("NVIDIA H200") == 4.8e12 and gs.spec_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_graph_equals_eager_and_cpu():
    cuda = torch.device("cuda:0")
    z = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mixture = dm.make_mixture(2, device=cuda)
    graphed = gs.GraphedHeun(mixture, len(z))
    x_graph = graphed(z.to(cuda))
    x_eager = gs.eager_heun(mixture, z.to(cuda))
    assert float((x_graph - x_eager).abs().max()) <= 1e-12
    x_again = graphed(z.to(cuda))
    assert torch.equal(x_graph, x_again), "a replay is deterministic"
    x_cpu = gs.eager_heun(dm.make_mixture(2), z)
    assert float((x_graph.cpu() - x_cpu).abs().max()) <= 1e-9
