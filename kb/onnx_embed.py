"""ONNX Runtime embedders for a mean-pooled BERT sentence model (m3e-small): float32 and int8.

    KB_EMBED_BACKEND=onnx-int8 kb index        # or onnx (float32), or torch (sentence-transformers)

The ONNX file is made locally, on first use, from the model folder (the one the torch backend loads):
`torch.onnx.export` of the BERT encoder (eager attention, the pattern ONNX Runtime's fusions recognise)
followed by the sentence-transformers pipeline of m3e (mean pooling over the attention mask, then L2
normalization); then onnxruntime's transformer optimizer fuses it (`onnxruntime.transformers.optimizer.
optimize_model`, model_type "bert": EmbedLayerNormalization, one Attention op per layer, SkipLayerNorm,
BiasGelu); for int8, `onnxruntime.quantization.quantize_dynamic` of the fused file's MatMuls (7-bit
weights per output channel, activations quantized per call, the same integers on every x86 CPU; the fused
attention stays float32). It is cached in `<KB_HOME>/onnx/` beside the index, with a small manifest that
records its SHA-256, the model files it was made from and the recipe (RECIPE); a cached file that is
missing, corrupted, made from other weights or by another recipe is made again, never loaded. At run time
only onnxruntime and the model's own `tokenizer.json` (through `tokenizers`) are used: no torch import on
the query path.

Why not sentence-transformers' `backend="onnx"`: its export helpers need `optimum-onnx`, whose pins
downgrade transformers and sentence-transformers; exporting with torch.onnx keeps today's versions.

Making and checking the file is kb/onnx_export.py's; this module runs it. It knows nothing about chunks or
indexes.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from kb.config import MAX_EMBED_WORKERS
from kb.embedding import Embedder, resolve_model
from kb.errors import ModelError
from kb.index import replace_text
from kb.onnx_export import (BACKENDS, CACHE_MANIFEST, MODEL_TAG, ONNX_BACKENDS, RECIPE,  # noqa: F401 - re-exported
                            ensure_onnx, model_settings, read_cache_manifest)

log = logging.getLogger("kb")


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


MAX_WORKERS = MAX_EMBED_WORKERS  # above this a setting is a typo, not a machine: each worker holds a session
AUTO_WORKERS_CAP = 8  # the automatic worker count: one per usable CPU, at most this many


def default_workers() -> int:
    """Document workers when none are configured: one per CPU this process may use, at most 8."""
    return min(_usable_cpus(), AUTO_WORKERS_CAP)


def check_count(value, what: str) -> int:
    """A thread or worker count: a whole number from 1 to MAX_WORKERS, else one clear ModelError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ModelError(f"{what} must be a whole number from 1 to {MAX_WORKERS}, not {value!r}")
    return value


SHARED_MIN_BYTES = 1 << 20

# The int8 file's vectors depend on the CPU's integer kernels (8-bit weights saturated without AVX-512 VNNI:
# cosine 0.62-0.82 to torch). Every process that opens it embeds these sentences and compares them with the
# float32 file's vectors of the same sentences, kept in PROBE_FILE beside it.
PROBES = ("列表和元组有什么区别？", "引用计数归零时，对象立即被释放。", "pdb 的 n 命令执行到当前函数的下一行",
          "EDM 把噪声水平 σ 直接当作时间变量", "DDP 在 backward 中对梯度做 all-reduce",
          "@tf_export 把函数登记到 TensorFlow 的公开 API")
PROBE_FILE = "int8-probe.json"
INT8_MIN_COSINE = 0.99   # 7-bit weights give >= 0.997 on these; the saturated 8-bit file gave 0.62-0.82


def _shared_weights(path: Path) -> dict:
    """The initializers of at least 1 MiB in the ONNX file at `path` (int8: the float32 token and position
    embedding tables, the four QKV projections and the eight int8 feed-forward matrices) as OrtValues that
    the worker sessions use instead of each loading its own copy (`SessionOptions.add_initializer`; ONNX
    Runtime does not copy them, and each OrtValue keeps its array alive). Measured on int8: 2 worker
    sessions +125 MiB resident instead of +138, 4 workers +190 instead of +287 (about 32 MiB per session
    instead of 72, plus the one shared copy). The values are the file's own, so the vectors do not change
    (tests/test_onnx_embed.py compares them bit for bit)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {t.name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(numpy_helper.to_array(t)))
            for t in model.graph.initializer
            if int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            >= SHARED_MIN_BYTES}


class OnnxEmbedder(Embedder):
    """m3e-small (or another mean-pooled BERT folder) through ONNX Runtime, float32 or int8.

    `model_id` is the model plus the backend and its int8 recipe ("m3e-small@onnx-int8-w7", MODEL_TAG): the
    index manifest records it, so vectors of one backend or recipe are never mixed with another's (a backend
    switch, or an index made by the earlier 8-bit recipe, rebuilds the index).

    One text per run by default: dynamic int8 quantization scales the activations per tensor, so in a
    padded batch a text's vector would depend on its batch companions (cosine 0.996 to itself alone);
    one at a time, a passage embeds exactly like the same text as a query, whatever else is indexed with
    it, and no time goes to padding. Float32 batches are independent of their neighbours (cosine >= 1 - 1e-6
    with the fused graph) but were no faster on the 2-core machine: 64 chunks, 3.9 chunks/s at batch 1,
    3.2 at 8; 256 answer sentences 25 / 29 per s at 1 / 16 (interleaved, load average 7-9).

    Two kinds of session, both with spinning off (ONNX Runtime's workers otherwise spin waiting for work,
    which on a busy machine takes the cores the other worker needs):
      - queries (and a single document) run on one session with `threads` intra-op threads (default: the
        CPUs this process may use): one short text, as soon as possible;
      - several documents (index builds, answer sentences) are spread over `workers` threads, each with its
        own single-threaded session, each embedding whole texts, longest first from a shared queue. One
        thread per run has no intra-op hand-offs and no waiting for the slower thread at every operator,
        so the cores do more texts per second; each text still runs alone, so its vector is the one the
        query session gives it, bit for bit (tests/test_onnx_embed.py). ONNX Runtime releases the GIL
        while it runs. The worker sessions are made on the first multi-text call (about 32 MiB each, with
        one shared copy of the large weights), so a process that only answers questions never holds them.
        `workers` 1 embeds documents on the query session, one after another, as before.
    """

    def __init__(self, model: str, cache_dir: Path, backend: str = "onnx-int8", query_prompt: str | None = None,
                 passage_prompt: str | None = None, batch_size: int | None = None, threads: int | None = None,
                 workers: int | None = None):
        if backend not in ONNX_BACKENDS:
            raise ModelError(f"unknown ONNX backend '{backend}' (one of {', '.join(ONNX_BACKENDS)})")
        self.model = model
        self.backend = backend
        self.variant = ONNX_BACKENDS[backend]
        base = model if not Path(model).expanduser().exists() else str(Path(model).expanduser().resolve())
        self.model_id = f"{base}@{MODEL_TAG[self.variant]}"
        self.cache_dir = Path(cache_dir)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size or 1
        self.threads = None if threads is None else check_count(threads, "the ONNX query session's threads")
        self.workers = default_workers() if workers is None else check_count(
            workers, "KB_EMBED_WORKERS (document embedding workers)")
        self.show_progress = None        # interface parity with SentenceTransformerEmbedder (no bar here)
        self._session = None
        self._tokenizer = None
        self._worker_sessions: list = []
        self._shared: dict | None = None        # weights the worker sessions share (OrtValues kept alive here)
        self._lock = threading.Lock()
        self._pool_lock = threading.Lock()     # one multi-text call at a time owns the worker sessions

    @property
    def onnx_path(self) -> Path:
        return self.cache_dir / f"model-{self.variant}.onnx"

    def _open_session(self, path: Path, threads: int, shared: dict | None = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for name, value in (shared or {}).items():
            options.add_initializer(name, value)
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - checked by hash, so this is an onnxruntime problem
            raise ModelError(f"onnxruntime cannot load {path}: {str(exc)[:300]}") from None

    def load(self) -> None:
        """Make or verify the ONNX file, then open the query session and the tokenizer (once)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime  # noqa: F401
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise ModelError(f"the ONNX backend needs onnxruntime ({exc}); run: pip install onnxruntime onnx "
                                 f"(or use KB_EMBED_BACKEND=torch)") from None
            model_dir = Path(resolve_model(self.model))
            if not model_dir.is_dir():
                raise ModelError(f"the ONNX backend needs a local model folder, '{self.model}' is not one")
            settings = model_settings(model_dir)
            path = ensure_onnx(model_dir, self.cache_dir, self.variant)
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=settings["max_seq_length"])
            tokenizer.no_padding()
            session = self._open_session(path, self.threads or _usable_cpus())
            self._path = path
            self._inputs = {i.name for i in session.get_inputs()}
            self._dimension = int(session.get_outputs()[0].shape[1])
            self._tokenizer = tokenizer
            if self.variant == "int8":
                self._check_int8(model_dir, session)
            self._session = session

    def _check_int8(self, model_dir: Path, session) -> None:
        """Refuse an int8 file whose vectors on this CPU are far from float32's (PROBES, INT8_MIN_COSINE):
        one clear ModelError that names the float32 backend, never silently wrong answers."""
        reference = self._probe_reference(model_dir)
        got = np.vstack([session.run(None, self._feeds([text]))[0] for text in PROBES])
        cosine = float((got * reference).sum(1).min())      # both are L2-normalized by the graph
        if cosine < INT8_MIN_COSINE:
            raise ModelError(f"the int8 ONNX model gives wrong vectors on this CPU (cosine {cosine:.3f} to "
                             f"float32's on {len(PROBES)} probe sentences, below {INT8_MIN_COSINE}); "
                             f"use KB_EMBED_BACKEND=onnx (float32)")

    def _probe_reference(self, model_dir: Path) -> np.ndarray:
        """The float32 file's vectors of PROBES, from PROBE_FILE when it was made from the float32 file the
        cache manifest names now; otherwise computed (about a second) and written there."""
        fp32 = read_cache_manifest(self.cache_dir).get("fp32", {}).get("sha256")
        path = self.cache_dir / PROBE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if fp32 and data["fp32_sha256"] == fp32 and data["texts"] == list(PROBES):
                return np.asarray(data["vectors"], np.float32)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        session = self._open_session(ensure_onnx(model_dir, self.cache_dir, "fp32"), self.threads or _usable_cpus())
        vectors = np.vstack([session.run(None, self._feeds([text]))[0] for text in PROBES])
        data = {"fp32_sha256": read_cache_manifest(self.cache_dir)["fp32"]["sha256"], "texts": list(PROBES),
                "vectors": vectors.tolist()}
        try:
            replace_text(path, json.dumps(data))
        except OSError as exc:     # a read-only or full cache: checked all the same, computed again next time
            log.warning("cannot keep the int8 probe vectors in %s (%s)", path, exc.strerror or exc)
        return vectors

    def worker_sessions(self) -> list:
        """The document workers' single-threaded sessions, opened on first use (`workers` of them). They
        share one copy of the file's large weights (`_shared_weights`) instead of holding one each."""
        self.load()
        with self._lock:
            if len(self._worker_sessions) < self.workers and self._shared is None:
                self._shared = _shared_weights(self._path)
            while len(self._worker_sessions) < self.workers:
                self._worker_sessions.append(self._open_session(self._path, 1, self._shared))
        return self._worker_sessions

    @property
    def dimension(self) -> int:
        self.load()
        return self._dimension

    def _feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), np.int64)
        mask = np.zeros((len(texts), width), np.int64)
        types = np.zeros((len(texts), width), np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feeds.items() if k in self._inputs}

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self._session.run(None, self._feeds(texts))[0]

    def _embed(self, texts, is_query):
        self.load()
        prompt = self.query_prompt if is_query else self.passage_prompt
        if prompt:
            texts = [prompt + t for t in texts]
        # Length-sorted batches pad little; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        out = np.empty((len(texts), self._dimension), np.float32)
        if is_query or len(batches) < 2 or self.workers < 2 or not self._pool_lock.acquire(blocking=False):
            # A query, a single document, one worker, or another call holds the workers: the query session.
            for rows in batches:
                out[rows] = self._encode_batch([texts[i] for i in rows])
            return out
        try:
            self._embed_parallel(texts, batches[::-1], out)      # longest first: the last runs are short
        finally:
            self._pool_lock.release()
        return out

    def _embed_parallel(self, texts: list[str], batches: list[list[int]], out: np.ndarray) -> None:
        """Each worker thread takes the next batch from the shared queue and runs it on its own session."""
        sessions = self.worker_sessions()[:len(batches)]
        feeds = [self._feeds([texts[i] for i in rows]) for rows in batches]    # tokenized here, once
        queue = iter(range(len(batches)))
        take = threading.Lock()
        failures: list[BaseException] = []

        def work(session) -> None:
            while not failures:
                with take:
                    k = next(queue, None)
                if k is None:
                    return
                try:
                    out[batches[k]] = session.run(None, feeds[k])[0]
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                    failures.append(exc)

        threads = [threading.Thread(target=work, args=(s,), name=f"kb-embed-{n}", daemon=True)
                   for n, s in enumerate(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
