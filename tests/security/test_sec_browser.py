"""In Debian's chromium: ≥ 30 script-URL payloads in an uploaded article are clicked one by one and none
runs (the sanitizer alone, without CSP, and the real app's article page with its CSP); the CSP alone stops a
script link the sanitizer never saw; a follow-up asked in the page cites the article of the question before.
A dialog handler counts executions; a control link that bypasses the sanitizer proves the counter works."""
import re
import shutil

import pytest

from shared_app import ARTIFACTS, CHROMIUM, ROOT, TIMEOUT_MS, LiveApp, chromium_browser, live_app

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]

# As they would be written in an article's Markdown link destination; `<...>` lets raw whitespace through.
PAYLOADS = [
    "javascript:alert(1)", "JaVaScRiPt:alert(2)", "jav&#x61;script:alert(3)", "jav&#X61;script:alert(4)",
    "&#106;avascript:alert(5)", "&#106avascript:alert(6)", "&#0000106avascript:alert(7)", "&#x6A;avascript:alert(8)",
    "&#x6Aavascript:alert(9)", "java&#10;script:alert(10)", "java&#x09;script:alert(11)", "java&#13;script:alert(12)",
    "JAVA&#83;CRIPT:alert(13)", "jav&Tab;ascript:alert(14)", "jav&NewLine;ascript:alert(15)",
    "javascript&colon;alert(16)", "javascript&#58;alert(17)", "javascript&#x3a;alert(18)", "&#x01;javascript:alert(19)",
    "<\x01javascript:alert(20)>", "<java\tscript:alert(21)>", "<\tjavascript:alert(22)>", "< javascript:alert(23)>",
    "<javascript :alert(24)>", "%6Aavascript:alert(25)", "vbscript:alert(26)", "VBScript:alert(27)",
    "data:text/html,<script>alert(28)</script>", "DATA:text/html;base64,PHNjcmlwdD5hbGVydCgyOSk8L3NjcmlwdD4=",
    "d&#97;ta:text/html,<script>alert(30)</script>", "jav&amp;#x61;script:alert(31)", "javascript://%0aalert(32)",
    "javascript:/*--></title></style></textarea></script><svg/onload=alert(33)>", "&#x0A;javascript:alert(34)",
    "j&#x00;avascript:alert(35)", "java\u200bscript:alert(36)", "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(37)",
]
MARKDOWN = "\n\n".join(f"[payload-{i}]({p}) 图 ![img-{i}]({p})" for i, p in enumerate(PAYLOADS)) + \
    "\n\n" + "\n".join(f"[ref-{i}][r{i}]" for i in range(len(PAYLOADS))) + "\n\n" + \
    "\n".join(f"[r{i}]: {p}" for i, p in enumerate(PAYLOADS)) + "\n\n[安全链接](https://example.org/) [本节](#intro)\n"


def article(slug: str) -> str:
    return (f"---\ntitle: 链接测试 {slug}\nslug: {slug}\ndate: 2025-01-01\ntags: [测试]\nsummary: 链接\ndemos: []\n---\n\n"
            f"# 链接测试 {slug}\n\n正文。\n\n## 链接\n\n{MARKDOWN}")


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.dialogs = []

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()
    page.on("dialog", on_dialog)
    yield page
    context.close()


@pytest.fixture(scope="module")
def xss_app(tmp_path_factory):
    """A sandbox app (fake embedder) whose articles folder holds the payload article, as an upload would."""
    from app import ChatApp
    from demos.runner import Runner
    from kb.config import Config
    from kb.embedding import FakeEmbedder
    from kb.engine import KnowledgeBase

    tmp = tmp_path_factory.mktemp("xss")
    (tmp / "articles").mkdir()
    (tmp / "articles" / "xss-links.md").write_text(article("xss-links"), encoding="utf-8")
    shutil.copy(ROOT / "articles" / "python-list-tuple.md", tmp / "articles")
    kb = KnowledgeBase(Config(articles_dir=tmp / "articles", home=tmp / "home"), embedder=FakeEmbedder())
    kb.index()
    app = LiveApp(ChatApp(kb, Runner(tmp / "runs")))
    yield app
    app.stop()


def click_every_link(page, url: str, names: list[str]) -> int:
    """Load `url`, click each named link (reloading after each); how many were links. (A few reference
    definitions with raw control characters are not links in Markdown at all: nothing to click.)"""
    clicked = 0
    page.goto(url)
    for name in names:
        if page.url != url:   # a link that navigated (a kept relative or http link): back to the page
            page.goto(url)
        link = page.locator(f"a:text-is('{name}')")
        if link.count():
            link.first.click(timeout=5000)
            page.wait_for_timeout(30)
            clicked += 1
    return clicked


def names() -> list[str]:
    return [f"payload-{i}" for i in range(len(PAYLOADS))] + [f"ref-{i}" for i in range(len(PAYLOADS))]


def test_there_are_at_least_30_payloads():
    assert len(PAYLOADS) >= 30


def test_sanitizer_alone_runs_no_payload(page):
    """The rendered HTML served WITHOUT any CSP: only the sanitizer stands between the payloads and the
    reader. The control link (not sanitized) must fire, or the counter proves nothing."""
    from kb.render import markdown_to_html

    html = ('<!doctype html><meta charset="utf-8"><body>' + markdown_to_html(MARKDOWN) +
            '<p><a id="control" href="javascript:alert(\'control\')">control</a></p></body>')
    page.route("http://sanitizer.test/**", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    clicked = click_every_link(page, "http://sanitizer.test/", names())
    assert clicked >= 2 * len(PAYLOADS) - 4 and page.dialogs == [], f"{clicked} clicked; payloads ran: {page.dialogs}"
    page.goto("http://sanitizer.test/")
    page.click("#control")
    page.wait_for_timeout(100)
    assert page.dialogs == ["control"], "the control link must run: the detector works"


def test_article_page_runs_no_payload_and_links_are_http(xss_app, page):
    url = xss_app.url + "article/xss-links"
    clicked = click_every_link(page, url, names())
    assert clicked >= 2 * len(PAYLOADS) - 4, clicked
    assert page.dialogs == [], f"payloads ran on the app's origin: {page.dialogs}"
    page.goto(url)
    protocols = page.evaluate("""() => [...document.querySelectorAll('article a[href], article img[src]')]
        .map(e => new URL(e.getAttribute('href') ?? e.getAttribute('src'), location.href).protocol)""")
    assert set(protocols) <= {"http:", "https:"}, protocols
    assert page.get_by_text("安全链接").get_attribute("href") == "https://example.org/"
    page.screenshot(path=str(ARTIFACTS / "xss-article.png"), full_page=True)


def test_csp_alone_blocks_a_script_link(xss_app, page):
    """A script link put into the page behind the sanitizer's back (as a sanitizer bug would) does not run:
    the article page's CSP allows same-origin script files only."""
    response = page.goto(xss_app.url + "article/xss-links")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.evaluate("""() => { const a = document.createElement('a'); a.id = 'planted';
        a.href = 'javascript:alert("planted")'; a.textContent = 'planted'; document.body.append(a); }""")
    page.click("#planted")
    page.wait_for_timeout(200)
    assert page.dialogs == [], "the CSP must block javascript: URLs on article pages"


def test_follow_up_in_the_page_cites_the_earlier_topic(tmp_path_factory, page):
    """Gradio 6 sends the chat history as content parts; the follow-up must still inherit the topic."""
    live = live_app(tmp_path_factory)
    page.goto(live.url)
    page.locator("#question textarea").fill("什么是 C3 线性化？")
    page.locator("#send").click()
    page.locator("#chat a[href^='article/python-inheritance-mro#']").first.wait_for()
    page.wait_for_function("() => (document.querySelector('#chat').innerText.match(/来源/g) || []).length >= 1")
    page.locator("#demo-btn-0").wait_for(state="visible")   # the first answer has finished
    first = page.locator("#chat a[href^='article/']").count()
    page.locator("#question textarea").fill("那它是怎么算的？")
    page.locator("#send").click()
    page.wait_for_function("() => (document.querySelector('#chat').innerText.match(/来源/g) || []).length >= 2")
    page.locator("#demo-btn-0").wait_for(state="visible")
    hrefs = page.evaluate("() => [...document.querySelectorAll('#chat a[href^=\"article/\"]')].map(a => a.getAttribute('href'))")
    follow_up = hrefs[first:]
    page.screenshot(path=str(ARTIFACTS / "follow-up.png"), full_page=True)
    assert follow_up, f"the follow-up answer has citations: {hrefs}"
    slugs = {re.match(r"article/([^#]+)", h).group(1) for h in follow_up}
    assert slugs == {"python-inheritance-mro"}, f"the follow-up should cite the MRO article, cites {slugs}"
