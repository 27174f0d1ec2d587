"""The chunks' BM25 tokens, kept in the data folder so that a restart does not run jieba over the corpus.

Building the BM25 side of a retriever cuts every chunk with jieba: about 1.5 s for the twelve articles on
an idle 2-core machine and several seconds under load, paid by the first question after every start
(the app's warm-up pays it in the background, but a reader who asks at once waits for it). The tokens of
a text depend only on the text and on the tokenizer, so they are stored in `$KB_HOME/bm25-tokens.json`,
keyed by the SHA-1 of the text, under a tokenizer id (jieba's version, the stop words, TOKENIZER_VERSION).
A file written by another tokenizer, or one that cannot be read, is ignored (one log line) and written
again; only the texts of the current corpus are kept. Writes are atomic (`kb.index.replace_text`: a temporary
file and `os.replace`), so replicas sharing a data folder read the old or the new file, never half of one. With a
PostgreSQL store (KB_DATABASE_URL) replicas keep no files, so kb.retrieval passes no folder: no cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from kb.index import replace_text
from kb.text import STOPWORDS, tokenize

log = logging.getLogger("kb")

FILE = "bm25-tokens.json"
TOKENIZER_VERSION = 1          # bump when kb.text.tokenize changes what it returns


def tokenizer_id() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        jieba_version = version("jieba")
    except PackageNotFoundError:
        jieba_version = "unknown"
    stop = hashlib.sha1("\n".join(sorted(STOPWORDS)).encode()).hexdigest()[:12]
    return f"kb.text.tokenize/{TOKENIZER_VERSION} jieba/{jieba_version} stopwords/{stop}"


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _read(path: Path, expected_id: str) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("tokenizer") != expected_id:
            log.info("BM25 token cache %s was made by another tokenizer; cutting the chunks again", path)
            return {}
        tokens = data["tokens"]
        if not isinstance(tokens, dict) or not all(isinstance(v, list) for v in tokens.values()):
            raise ValueError("tokens is not a mapping of lists")
        return tokens
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("BM25 token cache %s is unreadable (%s); cutting the chunks again", path, str(exc)[:120])
        return {}


def corpus_tokens(texts: list[str], home: Path | None) -> list[list[str]]:
    """`kb.text.tokenize` of each text, from the cache in `home` where it holds them (None: no cache)."""
    if home is None:
        return [tokenize(t) for t in texts]
    home = Path(home)
    expected = tokenizer_id()
    cached = _read(home / FILE, expected)
    keys = [_key(t) for t in texts]
    out, missed = [], 0
    for text, key in zip(texts, keys):
        tokens = cached.get(key)
        if tokens is None:
            tokens, missed = tokenize(text), missed + 1
        out.append(tokens)
    if missed or len(cached) != len(set(keys)):
        _write(home / FILE, expected, dict(zip(keys, out)))
    return out


def _write(path: Path, tokenizer: str, tokens: dict[str, list[str]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, json.dumps({"tokenizer": tokenizer, "tokens": tokens}, ensure_ascii=False))
    except OSError as exc:              # a read-only data folder: search works, the next start cuts again
        log.warning("cannot write the BM25 token cache %s: %s", path, exc)
