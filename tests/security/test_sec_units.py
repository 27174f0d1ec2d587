"""kb/security.py and the runner's limits without a server: URL cleaning, path checks, history bounds,
parameters, the rate limiter, the ASGI headers and body cap, and the demo queue's limits."""
import importlib
import math
import os
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from demos.runner import QueueFull, Runner
from kb.render import markdown_to_html
from kb.security import (Limits, RateLimiter, UnsafeInput, bound_turns, clean_url, frame_ancestors_from,
                         markdown_text, params_object, parse_history_json, text_field, uploaded_file)
from kb.security_http import SecurityMiddleware, content_security_policy, foreign_file_paths

FIXTURE = importlib.import_module("tests.runner_fixture_demo").SPEC

# Every one a browser would turn into a script (or another non-http scheme) once it has decoded it.
SCRIPT_URLS = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "\x01javascript:alert(1)",
    "\x00javascript:alert(1)", "\x1fjavascript:alert(1)", "java\tscript:alert(1)", "java\nscript:alert(1)",
    "java\rscript:alert(1)", "jav&#x61;script:alert(1)", "jav&#X61;script:alert(1)", "&#106;avascript:alert(1)",
    "&#106avascript:alert(1)", "&#0000106avascript:alert(1)", "&#x6A;avascript:alert(1)", "&#x6Aavascript:alert(1)",
    "java&#10;script:alert(1)", "java&#x09;script:alert(1)", "java&#13;script:alert(1)", "JAVA&#83;CRIPT:alert(1)",
    "jav&Tab;ascript:alert(1)", "jav&NewLine;ascript:alert(1)", "javascript&colon;alert(1)",
    "javascript&#58;alert(1)", "javascript&#x3a;alert(1)", "jav&amp;#x61;script:alert(1)",
    "java\u200bscript:alert(1)", "java\u00adscript:alert(1)", "\u202ejavascript:alert(1)",
    "vbscript:msgbox(1)", "VBScript:msgbox(1)", "data:text/html,<script>alert(1)</script>",
    "DATA:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "d&#97;ta:text/html,x", "file:///etc/passwd",
    "blob:http://127.0.0.1/x", "about:blank", "livescript:alert(1)",
]
KEPT = {
    "https://example.org/a?b=1&c=2": "https://example.org/a?b=1&c=2",
    "http://127.0.0.1:7860/": "http://127.0.0.1:7860/",
    "HTTPS://EXAMPLE.ORG/": "HTTPS://EXAMPLE.ORG/",
    "article/python-gc#引用计数": "article/python-gc#引用计数",
    "../article/x": "../article/x",
    "#section": "#section",
    "/kb-assets/a.css": "/kb-assets/a.css",
    "https://example.org/?q=a&amp;b": "https://example.org/?q=a&b",
}


@pytest.mark.parametrize("url", SCRIPT_URLS)
def test_script_urls_are_dropped_however_encoded(url):
    assert clean_url(url) is None, f"{url!r} must not survive"


@pytest.mark.parametrize("url, want", KEPT.items())
def test_http_relative_and_fragment_links_are_kept(url, want):
    assert clean_url(url) == want


@pytest.mark.parametrize("url", SCRIPT_URLS)
def test_rendered_markdown_has_no_href_for_script_urls(url):
    md_url = url.replace("\n", "&#10;").replace("\r", "&#13;").replace(" ", "%20")
    out = markdown_to_html(f"[点我]({md_url}) 和 ![图]({md_url}) 和 [引用][r]\n\n[r]: {md_url}\n")
    assert "href=" not in out and "src=" not in out, f"{url!r} rendered as {out}"
    assert out.count("<a>点我</a>") == 1, out


def test_rendered_markdown_keeps_good_links_exactly():
    out = markdown_to_html("[站外](https://example.org/a?b=1&c=2) [本文](#intro) [另一篇](../article/python-gc)")
    assert '<a href="https://example.org/a?b=1&amp;c=2">站外</a>' in out
    assert '<a href="#intro">本文</a>' in out and '<a href="../article/python-gc">另一篇</a>' in out


def test_markdown_text_escapes_link_brackets_and_html():
    assert markdown_text("a](javascript:x)[<b>") == "a\\]\\(javascript:x\\)\\[&lt;b&gt;"


def test_uploaded_file_accepts_only_files_in_the_cache(tmp_path):
    cache = tmp_path / "gradio"
    (cache / "abc").mkdir(parents=True)
    good = cache / "abc" / "note.md"
    good.write_text("x")
    outside = tmp_path / "secret.md"
    outside.write_text("x")
    (cache / "link.md").symlink_to(outside)
    assert uploaded_file(str(good), cache) == good.resolve()
    refusals = set()
    for forged in (str(outside), str(tmp_path / "missing.md"), str(cache / ".." / "secret.md"), str(cache / "link.md"),
                   "note.md", "abc/note.md", "", None, str(cache / "abc"), str(good) + "\x00.md", "/etc/passwd", 42):
        with pytest.raises(UnsafeInput) as err:
            uploaded_file(forged, cache)
        refusals.add(str(err.value))
        assert str(tmp_path) not in str(err.value)
    assert refusals == {"只接受通过本页面上传的文件；请重新选择文件上传。"}, "one message, whether the path exists or not"


def test_history_is_bounded_before_processing():
    limits = Limits(max_history_turns=3, max_history_chars=100)
    turns = [(f"问题{i}", "答" * 30) for i in range(1000)]
    kept = bound_turns(turns, limits)
    assert [q for q, _ in kept] == ["问题997", "问题998", "问题999"][-len(kept):] and len(kept) <= 3
    assert sum(len(q) + len(a) for q, a in kept) <= 100
    huge = bound_turns([("它" * 1_000_000, "它" * 1_000_000)], limits)
    assert sum(len(q) + len(a) for q, a in huge) == 100


@pytest.mark.parametrize("text, why", [
    ("{", "不是合法的 JSON"), ("{}", "必须是数组"), ('"x"', "必须是数组"), ("[1]", "第 1 项"), ('[["a"]]', "第 1 项"),
    ('[["a", 1]]', "第 1 项"), ("[" * 100_000, "过长"), (5, "必须是字符串"), ("[" * 5000 + "]" * 5000, "不是合法的 JSON"),
])
def test_bad_history_json_is_a_chinese_message(text, why):
    with pytest.raises(UnsafeInput, match=why):
        parse_history_json(text)


@pytest.mark.parametrize("text, why", [
    ('{"n": NaN}', "有限的数"), ('{"n": Infinity}', "有限的数"), ('{"n": -Infinity}', "有限的数"), ("[1, 2]", "JSON 对象"),
    ('"x"', "JSON 对象"), ("3", "JSON 对象"), ("null", "JSON 对象"), ('{"n": [1]}', "数、布尔值或文本"),
    ('{"n": {"a": 1}}', "数、布尔值或文本"), ('{"n": 1e999}', "有限的数"), ("{", "不是合法的 JSON"), (12, "必须是文本"),
    ('{"n": "' + "x" * 5000 + '"}', "过长"),
])
def test_bad_params_json_is_a_chinese_message(text, why):
    with pytest.raises(UnsafeInput, match=why):
        params_object(text)


def test_good_params_pass():
    assert params_object('{"n": 3, "x": 0.5, "flag": true, "variant": "none"}') == \
        {"n": 3, "x": 0.5, "flag": True, "variant": "none"}
    assert params_object("") == {} and params_object(None) == {}


def test_text_field_limits():
    assert text_field("问题", "q") == "问题" and text_field(None, "q") == ""
    for bad, why in ((1, "必须是文本"), (["a"], "必须是文本"), ("a\x00b", "NUL"), ("x" * 20_001, "过长")):
        with pytest.raises(UnsafeInput, match=why):
            text_field(bad, "q")


def test_rate_limiter_sliding_window():
    now = [0.0]
    limiter = RateLimiter(attempts=3, window_s=10, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a") == 10.0 and limiter.blocked("a") == 10.0
    assert limiter.check("b") == 0.0, "another client is not affected"
    now[0] = 10.5
    assert limiter.blocked("a") == 0.0 and limiter.check("a") == 0.0


def test_frame_ancestors_env_is_validated():
    assert frame_ancestors_from(None) == "'self'"
    assert frame_ancestors_from("self https://blog.example.org") == "'self' https://blog.example.org"
    assert frame_ancestors_from("https://b.org", "http://127.0.0.1:8000/blog") == "'self' http://127.0.0.1:8000 https://b.org"
    assert frame_ancestors_from("none", "https://blog.example.org") == "'none'"
    for bad in ("javascript:x", "*", "https://a.org;script-src *", "'unsafe-inline'"):
        with pytest.raises(ValueError):
            frame_ancestors_from(bad)


def _app(**kw):
    app = FastAPI()

    @app.get("/article/x")
    def page():
        return {"ok": True}

    @app.post("/echo")
    async def echo(body: dict):
        return {"n": len(str(body))}

    app.add_middleware(SecurityMiddleware, **kw)
    return TestClient(app)


def test_headers_on_every_response_and_strict_csp_on_articles():
    client = _app(max_body_bytes=1000)
    article, missing = client.get("/article/x"), client.get("/nowhere")
    for r in (article, missing):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "script-src 'self';" in article.headers["content-security-policy"], "article pages: script files only"
    assert "'unsafe-inline'" in missing.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    embed = _app(frame_ancestors="'self' https://blog.example.org").get("/article/x")
    assert "frame-ancestors 'self' https://blog.example.org" in embed.headers["content-security-policy"]
    assert "x-frame-options" not in embed.headers


def test_request_bodies_over_the_cap_are_refused():
    client = _app(max_body_bytes=1000)
    assert client.post("/echo", json={"a": "x" * 100}).status_code == 200
    big = client.post("/echo", json={"a": "x" * 2000})
    assert big.status_code == 413 and "请求过大" in big.text and big.headers["x-content-type-options"] == "nosniff"

    def chunks():
        for _ in range(20):
            yield b'{"a": "' + b"x" * 100 + b'"}'
    streamed = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, "a chunked body without Content-Length is counted as it arrives"


def test_csp_forbids_plugins_and_base():
    csp = content_security_policy()
    assert "object-src 'none'" in csp and "base-uri 'self'" in csp and "default-src 'self'" in csp


# ---- the runner's limits ------------------------------------------------------------------------------
def test_queue_and_per_client_limits(tmp_path):
    gate = tmp_path / "gate"
    runner = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False, kill_grace_s=0.5,
                    max_queue=2, max_per_client=2)
    try:
        blocker = runner.submit(FIXTURE, {"mode": "gate", "gate": str(gate)}, client="other")
        a1 = runner.submit(FIXTURE, {"mode": "pass"}, client="a")
        o2 = runner.submit(FIXTURE, {"mode": "pass"}, client="other")
        with pytest.raises(QueueFull, match="你已有 2 个演示在排队或运行（每人最多 2 个）"):
            runner.submit(FIXTURE, {"mode": "pass"}, client="other")
        with pytest.raises(QueueFull, match="演示队列已满（2 个在排队）"):
            runner.submit(FIXTURE, {"mode": "pass"}, client="c")
        assert [h.id for h in runner.history()] == [blocker.id, a1.id, o2.id], "refused runs left no trace"
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([blocker.id, a1.id, o2.id])
        gate.touch()
        assert o2.wait(60)["passed"] is True
        assert runner.submit(FIXTURE, {"mode": "pass"}, client="c").wait(60)["passed"] is True
    finally:
        runner.close()


def test_get_finds_one_run_and_refuses_forged_ids(tmp_path):
    runner = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False)
    handle = runner.submit(FIXTURE, {"mode": "pass"}, client="me")
    handle.wait(60)
    assert runner.get(handle.id) is handle
    fresh = Runner(tmp_path / "runs").get(handle.id)
    assert (fresh.id, fresh.status, fresh.client) == (handle.id, "passed", "me"), "read back from its folder alone"
    for forged in ("../runs", "/etc", "", handle.id + "/..", "x" * 500, None, 5):
        assert runner.get(forged) is None


def test_prune_by_count_and_age_keeps_live_runs(tmp_path):
    runner = Runner(tmp_path / "runs", max_concurrent=1, gpu_available=False, keep_runs=2, keep_days=1)
    done = [runner.submit(FIXTURE, {"mode": "pass"}) for _ in range(4)]
    for h in done:
        h.wait(60)
    old = done[-1].run_dir / "run.json"
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    removed = runner.prune(force=True)
    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert left == [done[2].id], f"newest 2 kept, minus the one older than a day; removed {removed}"
    assert [h.id for h in runner.history()] == [done[2].id]
    assert math.isclose(len(removed), 3)


def test_foreign_file_paths_in_api_bodies(tmp_path):
    cache = tmp_path / "gradio"
    (cache / "h").mkdir(parents=True)
    ok = {"path": str(cache / "h" / "a.md"), "meta": {"_type": "gradio.FileData"}}
    assert foreign_file_paths({"data": [ok, "pw"]}, str(cache)) == []
    forged = [{"path": "/etc/passwd", "meta": {}}, {"path": str(cache / ".." / "x.md"), "orig_name": "x.md"},
              {"path": "http://127.0.0.1:1/x", "url": None}, {"path": "relative.md", "meta": {}},
              {"path": str(cache) + "2/x.md", "is_stream": False}]
    body = {"data": [ok, [[{"role": "user", "content": [forged[0]]}]], forged[1:]]}
    assert foreign_file_paths(body, str(cache)) == [f["path"] for f in forged]
    assert foreign_file_paths({"path": "/etc/passwd"}, str(cache)) == [], "a plain 'path' text field is not a file"


def test_middleware_refuses_foreign_files_without_naming_them(tmp_path):
    seen = []
    app = FastAPI()

    @app.post("/gradio_api/call/x")
    async def call(body: dict):
        seen.append(body)
        return {"event_id": "1"}

    app.add_middleware(SecurityMiddleware, upload_folder=str(tmp_path))
    client = TestClient(app)
    r = client.post("/gradio_api/call/x", json={"data": [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]})
    assert r.status_code == 400 and r.json() == {"error": "只接受通过本页面上传的文件；请重新选择文件上传。"}
    assert "/etc" not in r.text and seen == [], "the app never saw the request"
    good = {"data": [{"path": str(tmp_path / "f.md"), "meta": {"_type": "gradio.FileData"}}, "问题"]}
    assert client.post("/gradio_api/call/x", json=good).json() == {"event_id": "1"} and seen == [good]


def test_follow_up_turns_from_gradio6_content_parts():
    """The browser sends each message's content as a list of parts; the turns must still be read."""
    from kb.ui.chat import _turns

    history = [{"role": "user", "content": [{"type": "text", "text": "什么是 C3 线性化？"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "C3 线性化……"}, {"type": "file", "file": {}}]},
               {"role": "user", "content": "&lt;b&gt;列表&lt;/b&gt;"}, {"role": "assistant", "content": {"type": "text", "text": "答"}}]
    assert _turns(history) == [("什么是 C3 线性化？", "C3 线性化……"), ("<b>列表</b>", "答")]
    many = [m for i in range(1000) for m in ({"role": "user", "content": f"问{i}"}, {"role": "assistant", "content": "答"})]
    assert _turns(many, max_turns=3) == [("问997", "答"), ("问998", "答"), ("问999", "答")]
    assert _turns("not a list") == [] and _turns([None, 5, {"role": "user"}]) == []


def test_status_calls_a_checksum_corrupt_index_corrupt(tmp_path):
    from kb.config import Config
    from kb.embedding import FakeEmbedder
    from kb.engine import KnowledgeBase

    arts = tmp_path / "articles"
    arts.mkdir()
    (arts / "python-list-tuple.md").write_bytes((Path(__file__).resolve().parents[2] / "articles" / "python-list-tuple.md").read_bytes())
    kb = KnowledgeBase(Config(articles_dir=arts, home=tmp_path / "home"), embedder=FakeEmbedder())
    kb.index()
    assert [s.state for s in kb.status()] == ["indexed"]
    vectors = next((tmp_path / "home").rglob("faiss.index"))
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    assert [s.state for s in kb.status()] == ["corrupt"], "a checksum mismatch is not 'indexed'"
