"""Making the ONNX file of a mean-pooled BERT sentence model (m3e-small), float32 and int8, and keeping it.

`torch.onnx.export` of the BERT encoder (eager attention, the pattern ONNX Runtime's fusions recognise)
followed by the sentence-transformers pipeline of m3e (mean pooling over the attention mask, then L2
normalization); then onnxruntime's transformer optimizer fuses it (`onnxruntime.transformers.optimizer.
optimize_model`, model_type "bert": EmbedLayerNormalization, one Attention op per layer, SkipLayerNorm,
BiasGelu); for int8, `onnxruntime.quantization.quantize_dynamic` of the fused file's MatMuls (7-bit weights
per output channel, activations quantized per call; the fused attention stays float32). `ensure_onnx`
caches the file in `<KB_HOME>/onnx/` with a manifest (SHA-256, source model files, RECIPE): a missing,
corrupted or stale file is made again, never loaded.

Running the file is kb/onnx_embed.py's; this module imports torch only while exporting.
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
RECIPE["int8"] = RECIPE["fp32"] + "; quantize_dynamic QInt8 per-channel reduce_range of MatMul (Attention float32)"
# The backend's part of the embedder's model id, which the index and sentence-store manifests record: a new
# int8 recipe gives other vectors, so it gets a new id and an index built by the old one is rebuilt.
MODEL_TAG = {"fp32": "onnx", "int8": "onnx-int8-w7"}
CACHE_MANIFEST = "onnx-manifest.json"


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

    The weights use 7 of their 8 bits (`reduce_range`). Without AVX-512 VNNI (an AMD EPYC with AVX2 only,
    2026-12-02), ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose 16-bit
    sum of two products saturates at full-range weights: the vectors' cosine to torch fell to 0.62-0.82
    (mean 0.71 over 300 article chunks) and the held-out dev set lost three out-of-scope refusals. With
    7-bit weights no sum can saturate, so every x86 CPU computes the same integers: cosine >= 0.996 on that
    machine, as on the VNNI one. (uint8 weights also avoid it, 0.9964 against 0.9962, through a slower
    kernel on VNNI CPUs.)

    The fused operators are outside ONNX's shape inference, hence DefaultTensorType float. Returns the
    quantized operator counts."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _QuietOnnxruntime():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul"],
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
        entry = read_cache_manifest(cache).get(variant)
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
        manifest = read_cache_manifest(cache)
        manifest[variant] = {"file": path.name, "sha256": digest, "source": source, "operators": fused,
                             "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        tmp_manifest = cache / f".{CACHE_MANIFEST}.tmp"
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp_manifest, cache / CACHE_MANIFEST)
        log.info("made %s in %.1f s", path, time.perf_counter() - t0)
        return path


def read_cache_manifest(cache: Path) -> dict:
    """The cache manifest's entries by variant; {} when it is missing or unreadable."""
    try:
        data = json.loads((cache / CACHE_MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


