"""Articles: YAML front matter plus Markdown, parsed into sections with heading paths and anchors.

This module knows the article file format (front matter fields, fenced code conventions, headings) and
nothing about chunking, embedding or rendering. Anchors computed here are the ones the UI links to.

Code fence conventions used by the articles (and checked by tests/test_articles.py):
    ```python               runnable in a fresh interpreter
    ```python file=NAME.py  a file listing written next to the runnable blocks, not run itself
    ```python no-run        shown only (GPU, several processes, interactive)
    ```text                 directly after a runnable block: its exact expected stdout
    ```python min=3.12      version marker (also max=3.12, both inclusive, on python, console and text
                            blocks): the block is checked only under interpreters in that range
    ```text max=3.12        a marked text block anywhere after a runnable block (before the next one) is
                            that block's output for the versions it admits; see CodeBlock.expected_for
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from demos.registry import DEMO_IDS
from kb.errors import ArticleError

REQUIRED_FIELDS = ("title", "slug", "date", "tags", "summary", "demos")
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_VERSION_OPT = re.compile(r"^(min|max)=(\d+)\.(\d+)$")

Version = tuple[int, int]


def _admits(lo: Version | None, hi: Version | None, version: Version) -> bool:
    return (lo is None or tuple(version[:2]) >= lo) and (hi is None or tuple(version[:2]) <= hi)


@dataclass(frozen=True)
class CodeBlock:
    lang: str
    code: str
    line: int                      # 1-based line of the opening fence in the file
    file: str | None = None        # `file=NAME` listing
    no_run: bool = False
    expected_output: str | None = None
    info: str = ""                 # the whole info string after the opening fence
    min_version: Version | None = None   # `min=3.12`: checked only under Python >= 3.12
    max_version: Version | None = None   # `max=3.12`: checked only under Python <= 3.12
    # Every output block of a runnable block: (text, min, max), the unmarked one directly after it first.
    outputs: tuple[tuple[str, Version | None, Version | None], ...] = ()

    def admits(self, version: Version) -> bool:
        """Whether the block's version marker admits Python `version` (major, minor)."""
        return _admits(self.min_version, self.max_version, version)

    def expected_for(self, version: Version) -> str | None:
        """The shown output for Python `version`: the first output block whose marker admits it."""
        return next((text for text, lo, hi in self.outputs if _admits(lo, hi, version)), None)

    @property
    def fenced(self) -> str:
        """The block as Markdown, fences included."""
        return f"```{self.info}\n{self.code}\n```"

    @property
    def runnable(self) -> bool:
        return self.lang == "python" and not self.no_run and self.file is None


@dataclass(frozen=True)
class Section:
    anchor: str
    heading: str
    level: int                     # 1 for the untitled introduction, else the number of '#'
    path: tuple[str, ...]          # headings from the article title down to this section
    text: str                      # Markdown of the section body, heading line excluded
    line: int                      # 1-based line of the heading in the file


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    date: str
    tags: tuple[str, ...]
    summary: str
    demos: tuple[str, ...]
    body: str
    path: str
    content_hash: str
    body_line: int                 # 1-based file line where the body starts
    sections: tuple[Section, ...] = field(default=())
    page: str = ""                 # the post's path on the blog (kb/sources.py), "" when it has none

    def section(self, anchor: str) -> Section | None:
        return next((s for s in self.sections if s.anchor == anchor), None)


def slugify_heading(text: str) -> str:
    """GitHub-style anchor: lower case, inline markup and punctuation dropped, spaces to '-'.

    CJK characters are kept as they are, so `## 列表的过度分配（over-allocation）` becomes
    `列表的过度分配over-allocation`.
    """
    text = re.sub(r"[`*_~\[\]]|\$", "", text).strip().lower()
    out = []
    for ch in text:
        if ch.isspace():
            out.append("-")
        elif ch == "-" or ch.isalnum() or unicodedata.category(ch).startswith("L"):
            out.append(ch)
    return re.sub(r"-{2,}", "-", "".join(out)).strip("-") or "section"


def _split_front_matter(raw: str, path: str) -> tuple[dict, str, int]:
    lines = raw.split("\n")
    if not lines or lines[0].strip() != "---":
        raise ArticleError(path, "the file must start with a '---' line opening the YAML front matter", 1)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise ArticleError(path, "the front matter is never closed by a '---' line", 1) from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArticleError(path, f"front matter is not valid YAML: {problem}", line) from None
    if not isinstance(meta, dict):
        raise ArticleError(path, "front matter must be a YAML mapping of fields", 2)
    return meta, "\n".join(lines[end + 1:]), end + 2


def _field_line(raw: str, name: str) -> int:
    for i, line in enumerate(raw.split("\n"), start=1):
        if line.startswith(f"{name}:"):
            return i
    return 2


def _validate(meta: dict, raw: str, path: str) -> dict:
    missing = [f for f in REQUIRED_FIELDS if f not in meta]
    if missing:
        raise ArticleError(path, f"front matter lacks the field(s) {', '.join(missing)}", 2)
    for name in ("title", "slug", "summary"):
        if not isinstance(meta[name], str) or not meta[name].strip():
            raise ArticleError(path, f"'{name}' must be a non-empty string", _field_line(raw, name))
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", meta["slug"]):
        raise ArticleError(path, "'slug' must be lower-case letters, digits and '-'", _field_line(raw, "slug"))
    date = meta["date"]
    if isinstance(date, _dt.date):
        date = date.isoformat()
    elif not (isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
        raise ArticleError(path, "'date' must be an ISO date (YYYY-MM-DD)", _field_line(raw, "date"))
    for name in ("tags", "demos"):
        value = meta[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArticleError(path, f"'{name}' must be a list of strings", _field_line(raw, name))
    unknown = [d for d in meta["demos"] if d not in DEMO_IDS]
    if unknown:
        raise ArticleError(path, f"unknown demo id(s) {', '.join(unknown)}", _field_line(raw, "demos"))
    return {**meta, "date": date}


def iter_blocks(body: str, first_line: int = 1):
    """Yield (kind, start, end) for fenced code ('code') and display math ('math') spans of `body`.

    start/end are 0-based line indexes into body.split('\\n'), end inclusive. An unclosed fence runs to
    the end of the body, as Markdown renderers treat it.
    """
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = _FENCE.match(stripped)
        if m:
            fence = m.group(1)
            j = i + 1
            while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                          and lines[j].strip().strip(fence[0]) == ""):
                j += 1
            yield "code", i, min(j, len(lines) - 1)
            i = j + 1
            continue
        if stripped.startswith("$$"):
            if stripped != "$$" and stripped.endswith("$$") and len(stripped) > 4:
                yield "math", i, i
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not lines[j].strip().endswith("$$"):
                j += 1
            yield "math", i, min(j, len(lines) - 1)
            i = j + 1
            continue
        i += 1


def _fence_versions(opts: list[str]) -> tuple[Version | None, Version | None]:
    found: dict[str, Version] = {}
    for opt in opts:
        m = _VERSION_OPT.match(opt)
        if m:
            found[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return found.get("min"), found.get("max")


def parse_code_blocks(body: str, first_line: int = 1) -> list[CodeBlock]:
    """Every fenced block of a Markdown `body` (an article's, a section's or a chunk's text).

    A block directly followed (only blank lines between) by a ```text block gets that block as its
    `expected_output`; `line` counts from `first_line`, the file line of the body's first line. Text
    blocks with a version marker (`min=`/`max=`) that come later, before the next non-text block, are
    further outputs of the same block for those versions (`outputs`, `expected_for`).
    """
    lines = body.split("\n")
    spans = [(s, e) for kind, s, e in iter_blocks(body) if kind == "code"]
    raw_infos = [_FENCE.match(lines[s].strip()).group(2).strip() for s, _e in spans]
    infos = [info.split() for info in raw_infos]
    blocks: list[CodeBlock] = []
    for n, (s, e) in enumerate(spans):
        words = infos[n]
        lang = words[0].lower() if words else ""
        opts = words[1:]
        file = next((o.split("=", 1)[1] for o in opts if o.startswith("file=")), None)
        lo, hi = _fence_versions(opts)
        expected = None
        outputs = []
        if lang != "text":
            for m in range(n + 1, len(spans)):
                ms, me = spans[m]
                if infos[m][:1] != ["text"]:
                    break
                text = "\n".join(lines[ms + 1:me])
                mlo, mhi = _fence_versions(infos[m][1:])
                if m == n + 1 and all(not b.strip() for b in lines[e + 1:ms]):
                    expected = text
                    outputs.append((text, mlo, mhi))
                elif (mlo, mhi) != (None, None):
                    outputs.append((text, mlo, mhi))
        blocks.append(CodeBlock(lang=lang, code="\n".join(lines[s + 1:e]), line=first_line + s,
                                info=raw_infos[n], file=file, no_run="no-run" in opts,
                                expected_output=expected, min_version=lo, max_version=hi,
                                outputs=tuple(outputs)))
    return blocks


def code_blocks(article: Article) -> list[CodeBlock]:
    return parse_code_blocks(article.body, article.body_line)


def _sections(title: str, body: str, body_line: int) -> tuple[Section, ...]:
    lines = body.split("\n")
    masked = set()
    for _kind, s, e in iter_blocks(body):
        masked.update(range(s, e + 1))
    heads = []
    for i, line in enumerate(lines):
        m = _HEADING.match(line) if i not in masked else None
        if m:
            heads.append((i, len(m.group(1)), m.group(2).strip()))
    sections: list[Section] = []
    seen: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    intro_end = heads[0][0] if heads else len(lines)
    intro = "\n".join(lines[:intro_end]).strip("\n")
    if intro.strip():
        sections.append(Section("intro", title, 1, (title,), intro, body_line))
    for n, (i, level, heading) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        anchor = slugify_heading(heading)
        if anchor in seen or anchor == "intro":
            seen[anchor] = seen.get(anchor, 0) + 1
            anchor = f"{anchor}-{seen[anchor]}"
        else:
            seen[anchor] = 0
        text = "\n".join(lines[i + 1:end]).strip("\n")
        sections.append(Section(anchor, heading, level, (title, *(h for _, h in stack)), text, body_line + i))
    return tuple(sections)


def parse_article(raw: str, path: str | Path) -> Article:
    path = str(path)
    raw = raw.replace("\r\n", "\n").lstrip("\ufeff")
    meta, body, body_line = _split_front_matter(raw, path)
    meta = _validate(meta, raw, path)
    stem = Path(path).stem
    if meta["slug"] != stem:
        raise ArticleError(path, f"slug '{meta['slug']}' differs from the file name '{stem}'",
                           _field_line(raw, "slug"))
    title = meta["title"].strip()
    return Article(
        slug=meta["slug"], title=title, date=meta["date"], tags=tuple(meta["tags"]),
        summary=meta["summary"].strip(), demos=tuple(meta["demos"]), body=body, path=path,
        content_hash=hashlib.sha256(raw.encode("utf-8")).hexdigest(), body_line=body_line,
        sections=_sections(title, body, body_line),
    )


def load_article(path: str | Path) -> Article:
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ArticleError(str(path), f"not valid UTF-8 (byte {exc.start})", line) from None
    return parse_article(raw, path)


def load_articles(folder: str | Path, permalink: str | None = None) -> tuple[list[Article], list[ArticleError]]:
    """Every article of `folder`, sorted by slug; unreadable files are returned as errors, not raised.

    `folder` is this project's articles folder or a blog tree (Hexo, Hugo, Jekyll, plain Markdown; see
    kb/sources.py); files in this project's format (every field of REQUIRED_FIELDS) are parsed strictly.
    `permalink` is the blog's permalink pattern (KB_PERMALINK) for the articles' `page`.
    """
    from kb.sources import load_posts
    folder = Path(folder)
    if not folder.is_dir():
        raise ArticleError(str(folder), "the articles folder does not exist")
    _layout, articles, errors = load_posts(folder, permalink)
    articles.sort(key=lambda a: a.slug)
    slugs = [a.slug for a in articles]
    dupes = {s for s in slugs if slugs.count(s) > 1}
    if dupes:
        errors.extend(ArticleError(a.path, f"duplicate slug '{a.slug}'") for a in articles if a.slug in dupes)
        articles = [a for a in articles if a.slug not in dupes]
    return articles, errors


def prose_text(body: str) -> str:
    """The body with fenced code, display and inline math and inline code removed."""
    lines = body.split("\n")
    drop = set()
    for _kind, s, e in iter_blocks(body):
        drop.update(range(s, e + 1))
    text = "\n".join(l for i, l in enumerate(lines) if i not in drop)
    text = re.sub(r"\$[^$\n]+\$", "", text)
    return re.sub(r"`[^`\n]+`", "", text)


def prose_chars(body: str) -> int:
    """Number of CJK ideographs in the prose (the articles' length floor is measured in these)."""
    return len(_CJK.findall(prose_text(body)))
