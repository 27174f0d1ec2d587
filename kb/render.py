"""Articles as HTML: one page per article, every heading carrying its `kb.articles` anchor.

The page is rendered section by section from `Article.sections`, so the `id` of each heading is exactly
`Section.anchor` (the anchor citations link to) instead of a second slug algorithm. Code is highlighted by
Pygments (`codehilite`, CSS inlined in the page); formulas (`$...$`, `$$...$$`) are kept away from Markdown
and left as TeX inside `<span class="math">` for KaTeX's auto-render, whose files the caller serves (the app
reuses the copy that ships with gradio). Raw HTML in an article is escaped, never passed through, and every
link and image URL goes through `kb.security.clean_url` (decoded as a browser decodes it; only http, https,
relative and `#` links survive): an uploaded article cannot run script in the reader's page. The page has
no inline script: KaTeX is started by the file at `ARTICLE_JS` (served by kb/web.py), so the page can be
served with a CSP that allows same-origin script files only.

This module knows Markdown and HTML, not where the page is served nor gradio.
"""
from __future__ import annotations

import html
import re
from functools import lru_cache

from kb.articles import Article, iter_blocks
from kb.security import clean_url

_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\$)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_PLACEHOLDER = re.compile(r"KBMATH([DI])(\d+)X")


def _markdown():
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class SafeLinks(Treeprocessor):
        """Keep only links and images whose URL `clean_url` accepts, in its cleaned form."""

        def run(self, root):
            for tag, attr in (("a", "href"), ("img", "src")):
                for el in root.iter(tag):
                    if attr not in el.attrib:
                        continue
                    url = clean_url(el.get(attr))
                    if url is None:
                        del el.attrib[attr]
                    else:
                        el.set(attr, url)

    md = markdown.Markdown(extensions=["fenced_code", "codehilite", "tables", "sane_lists"],
                           extension_configs={"codehilite": {"guess_lang": False, "css_class": "codehilite"}})
    # Without these two, raw HTML would pass through; with them it is escaped and shown as text.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    # Last of all treeprocessors (after "unescape" at 0), so it sees each URL exactly as it will be written.
    md.treeprocessors.register(SafeLinks(md), "safe_links", -100)
    return md


_FENCE_INFO = re.compile(r"^(\s*(?:`{3,}|~{3,}))\s*([\w#.+-]*)\s.*$")


def _protect_math(text: str) -> tuple[str, list[str]]:
    """Replace formulas by placeholders Markdown leaves alone; returns the text and the TeX sources."""
    lines = text.split("\n")
    formulas: list[str] = []
    code = set()
    for kind, s, e in iter_blocks(text):
        if kind == "code":
            code.update(range(s, e + 1))
            # Python-Markdown's fenced_code accepts only a language after the fence; the articles' extra
            # words (`no-run`, `file=NAME`, `min=3.12`) would turn the block into inline text.
            lines[s] = _FENCE_INFO.sub(r"\1\2", lines[s])
        else:
            formulas.append("\n".join(lines[s:e + 1]).strip())
            lines[s:e + 1] = [f"KBMATHD{len(formulas) - 1}X"] + [""] * (e - s)
            code.update(range(s, e + 1))

    def inline(line: str) -> str:
        out, pos = [], 0
        for m in _CODE_SPAN.finditer(line):   # no math inside inline code
            out.append(_INLINE_MATH.sub(keep, line[pos:m.start()]))
            out.append(m.group(0))
            pos = m.end()
        out.append(_INLINE_MATH.sub(keep, line[pos:]))
        return "".join(out)

    def keep(m: re.Match) -> str:
        formulas.append(m.group(0))
        return f"KBMATHI{len(formulas) - 1}X"

    lines = [line if i in code else inline(line) for i, line in enumerate(lines)]
    return "\n".join(lines), formulas


def _restore_math(html_text: str, formulas: list[str]) -> str:
    def put(m: re.Match) -> str:
        tex = html.escape(formulas[int(m.group(2))], quote=False)
        if m.group(1) == "D":
            return f'<div class="math display">{tex}</div>'
        return f'<span class="math inline">{tex}</span>'

    html_text = re.sub(r"<p>(KBMATHD\d+X)</p>", lambda m: _PLACEHOLDER.sub(put, m.group(1)), html_text)
    return _PLACEHOLDER.sub(put, html_text)


def markdown_to_html(text: str) -> str:
    """An HTML fragment for Markdown `text`: highlighted code, formulas as TeX, raw HTML escaped."""
    md = _markdown()
    protected, formulas = _protect_math(text)
    return _restore_math(md.convert(protected), formulas)


def _literal_underscores(text: str) -> str:
    """`_` outside code spans and formulas escaped: a heading's `__iter__` stays `__iter__`, not bold `iter`."""
    out, pos = [], 0
    for m in re.finditer(r"(`+).+?\1|(?<![\\$])\$[^$\n]+?\$", text):
        out.append(text[pos:m.start()].replace("_", "\\_"))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].replace("_", "\\_"))
    return "".join(out)


def _inline_html(text: str) -> str:
    """A heading's inline Markdown (code, emphasis, math) without the paragraph around it."""
    out = markdown_to_html(_literal_underscores(text)).strip()
    return out[3:-4] if out.startswith("<p>") and out.endswith("</p>") else out


def article_body_html(article: Article) -> str:
    """The article's sections in order, each heading with `id` = Section.anchor and a ¶ link to itself."""
    parts = []
    for section in article.sections:
        if section.anchor == "intro" and section.level == 1 and section.heading == article.title:
            parts.append(f'<section id="intro">{markdown_to_html(section.text)}</section>')
            continue
        level = min(max(section.level, 2), 6)
        anchor = html.escape(section.anchor, quote=True)
        parts.append(f'<h{level} id="{anchor}">{_inline_html(section.heading)}'
                     f' <a class="anchor" href="#{anchor}" aria-label="本节链接">¶</a></h{level}>')
        parts.append(markdown_to_html(section.text))
    return "\n".join(parts)


@lru_cache(maxsize=1)
def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="friendly").get_style_defs(".codehilite")


PAGE_CSS = """
body { max-width: 860px; margin: 2rem auto; padding: 0 1rem; font: 16px/1.75 system-ui, "Noto Sans CJK SC",
       "PingFang SC", "Microsoft YaHei", sans-serif; color: #1f2328; }
h1 { line-height: 1.3; } h2, h3, h4 { margin-top: 2em; line-height: 1.4; }
:target { background: #fff8c5; scroll-margin-top: 1rem; }
a.anchor { color: #999; text-decoration: none; font-size: .8em; visibility: hidden; }
h2:hover a.anchor, h3:hover a.anchor, h4:hover a.anchor { visibility: visible; }
.meta { color: #59636e; font-size: .9em; } nav.toc { font-size: .92em; border-left: 3px solid #d0d7de;
       padding-left: 1em; } nav.toc ul { list-style: none; padding-left: 1em; margin: .2em 0; }
.codehilite { background: #f6f8fa; border-radius: 6px; padding: .2em 1em; overflow-x: auto; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .9em; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: .3em .7em; }
.math.display { overflow-x: auto; overflow-y: hidden; margin: 1em 0; text-align: center; }
pre, .codehilite pre { overflow-x: auto; max-width: 100%; } table { display: block; overflow-x: auto; max-width: 100%; }
img { max-width: 100%; height: auto; } article { overflow-wrap: break-word; }
.meta, .summary, nav.toc { overflow-wrap: anywhere; }
"""


def _toc(article: Article) -> str:
    items = [f'<li style="margin-left:{(s.level - 2) * 1.2}em"><a href="#{html.escape(s.anchor, quote=True)}">'
             f"{html.escape(s.heading)}</a></li>" for s in article.sections if s.level >= 2 and s.level <= 3]
    return f'<nav class="toc"><strong>目录</strong><ul>{"".join(items)}</ul></nav>' if items else ""


ARTICLE_JS = "article.js"   # kb/static/article.js: starts KaTeX; served next to the page by kb/web.py


def article_page(article: Article, katex_css: str | None = None, katex_autorender_js: str | None = None,
                 demo_links: str = "", script_url: str | None = None) -> str:
    """A whole HTML page for `article`. Pass the URLs of KaTeX's CSS and auto-render module and of
    `ARTICLE_JS` (`script_url`) to render formulas; without them formulas stay readable TeX. `demo_links`
    is trusted HTML placed under the title. The page holds no inline script."""
    head_math, script = "", ""
    if katex_css and katex_autorender_js and script_url:
        head_math = f'<link rel="stylesheet" href="{html.escape(katex_css, quote=True)}">'
        script = (f'<script type="module" src="{html.escape(script_url, quote=True)}" '
                  f'data-autorender="{html.escape(katex_autorender_js, quote=True)}"></script>')
    tags = " · ".join(html.escape(t) for t in article.tags)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(article.title)}</title>
{head_math}
<style>{PAGE_CSS}{pygments_css()}</style>
</head><body data-slug="{html.escape(article.slug, quote=True)}">
<article>
<h1>{html.escape(article.title)}</h1>
<p class="meta">{html.escape(article.date)} · {tags}</p>
<p class="summary">{html.escape(article.summary)}</p>
{demo_links}
{_toc(article)}
{article_body_html(article)}
</article>
{script}
</body></html>"""
