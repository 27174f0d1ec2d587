"""The blog's own Markdown: Hexo, Hugo, Jekyll or plain trees, read with their native front matter.

    kb --articles ~/blog index          # ~/blog/source/_posts (Hexo), content/ (Hugo), _posts (Jekyll)

`find_posts(folder)` recognises the tree: Hexo (`source/_posts`), Hugo (`content/posts`, else `content`),
Jekyll (`_posts`, files named `YYYY-MM-DD-title.md`), or any other folder of Markdown (searched
recursively, hidden folders and `node_modules` skipped). `parse_post(raw, path, ...)` reads YAML (`---`)
or TOML (`+++`) front matter with the fields blogs use: `title` (else a leading `# heading`), `date`,
`tags`/`categories`, optional `slug` (else `permalink`/`url`, the Jekyll name without its date, the Hugo
bundle folder, or the file name), optional `summary`/`description`/`excerpt` (else the text before
`<!-- more -->`, else the first paragraph), optional `demos`. Drafts (`draft: true`, `published: false`)
are left out. Outside code fences, `<!-- more -->`, Hugo shortcodes and Liquid / Hexo tags are removed;
highlight/codeblock tags become fenced code, `asset_img` and `figure` become Markdown images; the inner
text of paired tags is kept. Images and links stay as Markdown text.

Each post gets `page`, its path on the blog: the front matter's `permalink`/`url`, else the permalink
pattern (`KB_PERMALINK`, else the generator's default: Hexo `:year/:month/:day/:title/`, Hugo
`/posts/:slug/`, Jekyll `/:categories/:year/:month/:day/:title.html`). With `KB_SITE_URL` citations link
to `KB_SITE_URL + page + #anchor` (anchors are GitHub-style, as Hugo's goldmark makes them).

This module knows blog file layouts and front matter; the article model and sections are kb/articles.py.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import yaml

from kb.errors import ArticleError
from kb.security import is_safe_slug

DEFAULT_PERMALINKS = {"hexo": ":year/:month/:day/:title/", "hugo": "/posts/:slug/",
                      "jekyll": "/:categories/:year/:month/:day/:title.html", "plain": None}
_HUGO_CONFIGS = ("hugo.toml", "hugo.yaml", "hugo.json", "config.toml", "config.yaml", "config.json", "config/_default")
_SKIP_DIRS = {"node_modules", "public", "_site", "themes", "vendor"}
_JEKYLL_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(.+)$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_MORE = re.compile(r"<!--\s*more\s*-->", re.IGNORECASE)
# Block tags that hold code: Liquid/Jekyll highlight, Hexo codeblock/code, Hugo highlight.
_CODE_OPEN = re.compile(r"^\s*(?:\{%-?\s*(highlight|codeblock|code)\b(.*?)-?%\}|\{\{[<%]\s*(highlight)\b(.*?)[>%]\}\})\s*$")
_CODE_CLOSE = re.compile(r"^\s*(?:\{%-?\s*end(highlight|codeblock|code)\s*-?%\}|\{\{[<%]\s*/\s*highlight\s*[>%]\}\})\s*$")
_ASSET_IMG = re.compile(r"\{%-?\s*(?:asset_img|img)\s+(\S+)\s*(.*?)\s*-?%\}")
_HUGO_FIGURE = re.compile(r"\{\{[<%]\s*figure\b(.*?)[>%]\}\}")
_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_TAG = re.compile(r"\{%-?.*?-?%\}|\{\{[<%].*?[>%]\}\}")        # any Liquid / Hexo tag, any Hugo shortcode
_LIQUID_OUT = re.compile(r"\{\{\s+[A-Za-z_][\w.]*(?:\s*\|[^{}]*)?\s+\}\}")   # {{ site.url | relative_url }}
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_TAG_CODE = "tag"


@dataclass(frozen=True)
class Layout:
    kind: str                     # hexo, hugo, jekyll, plain
    posts: Path                   # the folder the posts are read from


def find_posts(folder: str | Path) -> tuple[Layout, list[Path]]:
    """The blog layout of `folder` and its Markdown files, sorted."""
    folder = Path(folder)
    if (folder / "source" / "_posts").is_dir():
        layout = Layout("hexo", folder / "source" / "_posts")
    elif (folder / "content").is_dir() and (any((folder / name).exists() for name in _HUGO_CONFIGS)
                                            or (folder / "content" / "posts").is_dir()):
        posts = folder / "content" / "posts"
        layout = Layout("hugo", posts if posts.is_dir() else folder / "content")
    elif (folder / "_posts").is_dir():
        layout = Layout("jekyll", folder / "_posts")
    else:
        layout = Layout("plain", folder)
    files = []
    for path in sorted(layout.posts.rglob("*.md")) + sorted(layout.posts.rglob("*.markdown")):
        rel = path.relative_to(layout.posts).parts
        if any(p.startswith((".", "_")) or p in _SKIP_DIRS for p in rel[:-1]) or path.name.startswith("."):
            continue
        if path.name == "_index.md" or (path.name == "README.md" and layout.kind != "plain"):
            continue                # Hugo section pages; a blog repository's read-me is not a post
        files.append(path)
    return layout, files


def posts_folder(folder: str | Path) -> Path:
    """Where a new post of the tree at `folder` goes (an admin upload): Hexo's source/_posts, and so on."""
    return find_posts(folder)[0].posts


def split_front_matter(raw: str, path: str) -> tuple[dict, str, int]:
    """(fields, body, 1-based line of the body) for YAML `---` or TOML `+++` front matter, or none."""
    lines = raw.split("\n")
    fence = lines[0].strip() if lines else ""
    if fence not in ("---", "+++"):
        return {}, raw, 1
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == fence), None)
    if end is None:
        raise ArticleError(path, f"the front matter is never closed by a '{fence}' line", 1)
    text = "\n".join(lines[1:end])
    if fence == "+++":
        try:
            meta = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ArticleError(path, f"front matter is not valid TOML: {exc}", int(m.group(1)) + 1 if m else 2) from None
    else:
        try:
            meta = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ArticleError(path, f"front matter is not valid YAML: {problem}",
                               mark.line + 2 if mark is not None else 2) from None
    if not isinstance(meta, dict):
        raise ArticleError(path, "front matter must be a mapping of fields", 2)
    return meta, "\n".join(lines[end + 1:]), end + 2


def clean_body(body: str, liquid: bool = False) -> str:
    """The Markdown with generator tags removed outside code fences (see the module docstring).

    Line count is kept (a removed tag line becomes empty) so section lines still point into the file.
    `liquid`: also remove `{{ variable }}` outputs (Jekyll, Hexo), which elsewhere could be LaTeX or code.
    """
    out: list[str] = []
    fence: str | None = None          # the open fence, or TAG_CODE inside a code block opened by a tag
    for line in body.split("\n"):
        m = _FENCE.match(line)
        if fence == _TAG_CODE:
            out.append("```" if _CODE_CLOSE.match(line) else line)
            fence = None if _CODE_CLOSE.match(line) else fence
            continue
        if fence is not None:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        opened = _CODE_OPEN.match(line)
        if opened:
            args = (opened.group(2) or opened.group(4) or "").split()
            lang = next((a.split(":", 1)[1] for a in args if a.startswith("lang:")), None)
            if lang is None and args and opened.group(1) in ("highlight", None):
                lang = args[0].strip('"')
            out.append("```" + (lang or ""))
            fence = _TAG_CODE
            continue
        line = _MORE.sub("", line)
        line = _ASSET_IMG.sub(lambda m: f"![{m.group(2).strip(chr(34))}]({m.group(1)})", line)
        line = _HUGO_FIGURE.sub(_figure, line)
        had_tag = bool(_TAG.search(line)) or (liquid and bool(_LIQUID_OUT.search(line)))
        line = _TAG.sub("", line)
        if liquid:
            line = _LIQUID_OUT.sub("", line)
        out.append("" if had_tag and not line.strip() else line)
    if fence == _TAG_CODE:
        out.append("```")             # an unclosed highlight tag runs to the end, closed here
    return "\n".join(out)


def _figure(m: re.Match) -> str:
    attrs = dict(_ATTR.findall(m.group(1)))
    return f"![{attrs.get('caption') or attrs.get('alt') or attrs.get('title', '')}]({attrs.get('src', '')})"


def _plain(text: str) -> str:
    """Markdown of one paragraph as reading text: images out, links to their text, emphasis marks out."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[*_`~]+", "", text)
    return " ".join(text.split())


def first_paragraph(body: str, limit: int = 200) -> str:
    fence = False
    para: list[str] = []
    for line in body.split("\n"):
        if _FENCE.match(line):
            fence = not fence
            if para:
                break
            continue
        if fence:
            continue
        s = line.strip()
        if not s:
            if para and _plain(" ".join(para)):
                break
            para = []
            continue
        if s.startswith(("#", "|", ">", "$$", "<")) and not para:
            continue
        para.append(s)
    text = _plain(" ".join(para))
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _date(value, path: str, raw_line: int) -> str:
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str) and re.match(r"\d{4}-\d{1,2}-\d{1,2}", value.strip()):
        y, mo, d = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", value.strip()).groups()
        return f"{y}-{int(mo):02d}-{int(d):02d}"
    if value in (None, ""):
        return ""
    raise ArticleError(path, f"'date' is not a date: {value!r} (YYYY-MM-DD expected)", raw_line)


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,，\s]+", value) if v]
    out: list[str] = []
    for v in value if isinstance(value, (list, tuple)) else [value]:
        out += _strings(v) if isinstance(v, (list, tuple)) else [str(v)]
    return out


def _line_of(raw: str, name: str) -> int:
    for i, line in enumerate(raw.split("\n"), start=1):
        if re.match(rf"\s*{re.escape(name)}\s*[:=]", line):
            return i
    return 1


def expand_permalink(pattern: str, slug: str, date: str, categories: list[str]) -> str:
    """Hexo/Hugo/Jekyll permalink tokens (:year :month :day :title :slug :filename :categories :category)."""
    y, m, d = (date.split("-") + ["", "", ""])[:3] if date else ("", "", "")
    values = {"year": y, "month": m, "day": d, "i_month": m.lstrip("0"), "i_day": d.lstrip("0"),
              "title": slug, "slug": slug, "filename": slug, "name": slug,
              "categories": "/".join(c.lower().replace(" ", "-") for c in categories),
              "category": categories[0].lower().replace(" ", "-") if categories else ""}
    page = re.sub(r":([a-z_]+)", lambda m: values.get(m.group(1), m.group(0)), pattern)
    page = re.sub(r"/{2,}", "/", "/" + page.lstrip("/"))
    return page


def parse_post(raw: str, path: str | Path, layout: str = "plain", permalink: str | None = None, root=None):
    """One blog post as an Article (kb.articles), or ArticleError naming the file and line."""
    from kb.articles import Article, _sections
    from demos.registry import DEMO_IDS

    path = str(path)
    raw = raw.replace("\r\n", "\n").lstrip("\ufeff")
    meta, body, body_line = split_front_matter(raw, path)
    if meta.get("draft") is True or meta.get("published") is False:
        return None
    p = Path(path)
    jekyll = _JEKYLL_NAME.match(p.stem)
    title = meta.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        lines = body.split("\n")
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        h1 = _H1.match(lines[first]) if first is not None else None
        if not h1:
            raise ArticleError(path, "no title: the front matter has no 'title' and the text does not start with a '# heading'", _line_of(raw, "title"))
        title = h1.group(1)
        lines[first] = ""                    # the title is not a section of its own
        body = "\n".join(lines)
    if not isinstance(title, (str, int, float)):
        raise ArticleError(path, "'title' must be text", _line_of(raw, "title"))
    title = str(title).strip()
    date = _date(meta.get("date"), path, _line_of(raw, "date"))
    if not date and jekyll:
        date = "-".join(jekyll.groups()[:3])
    own_page = meta.get("permalink") or meta.get("url")
    if own_page is not None and not isinstance(own_page, str):
        raise ArticleError(path, "'permalink' must be text", _line_of(raw, "permalink"))
    if meta.get("slug") not in (None, ""):
        slug = str(meta["slug"]).strip()
    elif own_page and PurePosixPath(own_page.strip("/")).name:
        slug = PurePosixPath(own_page.strip("/")).name
        slug = re.sub(r"\.html?$", "", slug)
    elif jekyll:
        slug = jekyll.group(4)
    elif p.stem == "index" and layout == "hugo":
        slug = p.parent.name
    else:
        slug = p.stem
    if not is_safe_slug(slug):
        raise ArticleError(path, f"slug {slug!r} is unusable: letters, digits, '-', '_' and '.' only, no '/' or spaces",
                           _line_of(raw, "slug"))
    categories = _strings(meta.get("categories") or meta.get("category"))
    tags = tuple(dict.fromkeys(_strings(meta.get("tags")) + categories))
    demos = _strings(meta.get("demos"))
    unknown = [d for d in demos if d not in DEMO_IDS]
    if unknown:
        raise ArticleError(path, f"unknown demo id(s) {', '.join(unknown)}", _line_of(raw, "demos"))
    liquid = layout in ("jekyll", "hexo")
    more = _MORE.split(body, maxsplit=1)
    body = clean_body(body, liquid=liquid)
    summary = meta.get("summary") or meta.get("description") or meta.get("excerpt")
    if not isinstance(summary, str) or not summary.strip():
        summary = first_paragraph(clean_body(more[0], liquid=liquid) if len(more) > 1 else body)
    pattern = permalink or DEFAULT_PERMALINKS.get(layout)
    if own_page:
        page = "/" + own_page.strip().lstrip("/")
    elif pattern:
        page = expand_permalink(pattern, slug, date, categories)
    else:
        page = ""
    return Article(
        slug=slug, title=title, date=date, tags=tags, summary=summary.strip(), demos=tuple(demos), body=body,
        path=path, content_hash=hashlib.sha256(raw.encode("utf-8")).hexdigest(), body_line=body_line,
        sections=_sections(title, body, body_line), page=page)


def _project_format(raw: str) -> bool:
    """Whether a file is in this project's own article format: YAML front matter with every required field."""
    from kb.articles import REQUIRED_FIELDS
    if not raw.lstrip("\ufeff").startswith("---"):
        return False
    try:
        meta, _body, _line = split_front_matter(raw.replace("\r\n", "\n").lstrip("\ufeff"), "")
    except ArticleError:
        return False
    return all(f in meta for f in REQUIRED_FIELDS)


def load_posts(folder: str | Path, permalink: str | None = None):
    """Every post of the blog tree at `folder`: (layout, articles, per-file errors); drafts are left out."""
    from kb.articles import parse_article
    layout, files = find_posts(folder)
    articles, errors = [], []
    for path in files:
        try:
            data = path.read_bytes()
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ArticleError(str(path), f"not valid UTF-8 (byte {exc.start}); save it as UTF-8",
                                   data[: exc.start].count(b"\n") + 1) from None
            if _project_format(raw):
                article = parse_article(raw, path)
                if permalink:
                    article = replace(article, page=expand_permalink(permalink, article.slug, article.date, []))
            else:
                article = parse_post(raw, path, layout.kind, permalink)
        except ArticleError as exc:
            errors.append(exc)
            continue
        if article is not None:
            articles.append(article)
    return layout, articles, errors
