"""Two app replicas (`python app.py` processes on two ports) sharing one PostgreSQL, one Redis and one demo
worker, as in the README's deployment: 50 concurrent /ask clients across both with 0 errors; a demo
launched from replica A's page runs on the worker and shows its checks there; an article uploaded on A's
admin page is answered by B within 2 s. Everything real: servers, processes, HTTP, Chromium.

Cost: the index is not re-embedded (the session's real index is copied into PostgreSQL); each replica
loads the model once. The measured /ask latencies go to test-artifacts/replicas.json."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from servers import free_port
from shared_app import wait_up
from test_remote_runner import start_worker, stop_worker
from demos import registry

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
DEVSET = ROOT / "tests" / "data" / "devset.jsonl"
CLIENTS = 50
NEW_ARTICLE = """---
title: Python 海象运算符
slug: python-walrus
date: 2025-12-01
tags: [Python, 语法]
summary: 赋值表达式 := 的用法。
demos: []
---

## 海象运算符是什么

海象运算符 `:=` 是 Python 3.8 引入的赋值表达式（PEP 572），它在表达式内部给变量赋值，
例如 `while (chunk := f.read(8192)):` 既读取又判断，省掉一次重复调用。
"""
pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium")]


def start_replica(name: str, tmp: Path, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(tmp / f"{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--runs-dir", str(tmp / f"runs-{name}"),
                             "--no-warm-up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, pg_server, redis_url):
    import psycopg

    from kb.pg_store import PgStore
    from shared_app import real_kb
    tmp = tmp_path_factory.mktemp("replicas")
    server, admin = pg_server
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kb_replicas")
    db = admin.replace("/postgres?", "/kb_replicas?")
    kb = real_kb(tmp_path_factory)
    index = kb.loaded_index()
    PgStore(db).write(index, changed=index.manifest.articles, deleted=(), rebuild=True)
    for name in "ab":   # each replica's KB_HOME starts with the session's exported ONNX model, not a new export
        if (kb.config.home / "onnx").is_dir():
            shutil.copytree(kb.config.home / "onnx", tmp / f"home-{name}" / "onnx")
    articles = tmp / "articles"                     # the shared articles folder (an upload writes here)
    shutil.copytree(ROOT / "articles", articles)
    broker = redis_url[:-1] + "2"
    worker = start_worker(broker, tmp / "worker-runs", concurrency=2)
    env = dict(os.environ, KB_DATABASE_URL=db, KB_DEMO_BROKER=broker, KB_ARTICLES=str(articles),
               PYTHONPATH=str(ROOT))
    env.pop("KB_ADMIN_PASSWORD", None)
    procs = [start_replica(name, tmp, {**env, "KB_HOME": str(tmp / f"home-{name}")}) for name in ("a", "b")]
    try:
        from gradio_client import Client
        for (proc, url), name in zip(procs, "ab"):
            wait_up(proc, url, tmp / f"{name}.log")
            # One question per replica first (loads the model, fills its sentence cache): the load test then
            # measures serving, not start-up.
            Client(url, verbose=False).predict("列表和元组有什么区别", "", "[]", api_name="/ask")
        yield {"a": procs[0][1], "b": procs[1][1], "broker": broker, "tmp": tmp, "db": db}
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_worker(worker)


def test_fifty_concurrent_ask_clients_across_two_replicas(replicas):
    from gradio_client import Client
    clients = [Client(replicas[n], verbose=False) for n in ("a", "b")]
    questions = [json.loads(l)["question"] for l in DEVSET.read_text(encoding="utf-8").splitlines() if l.strip()]
    questions = questions[::max(1, len(questions) // CLIENTS)][:CLIENTS]

    def ask(i):
        t0 = time.perf_counter()
        try:
            out = clients[i % 2].predict(questions[i], "", "[]", api_name="/ask")
            ok = isinstance(out, dict) and out.get("text") and isinstance(out.get("answerable"), bool)
            return ok, time.perf_counter() - t0, None if ok else repr(out)[:200]
        except Exception as exc:
            return False, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:300]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(ask, range(CLIENTS)))
    wall = time.perf_counter() - t0
    errors = [e for ok, _, e in results if not ok]
    assert errors == [], f"{len(errors)} of {CLIENTS} /ask calls failed: {errors[:3]}"
    # Both replicas log into the one question log in PostgreSQL: the owner's report has every question.
    from kb.pg_analytics import PgQuestionLog
    question_log = PgQuestionLog(replicas["db"])
    logged = [r["question"] for r in question_log.questions()]
    question_log.close()
    assert [q for q in questions if q not in logged] == [] and len(logged) >= CLIENTS + 2, \
        f"{len(logged)} questions in the shared log, expected the {CLIENTS} asked and the 2 warm-ups"
    latencies = sorted(s for _, s, _ in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "replicas.json").write_text(json.dumps({
        "clients": CLIENTS, "replicas": 2, "errors": len(errors), "wall_s": round(wall, 2),
        "p50_s": round(statistics.median(latencies), 3), "p99_s": round(p99, 3), "max_s": round(latencies[-1], 3),
        "loadavg": open("/proc/loadavg").read().split()[:3]}, indent=1))


def test_demo_from_a_runs_on_the_worker_and_an_upload_on_a_is_answered_on_b(replicas):
    import redis
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    upload = replicas["tmp"] / "python-walrus.md"
    upload.write_text(NEW_ARTICLE, encoding="utf-8")
    b = Client(replicas["b"], verbose=False)
    before = b.predict("海象运算符 := 是什么", "", "[]", api_name="/ask")
    assert "python-walrus" not in [c["slug"] for c in before["citations"]]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(replicas["a"])
        # A demo launched from A's page: queued in Redis, run by the worker, its checks shown on A's page.
        page.locator("#question textarea").fill("Python 的 GC 怎么处理循环引用")
        page.locator("#send").click()
        button = page.locator("#demo-btn-0")
        button.wait_for(state="visible")
        assert button.inner_text().strip() == f"▶ 运行演示：{registry.get('gc-cycles').title}", button.inner_text()
        button.click()
        expect(page.locator("#chat-0-run-status")).to_contain_text("通过 ✓", timeout=120_000)
        # The checks are another Markdown of the same update: the browser may render it a moment later.
        expect(page.locator("#chat-0-run-checks")).to_contain_text("✓")
        checks = page.locator("#chat-0-run-checks").inner_text()
        assert checks.count("✓") >= 5 and "✗" not in checks, checks
        page.screenshot(path=str(ARTIFACTS / "replica-a-demo.png"), full_page=True)
        run_id = page.locator("#chat-0-run-status").inner_text().split("运行 ")[1].split()[0].strip("`")
        record = redis.Redis.from_url(replicas["broker"]).hgetall(f"kb:run:{run_id}")
        assert record[b"status"] == b"passed" and record[b"worker"].startswith(b"cpu-"), record
        # The upload on A's admin page.
        page.get_by_role("tab", name="知识库管理").click()
        page.locator("input[type=file]").last.set_input_files(str(upload))
        page.get_by_role("button", name="上传并更新索引").click()
        expect(page.locator("#admin-msg")).to_contain_text("已新增《Python 海象运算符》")
        uploaded = time.monotonic()
        page.screenshot(path=str(ARTIFACTS / "replica-a-upload.png"), full_page=True)
        browser.close()
    answer = None
    while time.monotonic() - uploaded < 2.0:
        answer = b.predict("海象运算符 := 是什么", "", "[]", api_name="/ask")
        if "python-walrus" in [c["slug"] for c in answer["citations"]]:
            break
        time.sleep(0.1)
    assert answer["answerable"] and answer["citations"][0]["slug"] == "python-walrus", \
        f"B did not answer from the upload within 2 s: {answer}"
