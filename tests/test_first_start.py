"""`app.py` from an empty KB_HOME (a real subprocess, the real model, real HTTP, a real browser): the page
and BM25 answers come at once, the chat page shows the semantic index's build progress, and answers turn
hybrid when the build is done, with no restart. Prints the measured times."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared_app import free_port, wait_up

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-sync"]
ARTICLES = ("python-list-tuple.md", "python-gc.md", "python-generators.md")
pytestmark = [pytest.mark.slow]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def status(base: str) -> dict:
    return json.loads(get(base + "index_status")[1])


@pytest.fixture
def app_process(tmp_path):
    port = free_port()
    home = tmp_path / "kb-home"
    # Three real articles keep the build (real model, made from scratch) short; the flow is the same.
    articles = tmp_path / "articles"
    articles.mkdir()
    for name in ARTICLES:
        shutil.copy(ROOT / "articles" / name, articles / name)
    env = {**os.environ, "KB_HOME": str(home), "KB_ARTICLES": str(articles), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("KB_EMBED_BACKEND", None)
    log = open(tmp_path / "app.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--runs-dir", str(tmp_path / "runs")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc, f"http://127.0.0.1:{port}/", home, t0, tmp_path / "app.log"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log.close()


def test_first_start_serves_bm25_at_once_then_hybrid(app_process):
    from gradio_client import Client

    proc, base, home, t0, log = app_process
    wait_up(proc, base, log, 300, path="")
    page_s = time.monotonic() - t0
    first = status(base)
    assert first["state"] == "building" and first["retrieval"] == "bm25", first
    assert not (home / "manifest.json").exists(), "the dense index does not exist yet"

    client = Client(base, verbose=False)
    t = time.monotonic()
    answer = client.predict("列表和元组有什么区别", "", "[]", api_name="/ask")
    first_answer_s = time.monotonic() - t
    assert answer["retrieval"] == "bm25", answer
    assert answer["answerable"] and answer["citations"], answer
    assert answer["citations"][0]["slug"] == "python-list-tuple", answer["citations"]
    assert all(h["dense_score"] == 0.0 for h in answer["hits"]), "BM25 only: no vector was used"
    assert status(base)["state"] == "building" and not (home / "manifest.json").exists(), \
        "the BM25 answer came before the dense index existed"

    shot = None
    if CHROMIUM.exists():
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(base)
            page.locator("#question textarea").wait_for(state="visible")
            notice = page.locator("#index-notice")
            notice.wait_for(state="visible")
            text = notice.inner_text()
            assert "语义索引正在建立" in text and "关键词检索（BM25）" in text, text
            shot = log.parent / "building.png"
            page.screenshot(path=str(shot))
            done = wait_for_ready(base, proc, log)
            page.locator("#index-notice").wait_for(state="hidden", timeout=30_000)
            browser.close()
    else:
        done = wait_for_ready(base, proc, log)
    assert (home / "manifest.json").exists() and (home / "sentences" / "manifest.json").exists()
    answer = client.predict("列表和元组有什么区别", "", "[]", api_name="/ask")
    assert answer["retrieval"] == "hybrid" and answer["answerable"], answer
    assert answer["citations"][0]["slug"] == "python-list-tuple"
    assert max(h["dense_score"] for h in answer["hits"]) > 0.5, "the dense ranker scores the hits now"
    assert proc.poll() is None, "the same process: no restart"
    client.close()
    print(f"\nfirst start: page after {page_s:.1f} s, first (BM25) answer {first_answer_s * 1000:.0f} ms over HTTP, "
          f"semantic index ready after {done['seconds']:.1f} s of building; load {os.getloadavg()[0]:.1f}; "
          f"screenshot {shot}")


def wait_for_ready(base, proc, log, timeout=900) -> dict:
    deadline = time.monotonic() + timeout
    while (s := status(base))["state"] == "building":
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, f"the semantic index was not ready within {timeout} s: {s}"
        time.sleep(1)
    assert s["state"] == "ready" and s["retrieval"] == "hybrid", s
    return s
