"""kb.render: article pages whose heading ids are the kb.articles anchors; formulas, code and raw HTML."""
import re
from pathlib import Path

import pytest

from kb.articles import load_article, parse_article
from kb.render import article_page, markdown_to_html

ARTICLES = Path(__file__).resolve().parent.parent / "articles"


@pytest.mark.parametrize("path", sorted(ARTICLES.glob("*.md")), ids=lambda p: p.stem)
def test_every_section_anchor_is_a_heading_id(path):
    article = load_article(path)
    page = article_page(article, "/katex.css", "/auto-render.js", script_url="/article.js")
    ids = re.findall(r'<h[2-6] id="([^"]+)"', page)
    want = [s.anchor for s in article.sections if s.anchor != "intro"]
    assert ids == want, f"{path.stem}: heading ids differ from Section.anchor"
    assert len(ids) == len(set(ids))
    assert '<script type="module" src="/article.js" data-autorender="/auto-render.js"></script>' in page
    assert page.count("<script") == 1, "the only script is the KaTeX starter file: no inline script"


def test_math_is_kept_out_of_markdown():
    out = markdown_to_html("公式 $a_i * b_i$ 与价格 $5 和 $10，代码 `$x_1$`\n\n$$\nL = \\sum_i x_i^2\n$$\n")
    assert '<span class="math inline">$a_i * b_i$</span>' in out, "underscores/asterisks must stay TeX"
    assert "<code>$x_1$</code>" in out and "价格 $5 和 $10" in out
    assert '<div class="math display">$$\nL = \\sum_i x_i^2\n$$</div>' in out


def test_code_is_highlighted():
    out = markdown_to_html("```python\ndef f(x):\n    return x\n```\n")
    assert '<div class="codehilite">' in out and '<span class="k">def</span>' in out


@pytest.mark.parametrize("info", ["python no-run", "python file=utils.py", "python min=3.13", "console max=3.12",
                                  "text min=3.12 max=3.12"])
def test_fence_options_still_render_a_code_block(info):
    """Words after the language (no-run, file=, version markers) must not turn the block into inline text."""
    out = markdown_to_html(f"前文\n\n```{info}\nx = 1\n```\n\n后文")
    assert out.count("<pre>") == 1 and "codehilite" in out, f"{info!r} did not render as a code block: {out}"
    assert info.split()[1] not in out, f"{info!r}: the fence option leaked into the page"


def test_every_article_block_is_a_pre_block():
    """Each fenced block of every article becomes one <pre> on its page (none collapses into a paragraph)."""
    from kb.articles import code_blocks

    for path in sorted(ARTICLES.glob("*.md")):
        article = load_article(path)
        page = article_page(article, "/katex.css", "/auto-render.js", script_url="/article.js")
        assert page.count("<pre>") == len(code_blocks(article)), f"{path.stem}: a code block did not render"


def test_raw_html_and_script_urls_are_shown_as_text():
    raw = ("---\ntitle: <b>T</b>\nslug: x\ndate: 2025-01-01\ntags: [a]\nsummary: s\ndemos: []\n---\n"
           "## <img src=x onerror=alert(1)>\n\n<script>alert(1)</script>\n\n[点我](javascript:alert(1))\n")
    page = article_page(parse_article(raw, "x.md"))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "<b>T</b>" not in page
    assert "javascript:" not in page and "<a>点我</a>" in page
    assert "<script" not in page.replace("&lt;script", ""), "no KaTeX urls given: no script at all"
