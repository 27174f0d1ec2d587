"""The persisted vector index: chunks, their vectors in a FAISS inner-product index, and a manifest.

Layout of the data directory (`Config.home`):

    manifest.json        the root: format, model id, dimension, chunker settings, per article the content
                         hash and chunk ids, the current generation folder and a SHA-256 per file in it
    gen-XXXXXXXX/        one generation: chunks.json (rows in index order) and faiss.index (IndexFlatIP)

A save writes a new generation folder, flushes it, then replaces manifest.json atomically (temporary
file + os.replace): a crash at any point leaves the previous manifest pointing at the previous, complete
generation. A load checks every file against the manifest's checksums and shapes and raises
`IndexError_` on any mismatch, so a corrupted or half-written index is never served. Nothing is
unpickled: chunks are JSON and FAISS reads its own format. The flat index keeps the exact vectors, so an
incremental update reuses the rows of unchanged articles.

This module knows FAISS and files; it treats the model id as an opaque string and never embeds.
"""
from __future__ import annotations

import dataclasses
import fcntl
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from kb.chunking import Chunk
from kb.errors import IndexError_, IndexMissing

FORMAT = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks.json"
VECTORS = "faiss.index"


@dataclass(frozen=True)
class ArticleEntry:
    hash: str                      # content hash of the article file (Article.content_hash)
    title: str
    path: str
    chunk_ids: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    model: str                     # opaque model id (with the passage prompt, what produced the vectors)
    passage_prompt: str | None
    dimension: int
    chunker: dict                  # chunk size, overlap and chunker version
    articles: dict[str, ArticleEntry]
    generation: str = ""
    files: dict[str, str] = field(default_factory=dict)      # file name -> SHA-256
    created: str = ""
    format: int = FORMAT

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["articles"] = {slug: {**dataclasses.asdict(e), "chunk_ids": list(e.chunk_ids)}
                            for slug, e in self.articles.items()}
        return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format') if isinstance(data, dict) else data!r}")
        articles = {slug: ArticleEntry(e["hash"], e["title"], e["path"], tuple(e["chunk_ids"]))
                    for slug, e in data["articles"].items()}
        return cls(model=data["model"], passage_prompt=data["passage_prompt"], dimension=int(data["dimension"]),
                   chunker=data["chunker"], articles=articles, generation=data["generation"],
                   files=data["files"], created=data["created"], format=data["format"])


class VectorIndex:
    """Chunks and their normalized vectors, row i of one being row i of the other."""

    version: str | None = None     # a shared store's version this snapshot was read at (kb/store.py); None: files

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray, manifest: Manifest):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(chunks), manifest.dimension)
        self.chunks = list(chunks)
        self.manifest = manifest
        self.faiss = faiss.IndexFlatIP(manifest.dimension)
        self.faiss.add(vectors)
        self._vectors = vectors            # 2 KiB per chunk; kept for exact component scores and reuse
        self._rows_by_slug: dict[str, list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            self._rows_by_slug.setdefault(chunk.slug, []).append(row)

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32, row i the vector of chunk i."""
        return self._vectors

    def rows(self, slug: str) -> list[int]:
        return list(self._rows_by_slug.get(slug, ()))

    def chunks_of(self, slug: str) -> list[Chunk]:
        return [self.chunks[r] for r in self._rows_by_slug.get(slug, ())]

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k rows with the largest inner product with `query`, best first, as (row, score)."""
        k = min(k, len(self))
        if k <= 0:
            return []
        scores, rows = self.faiss.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Inner product of `query` with every row (for component scores of hits outside the top k)."""
        return self.vectors @ np.asarray(query, dtype=np.float32)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (the index files and the cached ONNX model are checked by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path` and move it over `path` (`os.replace`), so a
    reader sees the old or the new file, never half of one. On OSError (a read-only folder, a full disk)
    the temporary file is removed and the error raised: the caller's cache then just is not kept."""
    tmp = None
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
                                         encoding="utf-8") as f:
            tmp = Path(f.name)
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _chunk_from_json(d: dict) -> Chunk:
    return Chunk(**{**d, "heading_path": tuple(d["heading_path"])})


def exists(home: Path) -> bool:
    return (Path(home) / MANIFEST).is_file()


def read_manifest(home: Path) -> Manifest:
    path = Path(home) / MANIFEST
    if not path.is_file():
        raise IndexMissing(f"no index in {home}; run `kb index`")
    try:
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise IndexError_(f"{path} is corrupted or truncated ({type(exc).__name__}: {exc})") from None


def verify(home: Path) -> Manifest:
    """The manifest, once every file it names is present with its checksum; IndexMissing/IndexError_."""
    home = Path(home)
    manifest = read_manifest(home)
    folder = home / manifest.generation
    for name in (CHUNKS, VECTORS):
        path = folder / name
        if not path.is_file():
            raise IndexError_(f"{path} is missing (half-written or deleted index)")
        if sha256_file(path) != manifest.files.get(name):
            raise IndexError_(f"{path} does not match its checksum in the manifest (corrupted or truncated)")
    return manifest


def load(home: Path) -> VectorIndex:
    """The index in `home`, verified against its manifest; IndexMissing or IndexError_ otherwise."""
    home = Path(home)
    manifest = verify(home)
    folder = home / manifest.generation
    try:
        chunks = [_chunk_from_json(d) for d in json.loads((folder / CHUNKS).read_text(encoding="utf-8"))]
        flat = faiss.read_index(str(folder / VECTORS))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexError_(f"{folder} cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    if flat.ntotal != len(chunks) or flat.d != manifest.dimension or flat.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexError_(f"{folder}: {flat.ntotal} vectors of dimension {flat.d} for {len(chunks)} chunks "
                          f"of dimension {manifest.dimension}")
    expected = [cid for slug in sorted(manifest.articles) for cid in manifest.articles[slug].chunk_ids]
    if [c.id for c in chunks] != expected:
        raise IndexError_(f"{folder}: chunk ids differ from the manifest")
    vectors = flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.zeros((0, flat.d), np.float32)
    return VectorIndex(chunks, vectors, manifest)


def build(chunks: list[Chunk], vectors: np.ndarray, manifest: Manifest) -> VectorIndex:
    """An in-memory index; rows are put in manifest order (articles by slug, chunks by position)."""
    order = {cid: i for i, cid in enumerate(
        cid for slug in sorted(manifest.articles) for cid in manifest.articles[slug].chunk_ids)}
    assert len(order) == len(chunks) == len(vectors), \
        f"{len(chunks)} chunks, {len(vectors)} vectors, {len(order)} chunk ids in the manifest"
    perm = sorted(range(len(chunks)), key=lambda i: order[chunks[i].id])
    return VectorIndex([chunks[i] for i in perm], np.asarray(vectors, np.float32)[perm], manifest)


def save(home: Path, index: VectorIndex) -> Manifest:
    """Write `index` as a new generation, then switch the manifest to it atomically; returns the manifest.

    Writers are serialized by a lock file. The generation the old manifest named is kept one round, so a
    reader that read the old manifest just before the switch can still open its files.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            previous = read_manifest(home).generation
        except IndexError_:
            previous = None
        folder = Path(tempfile.mkdtemp(prefix="gen-", dir=home))
        try:
            chunks_json = json.dumps([dataclasses.asdict(c) for c in index.chunks], ensure_ascii=False)
            _fsync_write(folder / CHUNKS, chunks_json.encode("utf-8"))
            faiss.write_index(index.faiss, str(folder / VECTORS))
            with open(folder / VECTORS, "rb+") as f:
                os.fsync(f.fileno())
            manifest = dataclasses.replace(
                index.manifest, generation=folder.name,
                files={name: sha256_file(folder / name) for name in (CHUNKS, VECTORS)},
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            tmp = home / f".{MANIFEST}.tmp"
            _fsync_write(tmp, manifest.to_json().encode("utf-8"))
            os.replace(tmp, home / MANIFEST)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Generations that no manifest names (older ones, or the remains of a crashed build) go.
        for path in home.glob("gen-*"):
            if path.name not in (folder.name, previous):
                shutil.rmtree(path, ignore_errors=True)
    index.manifest = manifest
    return manifest
