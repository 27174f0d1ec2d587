"""app.py handlers called directly, demos/present.py's check parsing, the article routes of kb/web.py, the
admin tab on a small fake-embedder KB, and one gradio_client round trip against the live app."""
import html
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import ChatApp
from demos import present, registry
from demos.runner import Runner
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.ui import answer_view
from kb.ui.chat import _turns
from kb.ui.demos import param_inputs
from kb.upload import MAX_UPLOAD_BYTES
from kb.web import add_routes
from shared_app import live_app, real_kb

ARTICLES = Path(__file__).resolve().parent.parent / "articles"


def no_progress(*args, **kwargs):
    pass


@pytest.fixture(scope="session")
def state(tmp_path_factory):
    return ChatApp(real_kb(tmp_path_factory), Runner(tmp_path_factory.mktemp("runs"), max_concurrent=2))


def last(gen):
    out = None
    for out in gen:
        pass
    return out


# Chat ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ask_streams_an_answer_with_links_evidence_and_demo_buttons(state):
    outputs = list(state.ask("列表和元组有什么区别？", [], ""))
    assert len(outputs) >= 3, "the answer arrives in increments"
    history, cleared, evidence, demos, *rest = outputs[-1]
    buttons, followups, (qids, regenerate) = rest[:3], rest[3:6], rest[6:]
    assert cleared == ""
    assert history[0] == {"role": "user", "content": "列表和元组有什么区别？"}
    reply = history[1]["content"]
    assert history[1]["role"] == "assistant" and "](article/python-list-tuple#" in reply
    assert reply.startswith('<span class="kb-mode">摘录式回答</span>'), reply[:80]
    assert '<div class="kb-sources">' in reply and "**来源**" not in reply, "the sources are the chat's own list"
    assert reply.count("《列表和元组：共同点、区别、存储方式与性能》") == 1, "each article's title once in the sources"
    assert '<details class="kb-cite"><summary>[1] ' in reply and "<blockquote>" in reply, "a preview per citation"
    assert demos[0] == "list-tuple"
    assert buttons[0]["visible"] is True and buttons[0]["value"] == "▶ 运行演示：" + registry.get("list-tuple").title
    assert all(b["visible"] is False for b in buttons[len(demos):])
    shown = [f["value"] for f in followups if f["visible"]]
    assert 2 <= len(shown) <= 3 and len(set(shown)) == len(shown), followups
    assert list(qids) == ["1"] and isinstance(qids["1"], int), "the answer is in the question log, for feedback"
    assert regenerate["visible"] is True
    assert "向量" in evidence and "BM25" in evidence and "python-list-tuple" in evidence


def test_ask_empty_question_is_a_clear_error(state):
    for q in ("", "   ", None):
        with pytest.raises(gr.Error, match="问题不能为空"):
            next(state.ask(q, [], ""))


@pytest.mark.slow
def test_ask_html_question_is_shown_as_text(state):
    history = last(state.ask("<script>alert('x')</script><b>列表</b>和元组有什么区别？", [], ""))[0]
    shown = history[0]["content"]
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "&lt;b&gt;" in shown
    assert _turns(history)[0][0].startswith("<script>"), "the follow-up history gets the question back as typed"


@pytest.mark.slow
def test_ask_very_long_question_is_shortened_for_display_and_answered(state):
    q = "列表和元组有什么区别？" + "啊" * 9_990
    history = last(state.ask(q, [], ""))[0]
    assert history[0]["content"].endswith(f"…（共 {len(q)} 字）") and len(history[0]["content"]) < 700
    # Only the first 2000 characters are searched; mostly filler, so answered or refused, it points there.
    assert "](article/python-list-tuple" in history[1]["content"]


@pytest.mark.slow
def test_ask_emoji_only_question_gets_the_refusal(state):
    history, _, _, demos, *rest = last(state.ask("😀🎉😀", [], ""))
    assert answer_view.plain_answer(history[1]["content"]).startswith("知识库中没有相关内容")
    assert demos == [] and all(b["visible"] is False for b in rest[:6]), "no demo, no follow-up for a refusal"


@pytest.mark.slow
def test_follow_up_in_the_chat_uses_the_history(state):
    history = last(state.ask("生成器是什么？", [], ""))[0]
    history = last(state.ask("它和迭代器有什么区别？", history, ""))[0]
    assert len(history) == 4 and "](article/python-generators#" in history[3]["content"]


def test_on_load_reads_the_article_slug(state):
    slug, banner = state.on_load("python-gc")
    assert slug == "python-gc" and banner["visible"] is True
    assert html.escape(state.kb.article("python-gc").title) in banner["value"]
    assert state.on_load("../etc/passwd") == ("", {"__type__": "update", "value": "", "visible": False})


# Demos -------------------------------------------------------------------------------------------------

def launch(state, index, ids):
    """A demo button's click (the card boxes' updates): the card it went to and the run id."""
    boxes = state.launch_linked_demo(index, ids)
    card = next(i for i, b in enumerate(boxes) if isinstance(b, dict) and "value" in b)
    return card, boxes[card]["value"]


@pytest.mark.slow
def test_linked_demo_runs_in_its_own_card_and_shows_its_checks(state):
    card, run_id = launch(state, 0, ["mro"])
    assert run_id.startswith("20") and "-mro-" in run_id
    views = list(state.stream_run(run_id))
    column, status, checks, stop, log, images, transcript = views[-1]
    assert column["visible"] is True and "通过 ✓" in status
    assert stop["visible"] is False and views[0][3]["visible"] is True, "stop shows while it runs, not after"
    assert checks.count("✓") >= 2 and "✗" not in checks and 'title="' in checks, "Chinese names, ids as tooltips"
    assert "CHECK ✓" in log and str(state.runner.runs_dir) not in log, "log paths are relative to the run"
    # A second run goes to another card, the first one still showing.
    busy = [launch(state, 0, ["mro"]) for _ in range(2)]
    assert len({c for c, _ in busy}) == 2 and card not in {c for c, _ in busy}, "running cards are not reused"
    # A past run reopens with its checks.
    again = list(state.stream_run(run_id))
    assert len(again) == 1 and again[0][2] == checks, "an ended run shows at once, same checks"


def _processes_under(folder: Path) -> list[int]:
    """Pids of the processes whose working directory lies in `folder` (a demo runs in its run's folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


@pytest.mark.slow
def test_sigterm_stops_the_app_and_its_demo_within_the_grace_with_a_reader_s_page_open(tmp_path_factory, tmp_path):
    """`python app.py` over the session's index gets SIGTERM while a reader's page holds its heartbeat stream
    open and a demo runs: it exits within SHUTDOWN_GRACE_S and the runner's kill grace (plus slack), the demo's
    processes are gone, and the log has no traceback."""
    import signal
    import socket
    import time

    from app import SHUTDOWN_GRACE_S
    from demos.runner import KILL_GRACE_S
    from shared_app import free_port, wait_up

    home = tmp_path / "home"
    shutil.copytree(real_kb(tmp_path_factory).config.home, home)
    port = free_port()
    env = {**os.environ, "KB_HOME": str(home), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-warm-up", "--runs-dir",
                                 str(tmp_path / "runs")], cwd=ARTICLES.parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        wait_up(proc, f"http://127.0.0.1:{port}/", log, 120, path="")
        from gradio_client import Client
        runs = tmp_path / "runs"
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        run = client.predict("sde-vs-ode", "{}", False, api_name="/run_demo")
        client.close()
        while not _processes_under(runs):
            assert time.monotonic() < deadline, f"the demo did not start: {run}"
            time.sleep(0.1)
        reader = socket.create_connection(("127.0.0.1", port), timeout=10)
        reader.sendall(f"GET /gradio_api/heartbeat/reader1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Accept: text/event-stream\r\n\r\n".encode())
        assert reader.recv(64).startswith(b"HTTP/1.1 200"), "the page's stream is open"
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(SHUTDOWN_GRACE_S + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"app.py still running {SHUTDOWN_GRACE_S + 10:g} s after SIGTERM with a reader's page open")
        took = time.monotonic() - t0
        reader.close()
        assert _processes_under(runs) == [], "the demo outlived the app"
        assert took <= SHUTDOWN_GRACE_S + KILL_GRACE_S + 5, took
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "ERROR" not in text, text[-2000:]
        assert "connection(s) still open after" in text, "one line says the reader's page was cut off"
        print(f"\nSIGTERM with a reader's page open and a demo running: exited in {took:.1f} s (rc {proc.returncode})")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_linked_demo_without_demos_is_an_error(state):
    with pytest.raises(gr.Error, match="没有对应的演示"):
        state.launch_linked_demo(0, [])


def test_out_of_bounds_demo_parameter_is_a_clear_error(state):
    with pytest.raises(gr.Error, match="参数有误.*max_len.*≥ 8"):
        state.launch_demo_form("list-tuple", 1, 200_000)


def test_unknown_demo_is_a_clear_error(state):
    with pytest.raises(gr.Error, match="没有这个演示：no-such-demo"):
        state.launch_linked_demo(0, ["no-such-demo"])


@pytest.mark.slow
def test_demo_launched_at_the_limit_is_queued_with_its_position(tmp_path, state):
    busy = ChatApp(state.kb, Runner(tmp_path / "runs", max_concurrent=1))
    first = busy.start_demo("mro")
    _, run_id = launch(busy, 0, ["list-tuple"])
    views = busy.stream_run(run_id)
    column, status, *_ = next(views)
    assert "排队中" in status and "已加入队列" in status and "第 1 位" in status and "上限（1 个）" in status
    final_status = last(views)[1]
    assert "通过 ✓" in final_status, "the queued run starts once the first ends, and passes"
    assert first.wait(120)["passed"] is True
    rows = busy.history_rows()
    assert [r[1] for r in rows] == [registry.get("list-tuple").title, registry.get("mro").title]
    assert rows[0][2] == "通过 ✓"


def test_param_inputs_are_bounded_and_advanced_ones_hidden():
    with gr.Blocks():
        spec = next(s for s in present.loadable_specs() if s.id == "ddp-launch")
        inputs = param_inputs(spec)
    by_name = dict(zip([p.name for p in spec.params], inputs))
    assert (by_name["nproc"].minimum, by_name["nproc"].maximum, by_name["nproc"].precision) == (1, 4, 0)
    assert isinstance(by_name["variant"], gr.Dropdown) and by_name["variant"].value == "none"


def test_parse_checks_reads_the_harness_lines():
    lines = ["x", "CHECK ✓ 容量: 4, 8", "CHECK ✗ 对齐: got 3: expected 4", "ARTIFACT a.png"]
    assert present.parse_checks(lines) == [{"name": "容量", "passed": True, "detail": "4, 8"},
                                           {"name": "对齐", "passed": False, "detail": "got 3: expected 4"}]


# Article pages -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    server = FastAPI()
    add_routes(server, real_kb(tmp_path_factory))
    return TestClient(server)


@pytest.mark.slow
def test_article_page_has_every_anchor_and_katex(pages, state):
    article = state.kb.article("python-inheritance-mro")
    page = pages.get("/article/python-inheritance-mro")
    assert page.status_code == 200
    for s in article.sections[1:]:
        assert f'id="{html.escape(s.anchor, quote=True)}"' in page.text
    css = pages.get("/kb-assets/" + page.text.split("../kb-assets/")[1].split('"')[0])
    assert css.status_code == 200 and "katex" in css.text.lower()


@pytest.mark.parametrize("path", ["/article/no-such-article", "/kb-assets/../../app.py", "/kb-assets/index.html"])
def test_pages_refuse_what_they_do_not_serve(pages, path):
    assert pages.get(path).status_code == 404


def test_embed_page_is_served_from_the_package(pages):
    page = pages.get("/web/embed.html")
    assert page.status_code == 200 and 'id="kb-chat-frame"' in page.text
    assert page.text == (Path(__file__).resolve().parent.parent / "kb" / "static" / "embed.html").read_text("utf-8")


def test_web_routes_find_katex_without_importing_gradio():
    code = ("import sys, kb.web; folder, css, js = kb.web.katex_assets(); "
            "print(css.startswith('katex-'), js.startswith('auto-render-'), 'gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False"], "kb/ locates gradio's KaTeX copy but never imports gradio"


# Admin -------------------------------------------------------------------------------------------------

def small_article(slug, body="## 小节\n\n正文里的列表与元组。\n"):
    return (f"---\ntitle: 小文章 {slug}\nslug: {slug}\ndate: 2025-01-01\ntags: [Python]\nsummary: 一句话。\n"
            f"demos: [list-tuple]\n---\n\n{body}").encode("utf-8")


@pytest.fixture
def admin(tmp_path):
    arts = tmp_path / "articles"
    arts.mkdir()
    shutil.copy(ARTICLES / "python-list-tuple.md", arts)
    kb = KnowledgeBase(Config(articles_dir=arts, home=tmp_path / "home"), embedder=FakeEmbedder())
    kb.index()
    return ChatApp(kb, Runner(tmp_path / "runs"), admin_password="s3cret", upload_dir=tmp_path / "upload"), arts, tmp_path


def upload(state, tmp, name, data, password="s3cret", original=None):
    path = tmp / "upload" / (original and "upload.md" or name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return state.upload_article(str(path), password, original, progress=no_progress)


def test_upload_adds_an_article_and_reindexes(admin):
    state, arts, tmp = admin
    message, rows = upload(state, tmp, "my-note.md", small_article("my-note"))
    assert message.startswith("已新增《小文章 my-note》") and "added: my-note" in message
    assert ["my-note", "小文章 my-note", "已索引"] == rows[0][:3] or any(r[0] == "my-note" and r[2] == "已索引" for r in rows)
    assert (arts / "my-note.md").read_bytes() == small_article("my-note")


def test_replacing_keeps_a_backup(admin):
    state, arts, tmp = admin
    old = (arts / "python-list-tuple.md").read_bytes()
    new = old.replace("tags: [".encode(), "tags: [新标签, ".encode(), 1)
    message, _ = upload(state, tmp, "python-list-tuple.md", new)
    assert message.startswith("已替换") and "changed: python-list-tuple" in message
    backups = list((tmp / "home" / "backups").iterdir())
    assert len(backups) == 1 and backups[0].read_bytes() == old


@pytest.mark.parametrize("name, data, original, why", [
    ("x.md", small_article("x"), "../x.md", "不含目录"),
    ("notes.txt", b"just text", None, "只接受 Markdown"),
    ("big.md", b"a" * (MAX_UPLOAD_BYTES + 1), None, "文件过大"),
    ("python-list-tuple.md", b"---\ntitle: broken\n", None, "front matter"),
    ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00", None, "不是文本文件"),
])
def test_rejected_uploads_change_nothing(admin, name, data, original, why):
    state, arts, tmp = admin
    before = {p.name: p.read_bytes() for p in arts.iterdir()}
    status_before = state.status_rows("s3cret")
    with pytest.raises(gr.Error, match=f"上传被拒绝.*{why}.*未做任何修改"):
        upload(state, tmp, name, data, original=original)
    assert {p.name: p.read_bytes() for p in arts.iterdir()} == before
    assert state.status_rows("s3cret") == status_before
    assert not (tmp / "x.md").exists() and not (tmp / "home" / "backups").exists()


def test_uploaded_html_and_script_are_shown_as_text(admin):
    state, arts, tmp = admin
    upload(state, tmp, "xss-note.md", small_article("xss-note", "## <img src=x onerror=alert(1)>\n\n<script>alert(1)</script>\n"))
    server = FastAPI()
    add_routes(server, state.kb)
    page = TestClient(server).get("/article/xss-note").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_admin_needs_the_password(admin):
    state, arts, tmp = admin
    for call in (lambda: state.status_rows("wrong"), lambda: state.reindex("", progress=no_progress),
                 lambda: upload(state, tmp, "my-note.md", small_article("my-note"), password="nope")):
        with pytest.raises(gr.Error, match="管理密码不正确"):
            call()
    assert not (arts / "my-note.md").exists()


def test_reindex_reports_what_changed(admin):
    state, arts, tmp = admin
    (arts / "extra-note.md").write_bytes(small_article("extra-note"))
    assert [r[2] for r in state.status_rows("s3cret") if r[0] == "extra-note"] == ["新文章，待索引"]
    report, rows = state.reindex("s3cret", progress=no_progress)
    assert "added: extra-note" in report
    assert [r[2] for r in rows if r[0] == "extra-note"] == ["已索引"]


# One round trip through gradio_client --------------------------------------------------------------------

@pytest.mark.slow
def test_gradio_client_ask_and_run_demo(tmp_path_factory):
    from gradio_client import Client

    live = live_app(tmp_path_factory)
    client = Client(live.url, verbose=False)
    result = client.predict("列表和元组有什么区别？", "", "[]", api_name="/ask")
    assert result["answerable"] is True and result["citations"][0]["slug"] == "python-list-tuple"
    assert result["demos"][0] == "list-tuple" and "**来源**" in result["text"]
    run = client.predict("mro", "{}", True, api_name="/run_demo")
    assert run["status"] == "passed" and run["checks"] and all(c["passed"] for c in run["checks"])
    assert client.predict(run["run_id"], api_name="/demo_status")["status"] == "passed"
    slugs = [a["slug"] for a in client.predict(api_name="/list_articles")]
    assert "python-list-tuple" in slugs and len(slugs) == len(list(ARTICLES.glob("*.md")))
    with pytest.raises(Exception, match="问题为空"):
        client.predict("", "", "[]", api_name="/ask")


@pytest.mark.slow
def test_queue_warm_up_is_one_read_only_call(tmp_path_factory, capsys):
    """app.py warms gradio's queue once the server listens (its first queued call costs 1-2 s): the call
    completes, logs no question, and a server that is not this app gets one line, never a traceback."""
    import http.server

    import app
    live = live_app(tmp_path_factory)
    qlog = live.state.question_log
    before = len(qlog.questions()) if qlog is not None else 0
    thread = app.warm_gradio_queue("127.0.0.1", live.port, timeout_s=30)
    thread.join(60)
    assert not thread.is_alive(), "the warm-up call did not finish"
    assert "queue warm-up skipped" not in capsys.readouterr().err
    assert (len(qlog.questions()) if qlog is not None else 0) == before, "the warm-up logged a question"

    class NotGradio(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), NotGradio)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        thread = app.warm_gradio_queue("127.0.0.1", other.server_address[1], timeout_s=10)
        thread.join(30)
    finally:
        other.shutdown()
    err = capsys.readouterr().err
    assert err.count("queue warm-up skipped") == 1 and "404" in err and "Traceback" not in err, err
