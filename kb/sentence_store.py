"""Sentence vectors for extractive answers, computed at index time and stored beside the index.

    <KB_HOME>/sentences/manifest.json       model id, sentence count, dimension, SHA-256 of the two files
    <KB_HOME>/sentences/texts-<sha8>.json   the sentences (kb.sentences.sentence_texts of the indexed chunks)
    <KB_HOME>/sentences/vectors-<sha8>.npy  float32 (n, dim), row i the vector of sentence i (no pickle)

`update` embeds only the sentences not stored yet for this model (an incremental index re-embeds only the
sentences of changed articles), writes the two files under new names, then replaces the manifest
atomically; files no manifest names are removed. `load` checks both files against the manifest's
SHA-256 and returns None (with one log line) when anything is missing, corrupted or made by another
model: the answers then embed on demand and the next `update` writes a fresh copy. Loading fills
`kb.sentences.CACHE`, so composing an answer embeds nothing.

This module knows files and the sentence cache; it does not split sentences or compose answers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kb.index import sha256_file
from kb.sentences import CACHE, sentence_texts

log = logging.getLogger("kb")

FOLDER = "sentences"
MANIFEST = "manifest.json"
BATCH = 64
Progress = Callable[[int, int, str], None]


@dataclass
class SentenceSummary:
    embedded: int = 0              # sentences embedded by this update
    total: int = 0                 # sentences stored
    seconds: float = 0.0


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def load(home: Path, model_id: str) -> tuple[list[str], np.ndarray] | None:
    """The stored (sentences, vectors) of `model_id`, verified; None when there is no usable copy."""
    folder = Path(home) / FOLDER
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); sentence vectors will be computed again", folder / MANIFEST, exc)
        return None
    if not isinstance(manifest, dict) or manifest.get("model") != model_id:
        return None
    try:
        texts_path, vectors_path = folder / manifest["texts"], folder / manifest["vectors"]
        for path, key in ((texts_path, "texts_sha256"), (vectors_path, "vectors_sha256")):
            if sha256_file(path) != manifest[key]:
                log.warning("%s does not match its checksum (corrupted or truncated); sentence vectors will "
                            "be computed again", path)
                return None
        texts = json.loads(texts_path.read_text(encoding="utf-8"))
        vectors = np.load(vectors_path, allow_pickle=False)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("sentence vectors in %s are unusable (%s: %s); they will be computed again",
                    folder, type(exc).__name__, str(exc)[:200])
        return None
    if not isinstance(texts, list) or vectors.dtype != np.float32 or vectors.shape != (len(texts), manifest["dimension"]):
        log.warning("sentence vectors in %s do not match their texts; they will be computed again", folder)
        return None
    return texts, vectors


def preload(home: Path, model_id: str) -> int:
    """Put the stored sentence vectors of `model_id` into the answer cache; the number put (0: none)."""
    stored = load(home, model_id)
    if stored is None:
        return 0
    CACHE.put(model_id, *stored)
    return len(stored[0])


def update(home: Path, embedder, chunk_texts: Sequence[str], progress: Progress | None = None) -> SentenceSummary:
    """Embed and store the sentences of `chunk_texts` (only those not stored yet), and fill the cache."""
    t0 = time.perf_counter()
    report = progress or (lambda done, total, message: None)
    model_id = embedder.model_id
    texts = sentence_texts(chunk_texts)
    known: dict[str, np.ndarray] = {}
    stored = load(home, model_id)
    if stored is not None:
        known = dict(zip(*stored))
    todo = [t for t in texts if t not in known]
    report(0, len(todo), f"embedding {len(todo)} sentence(s)")
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        for t, v in zip(batch, embedder.embed_documents(batch)):
            known[t] = v
        report(start + len(batch), len(todo), f"embedded {start + len(batch)}/{len(todo)} sentence(s)")
    dimension = embedder.dimension
    vectors = np.stack([known[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, dimension), np.float32)
    if todo or stored is None or len(stored[0]) != len(texts):
        _save(Path(home) / FOLDER, model_id, texts, vectors)
    CACHE.put(model_id, texts, vectors)
    return SentenceSummary(len(todo), len(texts), time.perf_counter() - t0)


def _save(folder: Path, model_id: str, texts: list[str], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text_bytes = json.dumps(texts, ensure_ascii=False).encode("utf-8")
    tmp = folder / ".vectors.tmp.npy"
    np.save(tmp, vectors, allow_pickle=False)
    vec_sha = sha256_file(tmp)
    text_sha = hashlib.sha256(text_bytes).hexdigest()
    texts_name, vectors_name = f"texts-{text_sha[:8]}.json", f"vectors-{vec_sha[:8]}.npy"
    _write(folder / texts_name, text_bytes)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / vectors_name)
    manifest = {"model": model_id, "count": len(texts), "dimension": int(vectors.shape[1]),
                "texts": texts_name, "texts_sha256": text_sha, "vectors": vectors_name, "vectors_sha256": vec_sha}
    _write(folder / f".{MANIFEST}.tmp", json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    os.replace(folder / f".{MANIFEST}.tmp", folder / MANIFEST)
    for path in folder.iterdir():
        if path.name not in (MANIFEST, texts_name, vectors_name):
            path.unlink(missing_ok=True)
