"""`kb bench` end to end on a tiny corpus with the fake embedder and a small synthetic scale run."""
import numpy as np
import pytest

from kb.bench import format_report, run_bench, synthetic
from kb.config import Config
from kb.embedding import FakeEmbedder
from tests.test_index import TERMS, write_article


def test_bench_report_on_a_copy(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    for i, slug in enumerate(("a-one", "b-two", "c-three")):
        write_article(folder, slug, f"列表{i}。\n\n## 节\n\n元组{i}；引用{i}。\n")
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    home = tmp_path / "home"
    report = run_bench(Config(articles_dir=folder, home=home), scales=[2000], queries=50,
                       embedder=FakeEmbedder(TERMS), hnsw_max=2000)
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before, "the articles are untouched"
    assert not home.exists(), "the user's index is never written"
    assert (report.articles, report.chunks, report.incremental_article) == (3, 6, "b-two")
    assert report.queries > 0 and report.query_p95_ms >= report.query_p50_ms > 0
    flat = [r for r in report.scale if r.index.startswith("Flat")]
    assert len(flat) == 1 and flat[0].recall10 == 1.0
    for kind in ("IVF", "HNSW"):
        rows = [r for r in report.scale if r.index.startswith(kind)]
        chosen = [r for r in rows if r.operating_point]
        assert len(chosen) == 1, f"one {kind} operating point"
        assert chosen[0].recall10 >= 0.95 or chosen[0] is rows[-1]
    text = format_report(report)
    assert "| articles / chunks | 3 / 6 |" in text and "| 2,000 | Flat (exact) |" in text


def test_synthetic_vectors_are_unit_and_reproducible():
    data, queries = synthetic(3000, 16, 7, seed=3)
    assert data.shape == (3000, 16) and queries.shape == (7, 16) and data.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(synthetic(3000, 16, 7, seed=3)[0], data)


def test_scale_sweep_marks_the_first_setting_reaching_the_target_recall():
    from kb.bench import TARGET_RECALL, bench_scale

    rows = bench_scale(5_000, 50, log=lambda m: None)
    flat, ivf, hnsw = ([r for r in rows if r.index.startswith(p)] for p in ("Flat", "IVF", "HNSW"))
    assert [r.recall10 for r in flat] == [1.0], "exact search is its own ground truth"
    assert [r.index.split("=")[1] for r in ivf] == ["1", "2", "4", "8", "16", "32", "64"]
    assert [r.index.split("=")[1] for r in hnsw] == ["16", "32", "64", "128"]
    for sweep in (ivf, hnsw):
        marked = [r for r in sweep if getattr(r, "operating_point", False)]
        assert len(marked) == 1, "exactly one operating point per index type"
        first = next((r for r in sweep if r.recall10 >= TARGET_RECALL), sweep[-1])
        assert marked[0] is first


def test_backends_side_by_side_with_deltas_against_torch(tmp_path):
    from kb.bench import METRICS, bench_backends

    folder = tmp_path / "articles"
    folder.mkdir()
    write_article(folder, "a-list", "列表是可变的。\n\n## 元组\n\n元组不可变；引用不变。\n")
    write_article(folder, "b-gen", "生成器按需产出。\n\n## gc\n\ngc 回收循环引用。\n")
    devset = tmp_path / "dev.jsonl"
    devset.write_text('{"id": "q1", "question": "元组可变吗", "articles": ["a-list"]}\n'
                      '{"id": "q2", "question": "gc 回收什么", "articles": ["b-gen"]}\n'
                      '{"id": "q3", "question": "量子计算的前景", "articles": []}\n', encoding="utf-8")
    fakes = {"torch": FakeEmbedder(TERMS), "onnx-int8": FakeEmbedder(TERMS[:2])}
    logged: list[str] = []
    rows = bench_backends(Config(articles_dir=folder, home=tmp_path / "home"), ["torch", "onnx-int8"],
                          str(devset), log=logged.append, embedders=fakes, rounds=3)
    assert [r.backend for r in rows] == ["torch", "onnx-int8"]
    torch_row, int8 = rows
    assert fakes["torch"].calls and fakes["onnx-int8"].calls, "each backend built its own index"
    chunks = 4
    assert fakes["torch"].calls == fakes["onnx-int8"].calls == [chunks] * 3, "three full builds of 4 chunks each"
    assert [m for m in logged if "round" in m] == [
        "bench: build round 2 of 3, backend onnx-int8", "bench: build round 2 of 3, backend torch",
        "bench: build round 3 of 3, backend torch", "bench: build round 3 of 3, backend onnx-int8"], \
        "round-robin: each round starts with the next backend"
    for r in rows:
        assert len(r.builds) == len(r.build_loads) == 3 and r.build_s == sorted(r.builds)[1], "median of 3"
        assert r.chunks_per_s == pytest.approx(chunks / r.build_s)
        assert r.build_cpu_s > 0 and all(load >= 0 for load in r.build_loads)
        assert len(r.build_cpus) == 3 and r.build_cpu_s == sorted(r.build_cpus)[1], "CPU seconds: median of 3"
    assert int8.build_cpu_speedup == pytest.approx(torch_row.build_cpu_s / int8.build_cpu_s)
    assert set(torch_row.metrics) == set(METRICS) and torch_row.deltas == {}
    assert int8.deltas == {k: round(int8.metrics[k] - torch_row.metrics[k], 4) for k in METRICS}
    assert torch_row.build_speedup == 1.0 and torch_row.embed_speedup == 1.0
    assert int8.build_speedup == pytest.approx(torch_row.build_s / int8.build_s)
    assert all(r.embed_p95_ms >= r.embed_p50_ms > 0 and r.chunks_per_s > 0 for r in rows)
    assert not (tmp_path / "home").exists(), "the user's index is never written"
    from kb.bench import BenchReport
    text = format_report(BenchReport(backends=rows))
    assert "| backend | load s (first / cached) | build s (each build) |" in text and "\n| onnx-int8 | " in text, text
    line = next(x for x in text.splitlines() if x.startswith("| onnx-int8 | "))
    assert f"| {int8.build_s:.1f} ({', '.join(f'{x:.1f}' for x in int8.builds)}) |" in line, line


def test_cli_refuses_bad_build_rounds(capsys):
    from kb.cli import main
    assert main(["bench", "--scale", "", "--backends", "", "--build-rounds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "kb: error: --build-rounds must be a whole number from 1 to 20"
