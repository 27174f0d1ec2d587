"""The one-tag widget (kb/static/widget.js, kb/widget.py): a static blog page on ANOTHER loopback port with
the one script tag, in Debian's chromium; the button opens the panel, the page is mapped to its post through
the permalinks, a question is answered with citations linking to KB_SITE_URL, the page's layout never moves.
Screenshots go to test-artifacts/."""
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from shared_app import ARTIFACTS, CHROMIUM, ROOT, TIMEOUT_MS, LiveApp, chromium_browser, real_kb



def browser_test(test):
    for mark in (pytest.mark.browser, pytest.mark.slow,
                 pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium")):
        test = mark(test)
    return test


PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>我的博客：列表和元组</title>
<style>
  body { margin: 0; font: 16px/1.6 serif; background: #fafaf5; }
  header { height: 64px; background: #333; color: #fff; padding: 0 24px; }
  article { max-width: 720px; margin: 24px auto; padding: 0 16px; }
  button, div { border-radius: 0; }  /* the blog's own rules must not reach the widget */
  .side { position: fixed; right: 0; top: 200px; width: 40px; height: 120px; background: #c00; }
</style>{HEAD}</head>
<body><header><h1>我的博客</h1></header>
<article><h2>列表和元组</h2><p>列表可变，元组不可变。这是一篇博客文章的正文。</p>
<p><button>博客自己的按钮</button> <a href="/">首页</a></p><ul><li>一</li><li>二</li></ul></article>
<div class="side"></div>
{SCRIPT}</body></html>
"""


class BlogServer:
    """The blog: a plain static file server on its own loopback port (another origin than the app)."""

    def __init__(self, folder: Path):
        self.folder = folder
        handler = partial(_QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="blog")
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def write_page(folder: Path, rel: str, script: str = "", head: str = "") -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAGE.replace("{SCRIPT}", script).replace("{HEAD}", head), encoding="utf-8")


@pytest.fixture(scope="module")
def blog(tmp_path_factory):
    server = BlogServer(tmp_path_factory.mktemp("blog"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def widget_app(tmp_path_factory, blog):
    """A second live app over the session's real index, configured for the blog (KB_SITE_URL, KB_PERMALINK)."""
    from app import ChatApp
    from demos.runner import Runner

    shared = real_kb(tmp_path_factory)
    home = tmp_path_factory.mktemp("widget-home")
    shutil.copytree(shared.config.home, home, dirs_exist_ok=True)     # the same index, its own question log
    articles = tmp_path_factory.mktemp("widget-articles")
    shutil.copytree(ROOT / "articles", articles, dirs_exist_ok=True)   # the admin test deletes one of them
    kb = KnowledgeBase(Config(articles_dir=articles, home=home, site_url=blog.url,
                              permalink="/posts/:slug/"), embedder=shared.embedder)
    assert not kb.index().changed_anything, "the copied index is reused, nothing re-embedded"
    app = LiveApp(ChatApp(kb, Runner(tmp_path_factory.mktemp("widget-runs"), max_concurrent=1)))
    yield app, blog.folder
    app.stop()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


BOXES = """() => Array.from(document.querySelectorAll('body *')).filter(e => e.id !== 'kb-widget' && e.tagName !== 'SCRIPT').map(e => {
  const r = e.getBoundingClientRect(); return [e.tagName, r.x, r.y, r.width, r.height]; })"""


@browser_test
def test_widget_on_another_origin(widget_app, blog, browser):
    app, folder = widget_app
    script = f'<script src="{app.url}widget.js" defer></script>'
    write_page(folder, "baseline/index.html")
    write_page(folder, "posts/python-list-tuple/index.html", script)       # no data-article: mapped by permalink
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{blog.url}/baseline/")
    before = page.evaluate(BOXES)
    page.goto(f"{blog.url}/posts/python-list-tuple/")
    button = page.locator("#kb-widget .btn")
    button.wait_for()
    assert page.evaluate(BOXES) == before, "the widget moved the page's own elements"
    assert button.inner_text() == "问答"
    box = button.bounding_box()
    assert box["x"] + box["width"] == pytest.approx(1280 - 20, abs=1) and box["y"] + box["height"] == pytest.approx(900 - 20, abs=1)
    assert page.locator("button", has_text="博客自己的按钮").evaluate("b => getComputedStyle(b).borderRadius") == "0px"
    assert button.evaluate("b => getComputedStyle(b).borderRadius") == "26px", "the blog's CSS does not reach the widget"
    page.screenshot(path=str(ARTIFACTS / "widget-closed.png"))

    button.click()
    panel = page.locator("#kb-widget .panel")
    panel.wait_for(state="visible")
    pbox = panel.bounding_box()
    assert (pbox["width"], pbox["height"]) == (400, 640), pbox
    frame = page.frame_locator("#kb-widget iframe")
    banner = frame.locator(".kb-banner")
    banner.wait_for()
    assert "列表和元组：共同点、区别、存储方式与性能" in banner.inner_text(), "the page was mapped to its post"
    assert page.locator("#kb-widget").get_attribute("data-article") == "python-list-tuple"
    frame.locator("#question textarea").fill("列表和元组有什么区别？")
    frame.locator("#send").click()
    link = frame.locator(f'#chat a[href^="{blog.url}/posts/"]').first
    link.wait_for()
    href = link.get_attribute("href")
    assert href.startswith(f"{blog.url}/posts/python-list-tuple/#"), href
    assert page.evaluate(BOXES) == before, "the open panel moved the page's own elements"
    page.screenshot(path=str(ARTIFACTS / "widget-open.png"))
    page.locator("#kb-widget .close").click()
    panel.wait_for(state="hidden")
    assert errors == [], errors
    context.close()


@browser_test
def test_widget_attributes_and_phone(widget_app, blog, browser):
    app, folder = widget_app
    script = (f'<script src="{app.url}widget.js" data-article="python-generators" data-title="问问博主" '
              f'data-color="rgb(200, 30, 30)" data-position="left" data-label="提问" defer></script>')
    write_page(folder, "phone.html", script)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{blog.url}/phone.html")
    button = page.locator("#kb-widget .btn")
    button.wait_for()
    box = button.bounding_box()
    assert box["x"] == pytest.approx(20, abs=1), "data-position=left"
    assert button.inner_text() == "提问"
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(200, 30, 30)"
    button.click()
    panel = page.locator("#kb-widget .panel")
    panel.wait_for(state="visible")
    assert panel.bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 844}, "full screen on a phone"
    assert page.locator("#kb-widget .title").inner_text() == "问问博主"
    banner = page.frame_locator("#kb-widget iframe").locator(".kb-banner")
    banner.wait_for()
    assert "生成器" in banner.inner_text(), "data-article is passed to the chat"
    page.screenshot(path=str(ARTIFACTS / "widget-phone.png"))
    context.close()


REFUSED = "怎么用 Kubernetes 部署 PostgreSQL 集群？"


@browser_test
def test_admin_question_log_and_delete(widget_app, browser, tmp_path):
    """/ask questions land in the question log; the admin tab shows the refused one and exports CSV; a deleted
    article leaves the lists and the answers at once; `kb report --json` reads the log the app wrote."""
    import json
    import subprocess
    import sys

    from gradio_client import Client

    app, _folder = widget_app
    client = Client(app.url, verbose=False)
    assert client.predict(REFUSED, "", "[]", api_name="/ask")["answerable"] is False
    answered = client.predict("pdb 怎么设置条件断点？", "", "[]", api_name="/ask")
    assert answered["answerable"] and answered["citations"][0]["slug"] == "python-pdb"
    home = app.state.kb.config.home
    out = subprocess.run([sys.executable, "-m", "kb", "report", "--json"], cwd=ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "KB_HOME": str(home), "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert REFUSED in [q["question"] for q in report["refused_questions"]], report["refused_questions"]
    assert "pdb 怎么设置条件断点？" in [q["question"] for q in report["top_questions"]]

    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.get_by_role("tab", name="知识库管理").click()
    page.get_by_text("问答统计", exact=True).click()
    page.locator("#report-btn").click()
    refused = page.locator("#report-refused")
    refused.get_by_text(REFUSED).filter(visible=True).first.wait_for()
    assert "个问题" in page.locator("#report-summary").inner_text()
    page.locator("#csv-btn").click()
    page.locator("#report-csv a").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "admin-analytics.png"), full_page=True)

    page.get_by_text("删除文章", exact=True).click()
    pick = page.locator("#delete-pick input")
    pick.click()
    pick.fill("python-pdb")
    page.get_by_role("option", name=re.compile("python-pdb")).click()
    page.locator("#delete-confirm input").check()
    page.locator("#delete-btn").click()
    page.locator("#admin-msg").get_by_text("已删除").wait_for()
    assert not (app.state.kb.config.articles_dir / "python-pdb.md").exists()
    after = client.predict("pdb 怎么设置条件断点？", "", "[]", api_name="/ask")
    assert all(c["slug"] != "python-pdb" for c in after["citations"]), "the deleted article still answers"
    pick.click()
    pick.fill("")
    options = page.get_by_role("option")
    options.first.wait_for()
    shown = options.all_inner_texts()
    assert len(shown) == 11 and not any("python-pdb" in o for o in shown), f"the list was not refreshed: {shown}"
    page.keyboard.press("Escape")
    page.screenshot(path=str(ARTIFACTS / "admin-deleted.png"), full_page=True)
    context.close()


def test_widget_routes(tmp_path):
    """/widget.js and /widget/pages.json over real HTTP (FastAPI under uvicorn would add nothing here)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from kb.widget import add_widget_routes
    from tests.test_sources import hugo_tree

    root = hugo_tree(tmp_path / "hugo")
    kb = KnowledgeBase(Config(articles_dir=root, home=tmp_path / "home"), embedder=FakeEmbedder(("gc",)))
    server = FastAPI()
    add_widget_routes(server, kb)
    client = TestClient(server)
    js = client.get("/widget.js")
    assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "attachShadow" in js.text and "http" not in js.text.split("*/", 1)[1].replace("base +", ""), \
        "no CDN or other absolute URL in the widget's code"
    pages = client.get("/widget/pages.json")
    assert pages.headers["access-control-allow-origin"] == "*"
    assert pages.json() == {"pages": {"/posts/object-refs/": "object-refs", "/posts/yaml-post/": "yaml-post"}}
