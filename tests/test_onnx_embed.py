"""The ONNX Runtime backend: selection by KB_EMBED_BACKEND, parity with the torch model, the fused graph
(onnxruntime's transformer optimizer) and its int8 quantization, batch independence, and the cached ONNX
file checked by SHA-256 and recipe (a corrupted or stale one is made again, never loaded)."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from kb.config import Config
from kb.embedding import SentenceTransformerEmbedder, make_embedder, resolve_model
from kb.errors import ModelError
from kb.onnx_embed import CACHE_MANIFEST, INT8_MIN_COSINE, PROBE_FILE, PROBES, RECIPE, OnnxEmbedder, ensure_onnx
from kb.index import sha256_file

SENTENCES = ["列表和元组有什么区别？", "Python 的垃圾回收用引用计数和分代回收", "pdb 怎么设置条件断点",
             "EDM 的预条件 c_skip 和 c_out", "torchrun 启动 DDP 多进程训练",
             "生成器" * 400]          # > 512 tokens: the truncation must match sentence-transformers'


def test_backend_is_selected_by_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KB_EMBED_BACKEND", raising=False)
    assert Config.from_env().embed_backend == "onnx-int8", "the default: the fastest backend within 0.01 of torch"
    monkeypatch.setenv("KB_EMBED_BACKEND", "onnx")
    config = Config.from_env()
    assert config.embed_backend == "onnx"
    e = make_embedder(config)
    assert isinstance(e, OnnxEmbedder) and e.variant == "fp32", f"got {type(e).__name__}"
    assert e.cache_dir == tmp_path / "home" / "onnx", "the ONNX file is cached beside the index"
    assert e.model_id == "m3e-small@onnx"
    assert not (tmp_path / "home").exists(), "making the embedder loads nothing"

    monkeypatch.setenv("KB_EMBED_BACKEND", "torch")
    torch_e = make_embedder(Config.from_env())
    assert isinstance(torch_e, SentenceTransformerEmbedder) and torch_e.model_id == "m3e-small"
    assert make_embedder(Config.from_env(embed_backend="onnx-int8")).model_id == "m3e-small@onnx-int8-w7", \
        "an explicit override wins over the environment"
    ids = {make_embedder(Config(embed_backend=b)).model_id for b in ("torch", "onnx", "onnx-int8")}
    assert len(ids) == 3, "each backend has its own model id, so a backend switch rebuilds the index"

    monkeypatch.setenv("KB_EMBED_BACKEND", "tensorrt")
    with pytest.raises(ModelError, match="KB_EMBED_BACKEND must be one of torch, onnx, onnx-int8"):
        Config.from_env()


def test_cli_rejects_an_unknown_backend_in_one_line(monkeypatch, capsys):
    from kb.cli import main
    monkeypatch.setenv("KB_EMBED_BACKEND", "gpu")
    assert main(["status"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kb: error: unknown embedding backend 'gpu' (KB_EMBED_BACKEND must be one of torch, onnx, "
                   "onnx-int8)"], err


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.mark.slow
def test_onnx_backends_agree_with_torch(onnx_cache):
    torch_vectors = SentenceTransformerEmbedder(show_progress=False).embed_documents(SENTENCES)
    for backend, floor in (("onnx", 0.9999), ("onnx-int8", 0.995)):
        e = OnnxEmbedder("m3e-small", onnx_cache, backend)
        docs = e.embed_documents(SENTENCES)
        assert docs.shape == (len(SENTENCES), 512) and docs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5, err_msg="normalized")
        cosines = (docs * torch_vectors).sum(1)
        assert cosines.min() >= floor, f"{backend}: cosine to torch {np.round(cosines, 4)} below {floor}"
        q = e.embed_query(SENTENCES[0])
        np.testing.assert_allclose(q, docs[0], atol=1e-5, err_msg=f"{backend}: a text's vector does not "
                                   "depend on the texts embedded with it, and a query embeds like a passage")
        assert int(np.argmax(docs @ e.embed_query("垃圾回收"))) == 1, f"{backend}: nearest sentence"
    manifest = json.loads((onnx_cache / CACHE_MANIFEST).read_text())
    assert set(manifest) == {"fp32", "int8"}
    for variant, entry in manifest.items():
        assert sha256_file(onnx_cache / entry["file"]) == entry["sha256"], f"{variant} checksum recorded"
        assert entry["source"]["recipe"] == RECIPE[variant], f"{variant}: the recipe is recorded"


@pytest.mark.slow
def test_cached_files_hold_the_fused_and_quantized_graphs(onnx_cache):
    """m3e-small has 4 layers: the optimizer must fuse every attention (the point of the recipe), and the
    int8 file must quantize the 12 remaining MatMuls and keep the fused attention in float32. The counts
    are read from the files themselves, and agree with what the manifest recorded."""
    import onnx
    manifest = json.loads((onnx_cache / CACHE_MANIFEST).read_text())
    expected = {"fp32": {"EmbedLayerNormalization": 1, "Attention": 4, "SkipLayerNormalization": 8,
                         "BiasGelu": 4, "MatMul": 12, "Softmax": 0, "Erf": 0},
                "int8": {"QAttention": 0, "MatMulInteger": 12, "Attention": 4, "MatMul": 0,
                         "EmbedLayerNormalization": 1}}
    for variant, counts in expected.items():
        ops = [n.op_type for n in onnx.load(str(onnx_cache / f"model-{variant}.onnx")).graph.node]
        found = {op: ops.count(op) for op in counts}
        assert found == counts, f"{variant}: operator counts {found}, expected {counts}"
    assert manifest["fp32"]["operators"] == {"EmbedLayerNormalization": 1, "Attention": 4,
                                             "SkipLayerNormalization": 8, "BiasGelu": 4}, manifest["fp32"]
    assert manifest["int8"]["operators"] == {"MatMulInteger": 12, "Attention": 4}, manifest["int8"]

    # 7-bit weights (reduce_range): a uint8 activation times an int8 weight, summed in pairs, stays within
    # VPMADDUBSW's 16 bits (2 * 255 * 64 < 32767), so CPUs without AVX-512 VNNI compute the same integers
    # as those with it. Full-range weights (up to 127) saturated there: cosine to torch 0.62-0.82.
    from onnx import numpy_helper
    graph = onnx.load(str(onnx_cache / "model-int8.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    ranges = [(int(weights[n.input[1]].min()), int(weights[n.input[1]].max()))
              for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(ranges) == 12 and all(-64 <= lo and hi <= 64 for lo, hi in ranges), ranges
    assert max(max(-lo, hi) for lo, hi in ranges) == 64, "each output channel's largest weight maps to 64"


@pytest.mark.slow
def test_float32_vectors_do_not_depend_on_batch_neighbours(onnx_cache):
    """Padded batches of the fused float32 graph give each text the vector it gets alone (the attention
    mask is honoured by the fused Attention op and the pooling); int8 keeps one text per run."""
    texts = SENTENCES + ["列表", "生成器表达式和列表推导式有什么不同？" * 3, "MRO"]
    alone = OnnxEmbedder("m3e-small", onnx_cache, "onnx").embed_documents(texts)
    batched = OnnxEmbedder("m3e-small", onnx_cache, "onnx", batch_size=8).embed_documents(texts)
    cosines = (alone * batched).sum(1)
    assert cosines.min() >= 1 - 1e-5, f"batch vs alone cosines {cosines}"
    np.testing.assert_allclose(batched, alone, atol=2e-5, err_msg="same vectors in a batch of 8 as alone")
    assert OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8").batch_size == 1, "int8 embeds one text per run"


@pytest.mark.slow
def test_a_file_made_by_another_recipe_is_made_again(onnx_cache, caplog):
    """A cache from an older recipe (here: the int8 entry's recorded recipe differs) is remade, never
    loaded, with one warning; the remade file carries today's recipe and checksum."""
    path = onnx_cache / "model-int8.onnx"
    if not path.is_file():
        pytest.skip("needs the cache made by test_onnx_backends_agree_with_torch")
    manifest = json.loads((onnx_cache / CACHE_MANIFEST).read_text())
    older = RECIPE["fp32"] + "; quantize_dynamic QInt8 per-channel of MatMul and Attention"    # the QAttention recipe
    manifest["int8"]["source"]["recipe"] = older
    (onnx_cache / CACHE_MANIFEST).write_text(json.dumps(manifest))
    stale = path.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert ensure_onnx(Path(resolve_model("m3e-small")), onnx_cache, "int8") == path
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "by another recipe; making it again" in warnings[0], warnings
    assert path.stat().st_mtime_ns != stale, "the file was written again"
    entry = json.loads((onnx_cache / CACHE_MANIFEST).read_text())["int8"]
    assert entry["source"]["recipe"] == RECIPE["int8"] and entry["sha256"] == sha256_file(path)


@pytest.mark.slow
def test_corrupted_cached_onnx_file_is_made_again(onnx_cache, caplog):
    path = onnx_cache / "model-int8.onnx"
    if not path.is_file():
        pytest.skip("needs the cache made by test_onnx_backends_agree_with_torch")
    model_dir = Path(resolve_model("m3e-small"))
    good = json.loads((onnx_cache / CACHE_MANIFEST).read_text())["int8"]["sha256"]
    assert ensure_onnx(model_dir, onnx_cache, "int8") == path, "a verified file is reused"

    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])   # silent damage in the weights
    path.write_bytes(bytes(data))
    assert sha256_file(path) != good
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert ensure_onnx(model_dir, onnx_cache, "int8") == path
    assert any("does not match its checksum" in r.getMessage() for r in caplog.records), caplog.text
    assert sha256_file(path) == json.loads((onnx_cache / CACHE_MANIFEST).read_text())["int8"]["sha256"]
    assert sha256_file(path) == good, "made again from the same float32 file, byte for byte"

    path.write_bytes(b"truncated")                                    # and a truncated file, used end to end
    e = OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8")
    v = e.embed_documents(SENTENCES[:2])
    assert v.shape == (2, 512) and sha256_file(path) == good, "the embedder never loads a damaged file"



@pytest.mark.slow
def test_int8_vectors_are_checked_against_float32_on_this_cpu(onnx_cache):
    """Every process that opens the int8 file compares its vectors of PROBES with the float32 file's (kept
    in PROBE_FILE, tied to that file's SHA-256); far apart, as when a CPU's integer kernels saturate, the
    backend refuses with one message that names the float32 backend."""
    OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8").load()
    path = onnx_cache / PROBE_FILE
    probe = json.loads(path.read_text())
    assert probe["texts"] == list(PROBES)
    assert probe["fp32_sha256"] == json.loads((onnx_cache / CACHE_MANIFEST).read_text())["fp32"]["sha256"]
    reference = np.asarray(probe["vectors"], np.float32)
    np.testing.assert_allclose(reference, OnnxEmbedder("m3e-small", onnx_cache, "onnx").embed_documents(
        list(PROBES)), atol=1e-6, err_msg="the reference is the float32 file's own vectors")
    int8 = OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8").embed_documents(list(PROBES))
    assert (int8 * reference).sum(1).min() >= 0.995 > INT8_MIN_COSINE, "this CPU passes with a margin"

    # Vectors int8 cannot match (each probe's reference is another probe's): as a saturating CPU would see.
    path.write_text(json.dumps({**probe, "vectors": np.roll(reference, 1, axis=0).tolist()}))
    wrong = (r"^the int8 ONNX model gives wrong vectors on this CPU \(cosine 0\.\d{3} to float32's on 6 probe "
             r"sentences, below 0\.99\); use KB_EMBED_BACKEND=onnx")
    with pytest.raises(ModelError, match=wrong):
        OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8").load()

    # A reference made from another float32 file is not trusted: computed again, and the check passes.
    path.write_text(json.dumps({**probe, "fp32_sha256": "0" * 64, "vectors": np.roll(reference, 1, axis=0).tolist()}))
    OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8").load()
    assert json.loads(path.read_text()) == probe


@pytest.mark.slow
def test_int8_check_works_in_a_read_only_cache(onnx_cache, tmp_path, caplog, monkeypatch):
    """A cache folder the process cannot write (a replica's read-only volume; simulated, as root may write
    anywhere): the probe vectors are computed and checked all the same, with one warning that they cannot
    be kept."""
    import errno
    import shutil
    import tempfile
    if not (onnx_cache / CACHE_MANIFEST).exists():
        pytest.skip("needs the cache made by test_onnx_backends_agree_with_torch")
    cache = tmp_path / "onnx"
    shutil.copytree(onnx_cache, cache)
    (cache / PROBE_FILE).unlink(missing_ok=True)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with caplog.at_level(logging.WARNING, logger="kb"):
        e = OnnxEmbedder("m3e-small", cache, "onnx-int8")
        e.load()
    assert not (cache / PROBE_FILE).exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot keep the int8 probe vectors in {cache / PROBE_FILE} (Read-only file system)"], caplog.text

    # A full disk: the temporary file is made, writing it into place fails; it is removed, not left behind.
    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.undo()
    monkeypatch.setattr("kb.index.os.replace", disk_full)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kb"):
        OnnxEmbedder("m3e-small", cache, "onnx-int8").load()
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in onnx_cache.iterdir()
                                                              if p.name != PROBE_FILE), "no temporary file left"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot keep the int8 probe vectors in {cache / PROBE_FILE} (No space left on device)"], caplog.text
    assert e.embed_query(PROBES[0]).shape == (512,)


# Document embedding on several workers (KB_EMBED_WORKERS) ------------------------------------------------

def _article_texts(n: int) -> list[str]:
    """`n` real chunk texts of varied length (the articles' own), the kind an index build embeds."""
    from kb.articles import load_articles
    from kb.chunking import chunk_article
    articles, _ = load_articles(Config().articles_dir)
    texts = [c.embed_text for a in articles for c in chunk_article(a, 400, 80)]
    return texts[::max(1, len(texts) // n)][:n]


class _Recorder:
    """A worker session that notes which thread ran which input width, then runs the real session. With a
    barrier, its first run waits until every worker has taken a text: each worker must get one (a worker
    that never started would time the barrier out), however the machine's load delays the threads."""

    def __init__(self, session, seen: list, fail: bool = False, barrier=None):
        self.session, self.seen, self.fail, self.barrier = session, seen, fail, barrier

    def run(self, outputs, feeds):
        import threading
        self.seen.append((threading.current_thread().name, feeds["input_ids"].shape))
        if self.barrier is not None:
            self.barrier, barrier = None, self.barrier
            barrier.wait(timeout=120)
        if self.fail:
            raise RuntimeError("worker session failed on purpose")
        return self.session.run(outputs, feeds)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx-int8", "onnx"])
def test_parallel_document_embedding_gives_the_serial_vectors(onnx_cache, backend):
    """N workers, each with its own single-threaded session, give every text exactly the vector the serial
    path (the query session, all CPUs, one text per run) gives it: a text runs alone either way, and the
    thread count does not change ONNX Runtime's sums here (bit-identical, not merely within 1e-6)."""
    texts = SENTENCES + _article_texts(18)
    serial = OnnxEmbedder("m3e-small", onnx_cache, backend, workers=1)
    expected = serial.embed_documents(texts)
    assert serial._worker_sessions == [], "workers=1 opens no worker session"
    for workers in ((2, 3) if backend == "onnx-int8" else (2,)):       # float32 runs slower: one count
        e = OnnxEmbedder("m3e-small", onnx_cache, backend, workers=workers)
        sessions = e.worker_sessions()
        assert len(sessions) == workers, f"{workers} worker sessions, got {len(sessions)}"
        assert [s.get_session_options().intra_op_num_threads for s in sessions] == [1] * workers
        if backend == "onnx-int8":      # one copy of the large weights for all workers, not one each
            assert "bert.embeddings.word_embeddings.weight" in e._shared and len(e._shared) == 14, \
                f"token and position tables, 4 QKV, 8 int8 feed-forward matrices shared: {sorted(e._shared)}"
        seen: list = []
        import threading
        barrier = threading.Barrier(workers)
        e._worker_sessions = [_Recorder(s, seen, barrier=barrier) for s in sessions]
        got = e.embed_documents(texts)
        np.testing.assert_array_equal(got, expected, err_msg=f"{backend}, {workers} workers vs serial")
        assert len(seen) == len(texts) and all(shape[0] == 1 for _, shape in seen), \
            f"one text per run, every text once: {len(seen)} runs for {len(texts)} texts"
        names = {name for name, _ in seen}
        assert names == {f"kb-embed-{n}" for n in range(workers)}, f"every worker took texts: {names}"
        widths = [shape[1] for _, shape in seen]
        assert max(widths[:workers]) == max(widths), "the longest texts start first (no straggler at the end)"
        # A query, and a single document, run on the query session (all CPUs), not on a worker.
        seen.clear()
        e._worker_sessions = [_Recorder(s, seen) for s in sessions]
        np.testing.assert_array_equal(e.embed_documents(texts[:1]), expected[:1])
        assert e.embed_query("垃圾回收").shape == (512,) and seen == [], "no worker ran a query or one text"
    q = e._session.get_session_options().intra_op_num_threads
    from kb.onnx_embed import _usable_cpus
    assert q == _usable_cpus(), f"the query session uses every usable CPU ({q})"


@pytest.mark.slow
def test_busy_or_failing_workers(onnx_cache):
    """A second multi-text call while the workers are busy runs on the query session (same vectors, no
    wait); an error in a worker thread reaches the caller, and the workers are free again afterwards."""
    texts = _article_texts(6)
    e = OnnxEmbedder("m3e-small", onnx_cache, "onnx-int8", workers=2)
    expected = e.embed_documents(texts)
    seen: list = []
    e._worker_sessions = [_Recorder(s, seen) for s in e.worker_sessions()]
    with e._pool_lock:                                  # another build holds the workers
        np.testing.assert_array_equal(e.embed_documents(texts), expected)
    assert seen == [], "the busy workers were not used"
    e._worker_sessions = [_Recorder(s.session, seen, fail=True) for s in e._worker_sessions]
    with pytest.raises(RuntimeError, match="worker session failed on purpose"):
        e.embed_documents(texts)
    assert e._pool_lock.acquire(blocking=False), "the workers were released after the failure"
    e._pool_lock.release()


def test_worker_count_is_configured_and_checked(monkeypatch, tmp_path):
    from kb.errors import KBError
    from kb.onnx_embed import default_workers, _usable_cpus
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KB_EMBED_WORKERS", raising=False)
    assert Config.from_env().embed_workers is None
    assert make_embedder(Config.from_env()).workers == default_workers() == min(_usable_cpus(), 8), \
        "auto: one worker per usable CPU, at most 8"
    for raw, expected in (("3", 3), (" 1 ", 1), ("auto", None), ("AUTO", None), ("64", 64)):
        monkeypatch.setenv("KB_EMBED_WORKERS", raw)
        assert Config.from_env().embed_workers == expected, raw
    monkeypatch.setenv("KB_EMBED_WORKERS", "3")
    e = make_embedder(Config.from_env())
    assert isinstance(e, OnnxEmbedder) and e.workers == 3 and e._worker_sessions == [], \
        "three workers, no session opened before the first build"
    assert make_embedder(Config.from_env(), workers=1).workers == 1, "an explicit argument wins"
    assert isinstance(make_embedder(Config.from_env(embed_backend="torch")), SentenceTransformerEmbedder)
    for raw, shown in (("0", "0"), ("-1", "'-1'"), ("two", "'two'"), ("1.5", "'1.5'"), ("65", "65"),
                       ("2 workers", "'2 workers'"), ("٣", "'٣'"), ("", None)):
        monkeypatch.setenv("KB_EMBED_WORKERS", raw)
        if shown is None:                      # empty: unset, like every KB_* variable
            assert Config.from_env().embed_workers is None
            continue
        with pytest.raises(KBError) as info:
            Config.from_env()
        assert str(info.value) == f"KB_EMBED_WORKERS must be auto or a whole number from 1 to 64, not {shown}"
    for bad in (0, -2, 65, 1.5, True, "2"):
        with pytest.raises(ModelError, match=r"must be a whole number from 1 to 64, not "):
            OnnxEmbedder("m3e-small", tmp_path, "onnx-int8", workers=bad)
        with pytest.raises(ModelError, match=r"threads must be a whole number from 1 to 64"):
            OnnxEmbedder("m3e-small", tmp_path, "onnx-int8", threads=bad)
    assert not (tmp_path / "home").exists(), "checking the settings loads nothing"


def test_cli_rejects_bad_worker_counts_in_one_line(monkeypatch, capsys):
    from kb.cli import main
    monkeypatch.setenv("KB_EMBED_WORKERS", "many")
    assert main(["status"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kb: error: KB_EMBED_WORKERS must be auto or a whole number from 1 to 64, not 'many'"], err
