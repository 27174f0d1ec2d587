"""How an answer reads in the chat: a mode label, the body, the sources grouped by article with a preview of
each cited passage in place, and 2–3 follow-up questions drawn from the cited sections.

Pure functions over `kb.answer.Answer` and the articles; they return Markdown/HTML strings for the chat
(gradio sanitises that HTML again in the browser). The engine's own text (`Answer.text`, used by the CLI
and the API) is left as it is; only what the chat shows is rebuilt here.
"""
from __future__ import annotations

import html
import re

from kb.answer import Answer, Citation

SOURCES_MARK = "**来源**"
PREVIEW_CHARS = 220
MODE_LABEL = {"extractive": "摘录式回答", "llm": "LLM 回答"}
_LABEL = re.compile(r'^<span class="kb-mode">[^<]*</span>\s*')
_SOURCES_HTML = re.compile(r'\s*<div class="kb-sources">.*\Z', re.S)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")


def md_text(text: str) -> str:
    """Plain text inside Markdown: `__iter__` keeps its underscores, nothing turns bold or into a tag."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def mode_label(mode: str) -> str:
    return f'<span class="kb-mode">{MODE_LABEL.get(mode, mode)}</span>\n\n'


def body_of(text: str) -> str:
    """The answer without its 来源 list (the engine appends that list last)."""
    return text.split(SOURCES_MARK, 1)[0].rstrip()


def plain_answer(content: str) -> str:
    """What the chat shows back to the answer text alone (for follow-up questions' history)."""
    return _SOURCES_HTML.sub("", _LABEL.sub("", content))


def passage_of(a: Answer, c: Citation, kb=None) -> str:
    """The cited passage: the retrieved chunk of that section, else the section's text."""
    for hit in a.hits:
        if hit.chunk.slug == c.slug and hit.chunk.anchor == c.anchor:
            return hit.chunk.text
    article = kb.articles.get(c.slug) if kb is not None else None
    section = article.section(c.anchor) if article else None
    return section.text if section else ""


def _preview(text: str) -> str:
    # Code and display formulas become a marker and inline formulas their TeX without `$`: a `$` left in
    # the preview would start a formula in the chat's LaTeX rendering and swallow the HTML after it.
    text = re.sub(r"```.*?```", " [代码] ", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " [公式] ", text, flags=re.S)
    text = re.sub(r"\$([^$\n]+)\$", r"\1", text).replace("$", "")
    text = re.sub(r"\s+", " ", text).strip()
    return text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")


def sources_html(a: Answer, kb=None) -> str:
    """The sources, each article's title once, each citation a <details> whose body previews the passage."""
    if not a.citations:
        return ""
    groups: dict[str, list[Citation]] = {}
    for c in a.citations:
        groups.setdefault(c.slug, []).append(c)
    parts = ['<div class="kb-sources"><p class="kb-sources-head">来源（点开预览原文）</p>']
    for cites in groups.values():
        parts.append(f'<div class="kb-source"><p class="kb-source-title">《{html.escape(cites[0].title)}》</p>')
        for c in cites:
            url = html.escape(c.url, quote=True)
            parts.append(
                f'<details class="kb-cite"><summary>[{c.n}] {html.escape(c.heading)}</summary>'
                f'<blockquote>{html.escape(_preview(passage_of(a, c, kb)))}</blockquote>'
                f'<a href="{url}" target="_blank">打开原文这一节 ›</a></details>')
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def display(a: Answer, text: str, final: bool, kb=None) -> str:
    """The chat message for the answer streamed so far (`text`); the sources appear once it is complete."""
    shown = mode_label(a.mode) + body_of(text)
    return shown + ("\n\n" + sources_html(a, kb) if final and a.citations else "")


def _as_question(heading: str) -> str:
    heading = heading.strip().rstrip("。.:：")
    if heading.endswith(("？", "?")):
        return heading
    if re.search(r"什么|为什么|怎么|如何|哪|吗$", heading):
        return heading + "？"
    return f"讲讲“{heading}”"


def followups(a: Answer, kb, limit: int = 3) -> list[str]:
    """2–3 questions drawn from the cited sections: the section after each cited one, then its neighbours."""
    if not a.answerable or not a.citations:
        return []
    cited = {(c.slug, c.anchor) for c in a.citations}
    picked: list[str] = []
    for offset in (1, 2, -1, -2, 3, -3):
        for c in a.citations:
            article = kb.articles.get(c.slug)
            if article is None:
                continue
            anchors = [s.anchor for s in article.sections]
            if c.anchor not in anchors:
                continue
            i = anchors.index(c.anchor) + offset
            if not 0 <= i < len(anchors):
                continue
            section = article.sections[i]
            if (c.slug, section.anchor) in cited or section.level < 2:
                continue
            q = _as_question(section.heading)
            if q not in picked:
                picked.append(q)
            if len(picked) >= limit:
                return picked
    return picked
