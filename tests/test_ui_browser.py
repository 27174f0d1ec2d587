"""The reader's experience in Debian's Chromium (Playwright), asserting what a person sees; screenshots go
to test-artifacts/ (git-ignored).

    first screen: title, the article list with summaries, starter questions, the input focused
    an answer: its label, source previews in place, follow-ups; 👍 with a comment stored in the question
    log; the conversation and the 👍 both still there after a reload and a restart of the app
    demo runs: each in its own card, several at once, a click beyond the runner's limit queued with a message
    article pages: every formula rendered once by KaTeX (no visible MathML), headings keep `__init__`
    phone width (390 px): no horizontal scroll; no English UI words (visible text scanned against an
    allow-list made of the articles' and demos' own words); text contrast ≥ 4.5:1

The browser runs with an English locale on purpose: the page must be Chinese whatever the browser says.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from shared_app import ARTIFACTS, CHROMIUM, TIMEOUT_MS, chromium_browser, live_app, real_kb

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]
# Words a Chinese UI may show in Latin letters besides the articles' and demos' own words.
ALLOWED = {"API", "BM25", "LLM", "GPU", "CPU", "CUDA", "KaTeX", "UTF", "KiB", "MiB", "md", "slug", "ms", "ns",
           "None", "True", "False"}


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return live_app(tmp_path_factory)


def new_page(browser, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def open_app(page, url: str):
    page.goto(url)
    page.locator("#question textarea").wait_for()
    page.locator(".kb-welcome, #chat .message").first.wait_for()


def ask(page, question: str):
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    page.locator("#regenerate").wait_for(state="visible")   # shown once the answer is complete


# First screen -------------------------------------------------------------------------------------------

def test_first_screen_lists_articles_and_starters_with_the_input_focused(live, browser):
    from kb.ui import starters

    page = new_page(browser)
    open_app(page, live.url)
    articles = live.state.kb.articles
    assert page.locator(".kb-welcome h2").inner_text() == "技术博客知识库"
    items = page.locator(".kb-welcome li")
    assert items.count() == len(articles), "one line per article"
    hrefs = [items.nth(i).locator("a").get_attribute("href") for i in range(items.count())]
    assert hrefs == [f"article/{slug}" for slug in articles]
    first = items.first.inner_text()
    assert "：" in first and len(first) > 8, f"title and a one-line summary: {first!r}"
    questions = starters.starter_questions(articles)
    assert 4 <= len(questions) <= 6
    for q in questions:
        assert page.get_by_role("button", name=q).is_visible(), f"starter question {q!r} is shown"
    assert page.evaluate("document.activeElement.closest('#question') !== null"), "the input has the focus"
    page.screenshot(path=str(ARTIFACTS / "ui-first-screen.png"))

    # Embedded on an article's page: that article's starters first.
    open_app(page, live.url + "?article=python-gc")
    own = starters.QUESTIONS["python-gc"][0]
    page.get_by_role("button", name=own).wait_for()
    assert page.locator(".kb-banner").inner_text().startswith("正在阅读《Python 垃圾回收")
    page.context.close()


# Conversations and feedback ---------------------------------------------------------------------------------

class ServedApp:
    """The app on a fixed loopback port, so the browser's storage (per origin) sees the same site after a
    restart. A restart = a new ChatApp (a new question log opened from the same data folder) and server."""

    def __init__(self, state, port: int):
        import uvicorn

        from app import create_server

        self.state = state
        self.server = uvicorn.Server(uvicorn.Config(create_server(state), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the app did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)


def test_answer_feedback_and_conversation_survive_reload_and_restart(tmp_path_factory, browser):
    from app import ChatApp
    from demos.runner import Runner
    from shared_app import free_port

    kb = real_kb(tmp_path_factory)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    first = ServedApp(ChatApp(kb, Runner(tmp_path_factory.mktemp("runs-a"))), port)
    page = new_page(browser)
    try:
        open_app(page, url)
        question = "列表和元组有什么区别？"
        page.get_by_role("button", name=question).click()        # a starter question asks at once
        page.locator("#regenerate").wait_for(state="visible")
        chat = page.locator("#chat")
        assert chat.locator(".kb-mode").last.inner_text() == "摘录式回答"
        # Sources: the article's title once, each citation previewing its passage in place.
        assert chat.locator(".kb-source-title").count() == len(
            {t.strip() for t in chat.locator(".kb-source-title").all_inner_texts()}), "each title once"
        cite = chat.locator("details.kb-cite").first
        cite.locator("summary").click()
        assert cite.locator("blockquote").is_visible() and len(cite.locator("blockquote").inner_text()) > 20
        link = cite.locator("a")
        assert link.inner_text() == "打开原文这一节 ›" and link.get_attribute("href").startswith(
            "article/python-list-tuple#")
        followups = [b for b in page.locator(".kb-followup").all() if b.is_visible()]
        assert 2 <= len(followups) <= 3, "two or three follow-up suggestions"
        # 👍 then an optional comment; both stored with the answer.
        page.locator("#chat button[aria-label='赞']").last.click()
        page.locator("#feedback-row").wait_for(state="visible")
        page.locator("#feedback-comment textarea, #feedback-comment input").first.fill("对比讲得清楚")
        page.locator("#feedback-send").click()
        page.locator("#feedback-row").wait_for(state="hidden")
        rows = first.state.question_log.questions()
        mine = [r for r in rows if r["question"] == question]
        assert mine and mine[-1]["rating"] == 1 and mine[-1]["comment"] == "对比讲得清楚", mine[-1:]
        page.screenshot(path=str(ARTIFACTS / "ui-answer-feedback.png"), full_page=True)

        page.reload()
        page.locator("#chat .message").first.wait_for()
        assert question in chat.inner_text(), "the conversation survives a reload"
    finally:
        first.stop()

    second = ServedApp(ChatApp(kb, Runner(tmp_path_factory.mktemp("runs-b"))), port)
    try:
        assert second.state.question_log is not first.state.question_log
        stored = [r for r in second.state.question_log.questions() if r["question"] == question]
        assert stored and stored[-1]["rating"] == 1, "the 👍 survives a restart of the app"
        page.goto(url)
        page.locator("#chat .message").first.wait_for()
        assert question in page.locator("#chat").inner_text(), "the conversation survives a restart"
        options = page.locator("#conv-list input").input_value()
        assert options.startswith(question[:10]), f"listed among past conversations: {options!r}"
        page.locator("#new-chat").click()
        page.locator(".kb-welcome").wait_for()
        assert page.locator("#chat .message").count() == 0, "新对话 starts an empty chat"
    finally:
        page.context.close()
        second.stop()


# Demo runs ------------------------------------------------------------------------------------------------

def test_demo_runs_each_get_a_card_and_clicks_while_busy_are_queued(tmp_path_factory, browser):
    """One demo slot, held by a long run started first: both clicks are queued (said so), never dropped;
    each run gets its own card, both visible at once; once the slot frees, each shows its checks."""
    from app import ChatApp
    from demos.runner import Runner
    from shared_app import free_port

    port = free_port()
    served = ServedApp(ChatApp(real_kb(tmp_path_factory), Runner(tmp_path_factory.mktemp("runs-q"),
                                                                 max_concurrent=1)), port)
    page = new_page(browser)
    try:
        open_app(page, f"http://127.0.0.1:{port}/")
        ask(page, "C3 线性化算法是怎么计算 MRO 的？")
        button = page.locator("#demo-btn-0")
        assert button.inner_text() == "▶ 运行演示：多重继承：C3 线性化与 super()"
        blocker = served.state.runner.submit("sde-vs-ode", {})   # holds the only slot
        button.click()
        button.click()
        cards = [page.locator(f"#chat-{i}-run") for i in range(2)]
        for i, card in enumerate(cards):
            card.wait_for(state="visible")
            page.locator(f"#chat-{i}-run-status").filter(has_text="已加入队列").wait_for()
        assert page.get_by_text(re.compile("已加入队列：前面还有演示在运行")).first.is_visible(), "a toast says so"
        page.screenshot(path=str(ARTIFACTS / "ui-demo-queued.png"), full_page=True)
        blocker.cancel()
        for i, card in enumerate(cards):
            status = page.locator(f"#chat-{i}-run-status")
            status.filter(has_text=re.compile("通过|未通过|出错|超时|已取消")).wait_for()
            assert "通过 ✓" in status.inner_text(), status.inner_text()
            # The checks are another Markdown of the same update: the browser may render it a moment later.
            page.locator(f"#chat-{i}-run-checks").filter(has_text="✓").wait_for()
            checks = page.locator(f"#chat-{i}-run-checks").inner_text()
            assert checks.count("✓") >= 2 and "✗" not in checks, checks
            stop = card.get_by_role("button", name="停止")
            assert stop.count() == 0 or not stop.is_visible(), "stop goes when the run ends"
        ids = {page.locator(f"#chat-{i}-run-status").inner_text().split("运行 ")[1].split(" ")[0] for i in range(2)}
        assert len(ids) == 2, f"two runs, two cards: {ids}"
        page.screenshot(path=str(ARTIFACTS / "ui-demo-cards.png"), full_page=True)
    finally:
        page.context.close()
        served.stop()


# Article pages -----------------------------------------------------------------------------------------------

def test_article_formulas_render_once_and_headings_keep_underscores(live, browser):
    page = new_page(browser)
    page.goto(live.url + "article/edm-diffusion-framework")
    page.wait_for_selector("body[data-math=rendered]")
    counts = page.evaluate("""() => {
        const katex = [...document.querySelectorAll('.katex')];
        const big = e => { const r = e.getBoundingClientRect(); return r.width > 1 && r.height > 1; };
        return {math: document.querySelectorAll('.math').length, katex: katex.length,
                mathml: katex.filter(k => big(k.querySelector('.katex-mathml'))).length,
                html: katex.filter(k => big(k.querySelector('.katex-html'))).length,
                font: getComputedStyle(katex[0]).fontFamily};
    }""")
    assert counts["math"] > 50 and counts["katex"] == counts["math"], counts
    assert counts["mathml"] == 0, f"no formula shows its MathML next to the HTML: {counts}"
    assert counts["html"] == counts["katex"] and counts["font"].startswith("KaTeX_Main"), counts
    page.screenshot(path=str(ARTIFACTS / "ui-article.png"))
    page.goto(live.url + "article/tensorflow-tf-export")
    headings = page.locator("h2, h3").all_inner_texts()
    assert any("__init__" in h and "__call__" in h for h in headings), headings
    assert page.locator("h2 strong, h3 strong").count() == 0, "no heading turned bold by its underscores"
    page.context.close()


# Phone width, English words, contrast ---------------------------------------------------------------------------

VISIBLE_TEXT_JS = """() => {
    const out = [];
    // Not UI text: code, formulas, and a demo's own output (its log and its checks' details).
    const skip = e => e.closest('code, pre, kbd, .katex, script, style, [hidden], .sr-only, .hide, svg, .kb-detail, .kb-run-log');
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
        const el = n.parentElement;
        if (!el || skip(el) || !n.nodeValue.trim()) continue;
        const r = el.getBoundingClientRect(), s = getComputedStyle(el);
        if (r.width < 2 || r.height < 2 || s.visibility === 'hidden' || s.opacity === '0') continue;
        out.push(n.nodeValue.trim());
    }
    // Tooltips and labels of the controls (a chat message's aria-label repeats its content: not scanned).
    for (const el of document.querySelectorAll('button, [role=button], [role=tab], input, textarea, select')) {
        for (const a of ['placeholder', 'title', 'aria-label']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
    return out;
}"""

CONTRAST_JS = """() => {
    const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
                                 return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
    const bg = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                       if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3); } return [255, 255, 255]; };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    const bad = [];
    const check = (el, color, what) => { const r = ratio(rgb(color).slice(0, 3), bg(el));
                                        if (r < 4.5) bad.push(`${what} ${r.toFixed(2)}: ${(el.innerText || el.placeholder || '').slice(0, 30)}`); };
    for (const el of document.querySelectorAll('body *')) {
        const own = [...el.childNodes].some(n => n.nodeType === 3 && n.nodeValue.trim());
        const rect = el.getBoundingClientRect(), s = getComputedStyle(el);
        if (!own || rect.width < 2 || rect.height < 2 || s.visibility === 'hidden' || el.closest('.katex, svg, [disabled]')) continue;
        check(el, s.color, el.tagName.toLowerCase());
    }
    for (const el of document.querySelectorAll('textarea[placeholder], input[placeholder]'))
        if (el.getBoundingClientRect().width > 2 && !el.value) check(el, getComputedStyle(el, '::placeholder').color, 'placeholder');
    return bad;
}"""


RUN_ID = re.compile(r"\b20\d{6}[-\w]*")   # a demo run's id (date, time, demo id, random suffix) is an identifier


def english_words(texts: list[str]) -> set[str]:
    return {w for t in texts for w in re.findall(r"[A-Za-z][A-Za-z0-9]+", RUN_ID.sub(" ", t))}


def content_words(kb) -> set[str]:
    """Words that are the blog's or the demos' content (titles, summaries, text), not the UI's."""
    from demos import present

    text = [f"{a.slug} {a.title} {a.summary} {a.body} {' '.join(a.tags)}" for a in kb.articles.values()]
    for spec in present.loadable_specs():
        text += [spec.title, spec.summary] + [f"{p.name} {p.help}" for p in spec.params]
    return english_words(text)


def test_phone_width_no_scroll_no_english_ui_words_and_contrast(live, browser):
    page = new_page(browser, PHONE)
    allowed = content_words(live.state.kb) | ALLOWED
    open_app(page, live.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "first screen scrolls sideways"
    contrast = page.evaluate(CONTRAST_JS)
    assert not contrast, f"text below 4.5:1 on the first screen: {contrast[:8]}"
    ask(page, "生成器为什么能节省内存？")
    page.locator("#demo-btn-0").click()
    page.locator("#chat-0-run-status").filter(has_text=re.compile("通过|未通过|出错|超时")).wait_for()
    page.screenshot(path=str(ARTIFACTS / "ui-phone-chat.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the chat scrolls sideways"
    seen = english_words(page.evaluate(VISIBLE_TEXT_JS))
    tabs = {"演示": "ui-phone-demos.png", "文章": None, "知识库管理": None}
    for tab, shot in tabs.items():
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(500)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"{tab} scrolls sideways"
        seen |= english_words(page.evaluate(VISIBLE_TEXT_JS))
        if shot:
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    ui_words = sorted(seen - allowed)
    assert not ui_words, f"English UI words on the page: {ui_words}"
    page.goto(live.url + "article/pytorch-ddp")
    page.wait_for_selector("body[data-math=rendered]")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the article scrolls sideways"
    page.context.close()
