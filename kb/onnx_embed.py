"""ONNX Runtime embedders for a mean-pooled BERT sentence model (m3e-small): float32 and int8.

    KB_EMBED_BACKEND=onnx-int8 kb index        # or onnx (float32), or torch (sentence-transformers)

The ONNX file is made locally, on first use, from the model folder (the one the torch backend loads):
`torch.onnx.export` of the BERT encoder (eager attention, the pattern ONNX Runtime's fusions recognise)
followed by the sentence-transformers pipeline of m3e (mean pooling over the attention mask, then L2
normalization); then onnxruntime's transformer optimizer fuses it (`onnxruntime.transformers.optimizer.
optimize_model`, model_type "bert": EmbedLayerNormalization, one Attention op per layer, SkipLayerNorm,
BiasGelu); for int8, `onnxruntime.quantization.quantize_dynamic` of the fused file's MatMuls (int8 weights
per output channel, activations quantized per call; this CPU has AVX-512 VNNI; the fused attention stays
float32). It is cached in `<KB_HOME>/onnx/` beside the index, with a small manifest that
records its SHA-256, the model files it was made from and the recipe (RECIPE); a cached file that is
missing, corrupted, made from other weights or by another recipe is made again, never loaded. At run time
only onnxruntime and the model's own `tokenizer.json` (through `tokenizers`) are used: no torch import on
the query path.

Why not sentence-transformers' `backend="onnx"`: its export helpers need `optimum-onnx`, whose pins
downgrade transformers and sentence-transformers; exporting with torch.onnx keeps today's versions.

This module knows how to make, check and run the ONNX file; it knows nothing about chunks or indexes.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kb.embedding import Embedder, resolve_model
from kb.errors import ModelError
from kb.index import sha256_file

log = logging.getLogger("kb")

BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_BACKENDS = {"onnx": "fp32", "onnx-int8": "int8"}
EXPORT_VERSION = 2            # bump when the exported graph or the quantization settings change
OPSET = 17
# How the files are made; recorded in the cache manifest, so a file made by another recipe is made again.
RECIPE = {"fp32": "torch.onnx.export(attn_implementation=eager, opset 17) + mean pooling + L2; "
                  "onnxruntime.transformers.optimizer bert fusions (opt_level 0)"}
RECIPE["int8"] = RECIPE["fp32"] + "; quantize_dynamic QInt8 per-channel of MatMul (Attention float32)"
CACHE_MANIFEST = "onnx-manifest.json"


# Making the ONNX file --------------------------------------------------------------------------------

def model_settings(model_dir: Path) -> dict:
    """Max sequence length and pooling of a sentence-transformers folder, as its own pipeline uses them.

    A folder without modules.json (m3e-small as packaged) gets sentence-transformers' defaults: mean
    pooling, max length = min(max_position_embeddings, tokenizer model_max_length). Any pooling other
    than mean, or a module other than Transformer/Pooling/Normalize, is refused: the torch backend can
    run such a model, this one would silently embed it differently.
    """
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        raise ModelError(f"the ONNX backend supports BERT models only, {model_dir} is "
                         f"'{config.get('model_type')}'; use KB_EMBED_BACKEND=torch")
    limits = [int(config.get("max_position_embeddings", 512))]
    tok_config = model_dir / "tokenizer_config.json"
    if tok_config.is_file():
        tmax = json.loads(tok_config.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(tmax, int) and tmax > 0:
            limits.append(tmax)
    max_len = min(limits)
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length") or max_len)
    modules = model_dir / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            kind = module.get("type", "").rsplit(".", 1)[-1]
            if kind == "Pooling":
                pooling = json.loads((model_dir / module["path"] / "config.json").read_text(encoding="utf-8"))
                modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True]
                if pooling.get("pooling_mode", "mean") != "mean" and modes != ["pooling_mode_mean_tokens"] \
                        or modes not in ([], ["pooling_mode_mean_tokens"]):
                    raise ModelError(f"the ONNX backend supports mean pooling only ({modes}); "
                                     f"use KB_EMBED_BACKEND=torch")
            elif kind not in ("Transformer", "Normalize"):
                raise ModelError(f"the ONNX backend does not support the module {kind} of {model_dir}; "
                                 f"use KB_EMBED_BACKEND=torch")
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelError(f"{model_dir} has no tokenizer.json, which the ONNX backend needs; "
                         f"use KB_EMBED_BACKEND=torch")
    return {"max_seq_length": max_len}


def _source_files(model_dir: Path) -> dict[str, list[int]]:
    """The model files an export depends on, by (size, mtime): a changed file makes the cache stale."""
    out = {}
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        path = model_dir / name
        if path.is_file():
            st = path.stat()
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def export_onnx(model_dir: Path, out: Path) -> None:
    """Export encoder + mean pooling + L2 normalization to `out` (inputs input_ids, attention_mask,
    token_type_ids, int64 (batch, seq); output sentence_embedding, float32 (batch, dim))."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state      # (b, s, d)
            # sentence-transformers' Pooling(mean): sum of the unmasked token vectors / their count.
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    # Eager attention: the SDPA export hides the attention behind IsNaN/Where mask code that the
    # optimizer's fusion does not recognise (0 Attention ops fused instead of one per layer).
    bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    ids = torch.tensor([[101, 2769, 102, 0], [101, 2769, 4638, 102]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic["sentence_embedding"] = {0: "batch"}
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python branches in transformers' mask code; the mask is always passed, so
        # the traced branch is the one every call takes (the parity test checks padded and unpadded input).
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(bert), (ids, mask, torch.zeros_like(ids)), str(out), dynamo=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["sentence_embedding"], dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)


class _QuietOnnxruntime:
    """The optimizer and the quantizer log a line per tensor or fusion through the root logger; keep those
    out of ours (errors still pass)."""

    @staticmethod
    def filter(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR

    def __enter__(self):
        logging.getLogger().addFilter(self.filter)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self.filter)


def fuse_bert(src: Path, out: Path, model_dir: Path) -> dict[str, int]:
    """onnxruntime's transformer optimizer on the exported file: `out` gets the fused graph; returns the
    fused operator counts. Offline Python fusions only (opt_level 0): the session applies ONNX Runtime's
    own graph optimizations at load time, so the file stays runnable on any CPU."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    with _QuietOnnxruntime():
        model = optimize_model(str(src), model_type="bert", num_heads=int(config["num_attention_heads"]),
                               hidden_size=int(config["hidden_size"]), opt_level=0, use_gpu=False)
        fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        model.save_model_to_file(str(out))
    layers = int(config.get("num_hidden_layers", 0))
    if fused.get("Attention", 0) != layers:
        # Still a correct graph (the parity tests check the vectors), only slower: say so once.
        log.warning("the ONNX optimizer fused %d of %d attention layers of %s", fused.get("Attention", 0), layers,
                    model_dir)
    return fused


def quantize_int8(src: Path, out: Path) -> dict[str, int]:
    """Dynamic int8 quantization of the fused graph's MatMul weights (attention output and feed-forward),
    one scale per output channel (activations are quantized per call, uint8); the fused Attention (its QKV
    projection) stays float32. Quantizing it too (QAttention) was faster still, but lowered the cosine to
    torch (min 0.9963 against 0.9971 on 96 article chunks) and falsely refused one more held-out dev-set
    question (3 of 146, past the 0.02 goal; with the attention in float32 the dev-set figures equal
    float32's). Per-channel kept the cosine >= 0.996, per-tensor only 0.990; quantizing the embedding table
    (Gather) too shrinks the file 57 -> 22 MiB but lowers the cosine, and it is not where the time goes.
    The fused operators are outside ONNX's shape inference, hence DefaultTensorType float. Returns the
    quantized operator counts."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _QuietOnnxruntime():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=False, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    ops = [node.op_type for node in onnx.load(str(out), load_external_data=False).graph.node]
    return {op: ops.count(op) for op in ("MatMulInteger", "QAttention", "Attention") if op in ops}


_make_lock = threading.RLock()


def ensure_onnx(model_dir: Path, cache: Path, variant: str) -> Path:
    """The verified ONNX file of `variant` ("fp32" or "int8") for `model_dir` in `cache`, made if needed.

    A file is used only when the cache manifest names it, its SHA-256 matches, and it was made from the
    same model files with the same export version and recipe (RECIPE); otherwise it is made again (one
    log line saying why).
    The int8 file is quantized from the (verified or freshly made) float32 one.
    """
    assert variant in ("fp32", "int8"), variant
    model_dir, cache = Path(model_dir), Path(cache)
    path = cache / f"model-{variant}.onnx"
    source = {"model_dir": str(model_dir), "files": _source_files(model_dir), "export_version": EXPORT_VERSION,
              "recipe": RECIPE[variant]}
    with _make_lock:
        entry = _read_cache_manifest(cache).get(variant)
        if entry and entry.get("source") == source and path.is_file():
            if sha256_file(path) == entry.get("sha256"):
                return path
            log.warning("%s does not match its checksum in %s (corrupted or truncated); making it again",
                        path, CACHE_MANIFEST)
        elif entry:
            log.warning("%s is missing or was made from other model files or by another recipe; making it again",
                        path)
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="onnx-", dir=cache) as tmp:
            made = Path(tmp) / path.name
            fused = {}
            try:
                if variant == "fp32":
                    exported = Path(tmp) / "exported.onnx"
                    export_onnx(model_dir, exported)
                    fused = fuse_bert(exported, made, model_dir)
                    exported.unlink()
                else:
                    fused = quantize_int8(ensure_onnx(model_dir, cache, "fp32"), made)
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - an export failure becomes one clear message
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ModelError(f"cannot export {model_dir} to ONNX ({variant}): {first[:300]}; "
                                 f"use KB_EMBED_BACKEND=torch") from None
            with open(made, "rb+") as f:
                os.fsync(f.fileno())
            digest = sha256_file(made)
            os.replace(made, path)
        manifest = _read_cache_manifest(cache)
        manifest[variant] = {"file": path.name, "sha256": digest, "source": source, "operators": fused,
                             "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        tmp_manifest = cache / f".{CACHE_MANIFEST}.tmp"
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp_manifest, cache / CACHE_MANIFEST)
        log.info("made %s in %.1f s", path, time.perf_counter() - t0)
        return path


def _read_cache_manifest(cache: Path) -> dict:
    try:
        data = json.loads((cache / CACHE_MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# Running it ------------------------------------------------------------------------------------------

def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class OnnxEmbedder(Embedder):
    """m3e-small (or another mean-pooled BERT folder) through ONNX Runtime, float32 or int8.

    `model_id` is the model plus the backend ("m3e-small@onnx-int8"): the index manifest records it, so
    vectors of one backend are never mixed with another's (a backend switch rebuilds the index).

    One text per run by default: dynamic int8 quantization scales the activations per tensor, so in a
    padded batch a text's vector would depend on its batch companions (cosine 0.996 to itself alone);
    one at a time, a passage embeds exactly like the same text as a query, whatever else is indexed with
    it, and no time goes to padding. Float32 batches are independent of their neighbours (cosine >= 1 - 1e-6
    with the fused graph) but were no faster on the 2-core machine: 64 chunks, 3.9 chunks/s at batch 1,
    3.2 at 8; 256 answer sentences 25 / 29 per s at 1 / 16 (interleaved, load average 7-9).

    Session: intra-op threads = the CPUs this process may use, with spinning off. ONNX Runtime's workers
    otherwise spin waiting for work, which on a busy machine takes the cores the other worker needs: with
    spinning off the build ran 1.3x (float32) and 2.0x (int8) faster under a load average of 9, and query
    latency did not change (p50 16.0 vs 16.9 ms float32, 7.0 vs 7.2 ms int8).
    """

    def __init__(self, model: str, cache_dir: Path, backend: str = "onnx-int8", query_prompt: str | None = None,
                 passage_prompt: str | None = None, batch_size: int | None = None, threads: int | None = None):
        if backend not in ONNX_BACKENDS:
            raise ModelError(f"unknown ONNX backend '{backend}' (one of {', '.join(ONNX_BACKENDS)})")
        self.model = model
        self.backend = backend
        self.variant = ONNX_BACKENDS[backend]
        base = model if not Path(model).expanduser().exists() else str(Path(model).expanduser().resolve())
        self.model_id = f"{base}@{backend}"
        self.cache_dir = Path(cache_dir)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size or 1
        self.threads = threads
        self.show_progress = None        # interface parity with SentenceTransformerEmbedder (no bar here)
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def onnx_path(self) -> Path:
        return self.cache_dir / f"model-{self.variant}.onnx"

    def load(self) -> None:
        """Make or verify the ONNX file, then open the session and the tokenizer (once)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
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
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads or _usable_cpus()
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - checked by hash, so this is an onnxruntime problem
                raise ModelError(f"onnxruntime cannot load {path}: {str(exc)[:300]}") from None
            self._inputs = {i.name for i in session.get_inputs()}
            self._dimension = int(session.get_outputs()[0].shape[1])
            self._tokenizer = tokenizer
            self._session = session

    @property
    def dimension(self) -> int:
        self.load()
        return self._dimension

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), np.int64)
        mask = np.zeros((len(texts), width), np.int64)
        types = np.zeros((len(texts), width), np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]

    def _embed(self, texts, is_query):
        self.load()
        prompt = self.query_prompt if is_query else self.passage_prompt
        if prompt:
            texts = [prompt + t for t in texts]
        # Length-sorted batches pad little; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dimension), np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._encode_batch([texts[i] for i in rows])
        return out
