"""The app in Debian's Chromium through Playwright: ask, follow a citation to its section, run the linked
demo and see its checks pass; then the same through the embed example page. Screenshots go to
test-artifacts/ (git-ignored)."""
import re
from urllib.parse import unquote, urlparse

import pytest

from shared_app import ARTIFACTS, CHROMIUM, TIMEOUT_MS, chromium_browser, live_app

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]
FINISHED = re.compile("通过|未通过|出错|超时|已取消")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return live_app(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def ask(scope, question: str):
    scope.locator("#question textarea").fill(question)
    scope.locator("#send").click()


def check_citation_opens_its_section(page, link, slug: str, name: str):
    """Click a citation link (it opens a new tab) and check the page shows the cited section."""
    href = link.get_attribute("href")
    anchor = unquote(href.split("#", 1)[1])
    with page.context.expect_page() as new:
        link.click()
    article = new.value
    article.wait_for_selector("body[data-slug]")
    assert urlparse(article.url).path == f"/article/{slug}"
    assert article.evaluate("document.body.dataset.slug") == slug
    target = article.evaluate("document.querySelector(':target') && document.querySelector(':target').id")
    assert target == anchor, f"the page should land on #{anchor}, :target is {target}"
    assert article.locator(f"[id='{anchor}']").is_visible()
    article.wait_for_selector("body[data-math=rendered]")   # KaTeX ran (from gradio's own copy)
    article.screenshot(path=str(ARTIFACTS / f"{name}-article.png"))
    article.close()
    return anchor


def run_linked_demo(scope, demo_id: str, name: str, page):
    from playwright.sync_api import expect

    from demos import registry

    button = scope.locator("#demo-btn-0")
    button.wait_for(state="visible")
    assert button.inner_text() == f"▶ 运行演示：{registry.get(demo_id).title}"
    button.click()
    status = scope.locator("#chat-0-run-status")
    expect(status).to_contain_text(FINISHED, timeout=TIMEOUT_MS)
    assert "通过 ✓" in status.inner_text(), status.inner_text()
    # The checks are another Markdown of the same update: the browser may render it a moment later.
    expect(scope.locator("#chat-0-run-checks")).to_contain_text("✓", timeout=TIMEOUT_MS)
    checks = scope.locator("#chat-0-run-checks").inner_text()
    assert checks.count("✓") >= 2 and "✗" not in checks, checks
    page.screenshot(path=str(ARTIFACTS / f"{name}-demo.png"), full_page=True)


def test_ask_follow_citation_run_demo(live, page):
    page.goto(live.url)
    ask(page, "C3 线性化算法是怎么计算 MRO 的？")
    link = page.locator("#chat a[href^='article/python-inheritance-mro#']").first
    link.wait_for()
    page.locator("#demo-btn-0").wait_for(state="visible")   # the answer has finished streaming
    page.screenshot(path=str(ARTIFACTS / "app-answer.png"), full_page=True)
    assert "来源" in page.locator("#chat").inner_text()
    anchor = check_citation_opens_its_section(page, link, "python-inheritance-mro", "app")
    assert anchor in {s.anchor for s in live.state.kb.article("python-inheritance-mro").sections}
    run_linked_demo(page, "mro", "app", page)


def test_embed_page_favours_its_article_and_runs_its_demo(live, page):
    page.goto(live.url + "web/embed.html")
    frame = page.frame_locator("#kb-chat-frame")
    banner = frame.locator(".kb-banner")
    banner.wait_for()
    assert "生成器" in banner.inner_text()
    assert not frame.locator("button[role=tab]").first.is_visible(), "the embed shows the chat only"
    ask(frame, "它和普通函数有什么区别？")
    link = frame.locator("#chat a[href^='article/python-generators#']").first
    link.wait_for()
    frame.locator("#demo-btn-0").wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "embed-answer.png"), full_page=True)
    check_citation_opens_its_section(page, link, "python-generators", "embed")
    run_linked_demo(frame, "generator", "embed", page)
