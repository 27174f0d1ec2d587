"""Bad input against the real app over HTTP (gradio's /gradio_api/call protocol, no gradio_client): every
kind gets a clear Chinese message (or a 4xx for a malformed HTTP request), never a 500 or a traceback in the
server's log, exactly one log line per refusal, and nothing written. Forged file paths through the upload
event, the demo queue's limits, the admin rate limit, the security headers.

The read-only endpoints run against the session's shared live app (real index); uploads, queue limits and
the admin password against a small sandbox app (fake embedder, its own articles folder), so a failing
test can never write into the project's articles/.
"""
import dataclasses
import json
import logging
import re
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared_app import ROOT, LiveApp, live_app

FIXTURE_DEMO = "tests.runner_fixture_demo"
CJK = re.compile(r"[\u4e00-\u9fff]")
LEAKS = ("Traceback", "File \"", "/tmp/", "/work/", "/etc/", "site-packages", "Error:")
pytestmark = pytest.mark.slow


def call(client: httpx.Client, name: str, data, session: str | None = None) -> tuple[int, str, object]:
    """POST /gradio_api/call/<name> then read its event stream: (HTTP status, event, payload)."""
    body = {"data": data} if session is None else {"data": data, "session_hash": session}
    r = client.post(f"gradio_api/call/{name}", json=body)
    if r.status_code != 200:
        return r.status_code, "http", r.text
    stream = client.get(f"gradio_api/call/{name}/{r.json()['event_id']}")
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream.text)
    assert events, f"no event in {stream.text[:300]!r}"
    event, payload = events[-1]
    return stream.status_code, event, json.loads(payload)


def error_text(payload) -> str:
    return payload.get("error") if isinstance(payload, dict) else str(payload)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return live_app(tmp_path_factory)


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.url, timeout=120) as client:
        yield client


def runs_listing(app) -> list[str]:
    return sorted(p.name for p in Path(app.state.runner.runs_dir).iterdir())


# ---- ≥ 100 kinds of bad input, each a Chinese message ---------------------------------------------------
LONG = "列" * 20_001
BAD = [
    # /ask: question
    *[("ask", [q, "", "[]"], why) for q, why in [
        ("", "问题为空"), ("   ", "问题为空"), ("\n\t", "问题为空"), (None, "问题为空"), (123, "必须是文本"), (1.5, "必须是文本"),
        (True, "必须是文本"), ([], "必须是文本"), (["问题"], "必须是文本"), ({"q": "x"}, "必须是文本"), (LONG, "过长"),
        ("a\x00b", "NUL")]],
    # /ask: history_json
    *[("ask", ["列表和元组有什么区别？", "", h], why) for h, why in [
        ("{", "不是合法的 JSON"), ("nope", "不是合法的 JSON"), ("{}", "必须是数组"), ('"x"', "必须是数组"), ("1", "必须是数组"),
        ("null", "必须是数组"), ("[1]", "第 1 项"), ('[["q"]]', "第 1 项"), ('[["q", "a", "b"]]', "第 1 项"), ('[["q", 1]]', "第 1 项"),
        ('[[null, "a"]]', "第 1 项"), ('[{"q": "a"}]', "第 1 项"), ('["qa"]', "第 1 项"), ("[" * 70_000, "过长"),
        ("[" * 5_000 + "]" * 5_000, "不是合法的 JSON"), (7, "必须是字符串"), ([["q", "a"]], "必须是字符串"), ("NaN", "必须是数组")]],
    # /ask: article (a bad slug is ignored, the question is still checked)
    *[("ask", ["", a, "[]"], "问题为空") for a in ("../../etc/passwd", "<script>", 5, ["x"], "x" * 30_000)],
    # /search
    *[("search", [q, 5, ""], why) for q, why in [
        ("", "问题为空"), (None, "问题为空"), (42, "必须是文本"), ({"a": 1}, "必须是文本"), (LONG, "过长"), ("a\x00", "NUL")]],
    *[("search", ["列表", k, ""], "参数 k") for k in ("abc", "5", None, [5], {"k": 5}, True, "", "NaN")],
    # /run_demo
    *[("run_demo", [d, "{}", False], why) for d, why in [
        ("no-such-demo", "没有这个演示"), ("", "不能为空"), (None, "不能为空"), (5, "必须是文本"), (["mro"], "必须是文本"),
        ("../../etc/passwd", "没有这个演示"), ("<img src=x onerror=alert(1)>", "没有这个演示"), ("mro\x00", "NUL"),
        ("x" * 30_000, "过长")]],
    *[("run_demo", ["mro", p, False], why) for p, why in [
        ("{", "不是合法的 JSON"), ("[1]", "JSON 对象"), ('"x"', "JSON 对象"), ("3", "JSON 对象"), ("null", "JSON 对象"),
        ('{"hierarchies": NaN}', "有限的数"), ('{"hierarchies": Infinity}', "有限的数"), ('{"hierarchies": -Infinity}', "有限的数"),
        ('{"hierarchies": 1e999}', "有限的数"), ('{"hierarchies": [1]}', "数、布尔值或文本"), ('{"hierarchies": {"a": 1}}', "数、布尔值或文本"),
        ('{"hierarchies": 100000000}', "参数有误"), ('{"hierarchies": -5}', "参数有误"), ('{"hierarchies": "many"}', "参数有误"),
        ('{"no_such_param": 1}', "参数有误"), ('{"hierarchies": true}', "参数有误"), ('{"x": "' + "y" * 5000 + '"}', "过长"),
        (5, "必须是文本"), ({"hierarchies": 3}, "必须是文本")]],
    *[("run_demo", ["mro", "{}", w], "参数 wait") for w in ("yes", 1, "true", None, [True])],
    # /demo_status
    *[("demo_status", [r], why) for r, why in [
        ("", "没有编号为"), ("no-such-run", "没有编号为"), ("../../etc/passwd", "没有编号为"), ("/etc/passwd", "没有编号为"),
        ("20260101-000000-mro-abcdef", "没有编号为"), (None, "没有编号为"), (5, "没有编号为"), (["x"], "没有编号为"),
        ("<script>alert(1)</script>", "没有编号为"), ("x" * 10_000, "没有编号为"), ("..", "没有编号为")]],
    ("ask", ["\u3000\u3000", "", "[]"], "问题为空"), ("search", ["\u3000", 5, ""], "问题为空"),
    ("demo_status", [{"run_id": "x"}], "没有编号为"), ("run_demo", ["mro", '{"seed": 1.5}', False], "参数有误"),
    ("run_demo", ["mro", '{"seed": 2147483648}', False], "参数有误"),
    # wrong number of values for a named endpoint
    ("ask", [], "参数个数不对"), ("ask", ["问题"], "参数个数不对"), ("search", [], "参数个数不对"),
    ("run_demo", [], "参数个数不对"), ("demo_status", [], "参数个数不对"),
]


def test_there_are_at_least_100_kinds():
    assert len(BAD) >= 100, len(BAD)


@pytest.mark.parametrize("name, data, why", BAD, ids=[f"{i:03d}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_clear_chinese_message(live, http, caplog, capfd, name, data, why):
    before = runs_listing(live)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        status, event, payload = call(http, name, data)
    message = error_text(payload) if event in ("error", "http") else None
    if event == "http":
        assert status == 400, f"{name}: HTTP {status} {payload!r}"
        message = json.loads(payload)["error"]
    assert event in ("error", "http") and message, f"{name}{data!r:.80}: expected a refusal, got {event} {payload!r:.200}"
    assert why in message and CJK.search(message), f"{message!r} should say {why!r} in Chinese"
    sent = json.dumps(data, ensure_ascii=False)
    assert not any(leak in message and leak not in sent for leak in LEAKS), f"message leaks internals: {message!r}"
    refusals = [r for r in caplog.records if r.name.startswith("kb.") and "refused" in r.getMessage()]
    assert len(refusals) == 1, f"one log line per refusal, got {[r.getMessage() for r in caplog.records]}"
    err = capfd.readouterr().err
    assert "Traceback" not in err, f"traceback in the server log:\n{err[-1500:]}"
    assert runs_listing(live) == before, "a refused request wrote nothing"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"data": "x"}', b'{"data": 5}', b"[1, 2]", b"{", b"null",
                                  b'{"data": {"question": "x"}}', b"[" * 5000])
@pytest.mark.parametrize("name", ["ask", "search", "run_demo"])
def test_malformed_http_bodies_are_400_in_chinese(http, capfd, body, name):
    r = http.post(f"gradio_api/call/{name}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and 'JSON 对象，形如 {"data"' in r.json()["error"], r.text[:200]
    assert "Traceback" not in capfd.readouterr().err


def test_unknown_api_name_is_404_not_500(http, capfd):
    r = http.post("gradio_api/call/no_such_api", json={"data": ["x"]})
    assert r.status_code == 404 and r.text == "没有这个接口。"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "Traceback" not in capfd.readouterr().err


def test_oversize_body_is_413(http):
    r = http.post("gradio_api/call/ask", content=b'{"data": ["' + b"x" * (3 * 1024 * 1024) + b'", "", "[]"]}',
                  headers={"content-type": "application/json"})
    assert r.status_code == 413 and "请求过大" in r.text


def test_heaviest_accepted_history_is_cut_before_work(http):
    """The largest history the API accepts (64 K chars of 它) is answered, from the last turns only."""
    history = json.dumps([["它" * 3000, "它" * 3000] for _ in range(5)] + [["什么是 C3 线性化？", "……"]], ensure_ascii=False)
    assert len(history) < 64 * 1024
    status, event, payload = call(http, "ask", ["那它是怎么算的？", "", history])
    assert event == "complete", payload
    assert payload[0]["citations"][0]["slug"] == "python-inheritance-mro", payload[0]["searched"]


def test_security_headers_on_every_page(http):
    for path, strict in (("", False), ("article/python-gc", True), ("web/embed.html", False), ("config", False),
                         ("no/such/page", False)):
        r = http.get(path)
        csp = r.headers.get("content-security-policy", "")
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp, path
        inline = "'unsafe-inline'" in csp.split("script-src", 1)[1].split(";", 1)[0]
        assert inline is not strict, f"{path}: strict={strict} but script-src is {csp}"


# ---- the sandbox app: uploads, queue limits, the admin password ----------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from app import ChatApp
    from demos.runner import Runner
    from kb.config import Config
    from kb.embedding import FakeEmbedder
    from kb.engine import KnowledgeBase

    tmp = tmp_path_factory.mktemp("sandbox")
    (tmp / "articles").mkdir()
    shutil.copy(ROOT / "articles" / "python-list-tuple.md", tmp / "articles")
    kb = KnowledgeBase(Config(articles_dir=tmp / "articles", home=tmp / "home"), embedder=FakeEmbedder())
    kb.index()
    runner = Runner(tmp / "runs", max_concurrent=1, gpu_available=False, kill_grace_s=0.5, max_queue=2, max_per_client=2)
    app = LiveApp(ChatApp(kb, runner, admin_password="pw"))
    secret = tmp / "secret-note.md"    # a valid article the server can read but nobody uploaded
    secret.write_text((ROOT / "articles" / "python-gc.md").read_text("utf-8").replace("slug: python-gc", "slug: secret-note"))
    yield app, tmp, secret
    runner.close()
    app.stop()


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def join_queue(client: httpx.Client, fn_index: int, data: list) -> tuple[int, str]:
    session = uuid.uuid4().hex
    r = client.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                   "event_data": None, "trigger_id": None})
    if r.status_code != 200:
        return r.status_code, r.text
    return r.status_code, client.get("gradio_api/queue/data", params={"session_hash": session}).text


def upload_fn(client) -> int:
    cfg = client.get("config").json()
    files = {c["id"] for c in cfg["components"] if c.get("type") == "file"}
    return next(d["id"] for d in cfg["dependencies"] if set(d["inputs"]) & files)


def forged_files(tmp: Path, secret: Path) -> list:
    cache = Path(__import__("gradio").utils.get_upload_folder())
    paths = [str(secret), str(tmp / "missing.md"), "/etc/passwd", str(ROOT / "articles" / "python-gc.md"),
             str(cache / ".." / secret.name), f"{cache}/../../{secret}", "secret-note.md", "", "http://127.0.0.1:9/x.md",
             str(secret) + "\x00.md"]
    return [{"path": p, "meta": {"_type": "gradio.FileData"}, "orig_name": "secret-note.md"} for p in paths]


def test_forged_file_paths_are_refused_everywhere(sandbox, capfd):
    app, tmp, secret = sandbox
    before = snapshot(tmp / "articles")
    with httpx.Client(base_url=app.url, timeout=60) as client:
        fn = upload_fn(client)
        for payload in forged_files(tmp, secret):
            direct = client.post("gradio_api/call/upload", json={"data": [payload, "pw"]})
            for how, (status, text) in (("call", (direct.status_code, direct.text)),
                                        ("join", join_queue(client, fn, [payload, "pw"]))):
                assert status == 400, f"{how} {payload['path']!r}: {status} {text[:200]}"
                assert json.loads(text) == {"error": "只接受通过本页面上传的文件；请重新选择文件上传。"}, text
                assert str(tmp) not in text and "/etc" not in text
        # The same file inside the chat's history (a file message) is refused as well.
        status = client.post("gradio_api/call/chat_send", json={"data": ["问题", [{"role": "user", "content": [
            forged_files(tmp, secret)[0]]}], ""]}).status_code
        assert status == 400
    assert snapshot(tmp / "articles") == before and "secret-note" not in app.state.kb.articles
    assert "Traceback" not in capfd.readouterr().err


def test_handler_checks_the_path_itself(sandbox):
    """Even called directly (no gradio in front), the upload handler reads only files in the upload cache."""
    import gradio as gr

    app, tmp, secret = sandbox
    before = snapshot(tmp / "articles")
    for payload in forged_files(tmp, secret)[:-3] + forged_files(tmp, secret)[-2:]:   # "" is "no file chosen"
        with pytest.raises(gr.Error, match="只接受通过本页面上传的文件"):
            app.state.upload_article(payload["path"], "pw", None, progress=lambda *a, **k: None)
    assert snapshot(tmp / "articles") == before


def test_real_upload_through_the_cache_is_accepted(sandbox):
    """The path a client gets from /gradio_api/upload is accepted: the check refuses only foreign files."""
    app, tmp, secret = sandbox
    with httpx.Client(base_url=app.url, timeout=60) as client:
        body = secret.read_bytes().replace(b"slug: secret-note", b"slug: uploaded-note")
        uploaded = client.post("gradio_api/upload", files={"files": ("uploaded-note.md", body, "text/markdown")}).json()
        payload = {"path": uploaded[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "uploaded-note.md"}
        status, event, out = call(client, "upload", [payload, "pw"])
    assert event == "complete" and out[0].startswith("已新增"), out
    assert (tmp / "articles" / uploaded[0].rsplit("/", 1)[1]).read_bytes() == body
    (tmp / "articles" / uploaded[0].rsplit("/", 1)[1]).unlink()


def test_demo_queue_limits_over_http(sandbox):
    import importlib

    app, tmp, _ = sandbox
    gate = tmp / "gate"
    spec = importlib.import_module(FIXTURE_DEMO).SPEC
    blocker = app.state.runner.submit(spec, {"mode": "gate", "gate": str(gate)}, client="someone-else")
    limits = app.state.limits
    try:
        with httpx.Client(base_url=app.url, timeout=60) as client:
            me, other, third = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
            first = call(client, "run_demo", ["mro", "{}", False], me)
            second = call(client, "run_demo", ["mro", "{}", False], me)
            assert first[1] == second[1] == "complete" and second[2][0]["status"] == "queued", second
            mine = call(client, "run_demo", ["mro", "{}", False], me)
            assert mine[1] == "error" and "每人最多 2 个" in error_text(mine[2]), mine
            full = call(client, "run_demo", ["mro", "{}", False], other)
            assert full[1] == "error" and "演示队列已满" in error_text(full[2]), full
            # Runs are private to the session that started them.
            run_id = first[2][0]["run_id"]
            assert call(client, "demo_status", [run_id], me)[2][0]["run_id"] == run_id
            peek = call(client, "demo_status", [run_id], third)
            assert peek[1] == "error" and "只能查看自己启动的运行" in error_text(peek[2])
            assert len([p for p in (tmp / "runs").iterdir()]) == 3, "refused runs wrote no folder"
            # wait=True is bounded (here 2 s) and holds no slot another client needs.
            app.state.runner.get(second[2][0]["run_id"]).cancel()
            app.state.limits = dataclasses.replace(app.state.limits, wait_max_s=2.0)
            t0 = time.monotonic()
            waited = call(client, "run_demo", ["mro", "{}", True], third)
            assert waited[1] == "complete" and waited[2][0]["status"] == "queued" and not waited[2][0]["done"], waited
            assert 2.0 <= time.monotonic() - t0 < 30, "the wait ends at the bound, with the run still queued"
    finally:
        app.state.limits = limits
        gate.touch()
        blocker.wait(60)
        for h in app.state.runner.history():
            h.cancel()


def test_wrong_admin_passwords_are_rate_limited(sandbox):
    from kb.security import RateLimiter

    app, tmp, _ = sandbox
    app.state.admin_limiter = RateLimiter(attempts=3, window_s=60)
    with httpx.Client(base_url=app.url, timeout=60) as client:
        fn = next(d["id"] for d in client.get("config").json()["dependencies"] if d["api_name"] == "status_rows")
        answers = [join_queue(client, fn, [f"guess{i}"])[1] for i in range(5)]
        right = join_queue(client, fn, ["pw"])[1]
    assert all("管理密码不正确" in a for a in answers[:3]), answers[:3]
    assert all("密码错误次数过多" in a for a in answers[3:]), answers[3:]
    assert "密码错误次数过多" in right, "while blocked even the right password waits"


# ---- POST /api/ask: the same answer and the same refusals in one JSON round trip -----------------------
REST_BAD = [(data, why) for name, data, why in BAD
            if name == "ask" and len(data) == 3 and not isinstance(data[2], list)]


def rest(client: httpx.Client, body) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post("api/ask", content=body, headers={"content-type": "application/json"})
    return client.post("api/ask", json=body)


def test_rest_ask_answers_as_ask_does(live, http):
    question = "生成器为什么省内存？"
    status, event, payload = call(http, "ask", [question, "", "[]"])
    assert event == "complete", payload
    before = len(live.state.question_log.questions())
    r = rest(http, {"question": question})
    assert len(live.state.question_log.questions()) == before + 1, "an answered question is logged"
    assert r.status_code == 200, r.text[:300]
    got, want = r.json(), payload[0]
    assert got["answerable"] is True and got["citations"][0]["slug"] == "python-generators", got["citations"]
    assert (got["text"], got["citations"], got["demos"]) == (want["text"], want["citations"], want["demos"])


def test_rest_ask_takes_history_as_a_list_and_the_article(http):
    r = rest(http, {"question": "那它是怎么算的？", "article": "python-inheritance-mro",
                    "history": [["什么是 C3 线性化？", "……"]]})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["citations"][0]["slug"] == "python-inheritance-mro", r.json()["searched"]


@pytest.mark.parametrize("data, why", REST_BAD, ids=[f"{i:02d}" for i in range(len(REST_BAD))])
def test_rest_ask_refuses_what_ask_refuses(live, http, caplog, capfd, data, why):
    logged = live.state.question_log
    before = len(logged.questions())
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        r = rest(http, {"question": data[0], "article": data[1], "history_json": data[2]})
    assert r.status_code == 400, f"{data!r:.80}: HTTP {r.status_code} {r.text[:200]}"
    message = r.json()["error"]
    assert why in message and CJK.search(message), f"{message!r} should say {why!r} in Chinese"
    refusals = [x for x in caplog.records if x.name.startswith("kb.") and "refused" in x.getMessage()]
    assert len(refusals) == 1, [x.getMessage() for x in caplog.records]
    assert "Traceback" not in capfd.readouterr().err
    assert len(logged.questions()) == before, "a refused question is not logged"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"x"', b"5", b"null", b"{", b"[" * 5000, b""])
def test_rest_ask_malformed_bodies_are_400_in_chinese(http, capfd, body):
    r = rest(http, body)
    assert r.status_code == 400 and "JSON 对象" in r.json()["error"], (r.status_code, r.text[:200])
    assert "Traceback" not in capfd.readouterr().err


def test_rest_ask_oversize_body_is_413(http):
    r = rest(http, b'{"question": "' + b"x" * (3 * 1024 * 1024) + b'"}')
    assert r.status_code == 413 and "请求过大" in r.text


def test_rest_ask_full_gate_is_503_at_once(live, http):
    gate = live.state.rest_gate
    saved, gate.max_pending = gate.max_pending, 0
    try:
        r = rest(http, {"question": "列表和元组有什么区别？"})
    finally:
        gate.max_pending = saved
    assert r.status_code == 503 and r.json()["error"] == "服务繁忙，请稍后再试。", r.text
    assert r.headers["retry-after"] == "1"
    assert rest(http, {"question": "列表和元组有什么区别？"}).status_code == 200, "the gate reopens"


@pytest.mark.parametrize("url", ["gradio_api/call/ask/no-such-event", "gradio_api/queue/data?session_hash=no-such-session"])
def test_polling_an_unknown_event_or_session_logs_one_line_not_a_traceback(http, caplog, capfd, url):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        r = http.get(url)
    assert r.status_code == 200 and "404: Not Found" in r.text, r.text[:200]   # gradio's own answer, unchanged
    time.sleep(0.2)   # the server logs after the stream ends
    assert "Traceback" not in capfd.readouterr().err
    lines = [x.getMessage() for x in caplog.records if x.name == "kb.security"]
    assert len(lines) == 1 and "after the response began" in lines[0], lines
