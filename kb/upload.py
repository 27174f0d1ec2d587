"""Adding or replacing an article from an uploaded file: validated first, then written atomically.

An upload is accepted only when every check passes, so a rejected upload changes nothing on disk:
the name is a bare `<slug>.md` (no folder part, `[a-z0-9-]+\\.md`, so it cannot leave the articles folder),
the size is at most `MAX_UPLOAD_BYTES`, the bytes are UTF-8, and `kb.articles.parse_article` accepts the
front matter (its slug must equal the file name). The file is then written to a temporary name in the same
folder and moved over the target with `os.replace`, so readers see the old or the new file, never half of
one; the previous version is copied to `backups_dir` first.

`delete_article` moves an article's file into the backups folder (never anything outside the articles folder).
This module knows files and validation; re-indexing after a save or delete is the caller's job (the engine).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kb.articles import REQUIRED_FIELDS, Article, parse_article
from kb.errors import ArticleError, KBError

MAX_UPLOAD_BYTES = 512 * 1024
_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*\.md")


class UploadError(KBError):
    """An uploaded file is refused; the message says why. Nothing was written."""


@dataclass(frozen=True)
class SavedArticle:
    article: Article
    path: Path
    replaced: bool
    backup: Path | None


def check_name(name: str) -> str:
    """The bare file name, or UploadError: no folders, no '..', only `[a-z0-9-]+.md`."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise UploadError(f"文件名 {name!r} 不可用：只能是不含目录的 <slug>.md，例如 python-gc.md")
    if not _NAME.fullmatch(name):
        if not name.lower().endswith(".md"):
            raise UploadError(f"只接受 Markdown 文件（.md），收到 {name!r}")
        raise UploadError(f"文件名 {name!r} 不可用：只能由小写字母、数字和 '-' 组成，并以 .md 结尾")
    return name


def validate_upload(name: str, data: bytes) -> Article:
    """The parsed article, or UploadError saying what is wrong (name, size, encoding, front matter)."""
    name = check_name(name)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"文件过大：{len(data) / 1024:.0f} KiB，上限 {MAX_UPLOAD_BYTES // 1024} KiB")
    if not data.strip():
        raise UploadError("文件是空的")
    if b"\x00" in data:
        raise UploadError("这不是文本文件（含有 NUL 字节），只接受 UTF-8 编码的 Markdown")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UploadError(f"不是 UTF-8 编码（第 {line} 行，字节 {exc.start}）") from None
    missing = _missing_fields(raw)
    if missing:
        raise UploadError(f"front matter 缺少字段：{'、'.join(missing)}（必须有 {'、'.join(REQUIRED_FIELDS)}）")
    try:
        return parse_article(raw, name)
    except ArticleError as exc:
        raise UploadError(f"文章格式有误：{exc}") from None


def _missing_fields(raw: str) -> list[str]:
    """The required front-matter fields a file lacks; [] when it has them all or its front matter is unreadable
    (parse_article then says what is wrong with it)."""
    from kb.sources import split_front_matter
    try:
        meta, _body, _line = split_front_matter(raw.replace("\r\n", "\n").lstrip("\ufeff"), "upload")
    except ArticleError:
        return []
    if not meta:
        return list(REQUIRED_FIELDS)
    return [f for f in REQUIRED_FIELDS if f not in meta]


def save_article(articles_dir: Path, name: str, data: bytes, backups_dir: Path) -> SavedArticle:
    """Validate, back up the file being replaced, then write atomically. Raises UploadError before any write."""
    article = validate_upload(name, data)
    articles_dir = Path(articles_dir)
    target = articles_dir / name
    # Belt and braces: the name check already forbids this, but the write must never leave the folder.
    if target.resolve().parent != articles_dir.resolve():
        raise UploadError(f"文件名 {name!r} 会写到文章目录之外")
    replaced = target.exists()
    backup = None
    if replaced:
        if target.read_bytes() == data:
            return SavedArticle(article, target, True, None)
        backups_dir = Path(backups_dir)
        backups_dir.mkdir(parents=True, exist_ok=True)
        backup = backups_dir / f"{target.stem}.{time.strftime('%Y%m%d-%H%M%S')}.{time.time_ns() % 10**6:06d}.md"
        backup.write_bytes(target.read_bytes())
    tmp = articles_dir / f".{name}.{os.getpid()}.tmp"   # not *.md: never picked up as an article
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return SavedArticle(article, target, replaced, backup)


def delete_article(article: Article, articles_dir: Path, backups_dir: Path) -> Path:
    """Move an article's file into `backups_dir` (the backup is the file itself); returns the backup path.

    Only a file inside `articles_dir` is ever moved. Re-indexing afterwards is the caller's job.
    """
    from kb.security import is_inside
    path = Path(article.path)
    if not is_inside(path, articles_dir) or path.suffix not in (".md", ".markdown"):
        raise UploadError(f"《{article.title}》的文件不在文章目录里，不能删除")
    if not path.is_file():
        raise UploadError(f"《{article.title}》的文件已经不存在了")
    backups_dir = Path(backups_dir)
    backups_dir.mkdir(parents=True, exist_ok=True)
    backup = backups_dir / f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.{time.time_ns() % 10**6:06d}.deleted{path.suffix}"
    backup.write_bytes(path.read_bytes())       # copy first: a failure here leaves the article in place
    path.unlink()
    return backup
