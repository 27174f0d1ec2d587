"""Shared by the answer, app, tools and browser tests: ONE real knowledge base and ONE live app per session.

Building the real index (the real articles, the real m3e-small model) costs most of these tests' time, so
it is built once per pytest process into a temporary KB_HOME, whichever test file asks first, and the live
server (uvicorn in a thread on a free loopback port) reuses it. Not a test module: imported by them.

For quick local iterations, KB_TEST_INDEX_SEED=<a KB_HOME built earlier> copies that index into the
temporary home first; indexing is incremental, so only changed articles are embedded again.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")          # Debian's chromium: Playwright cannot download browsers here
ARTIFACTS = ROOT / "test-artifacts"           # screenshots
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 120_000
_kb = None
_server = None
_lock = threading.Lock()


def real_kb(tmp_path_factory):
    """The session's KnowledgeBase over the real articles, indexed once."""
    global _kb
    with _lock:
        if _kb is None:
            from kb.config import Config
            from kb.engine import KnowledgeBase

            home = tmp_path_factory.mktemp("real-kb-home")
            seed = os.environ.get("KB_TEST_INDEX_SEED")
            if seed and Path(seed).is_dir():
                shutil.copytree(seed, home, dirs_exist_ok=True)
            kb = KnowledgeBase(Config(articles_dir=ROOT / "articles", home=home))
            kb.index()
            _kb = kb
    return _kb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(proc, url: str, log: Path, timeout: float = 180, path: str = "config") -> None:
    """Return once an `app.py` subprocess serves `url + path`; fail with its log's tail if it exits or times out."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"app.py at {url} not up in {timeout:g} s: {log.read_text(errors='replace')[-2000:]}")


class LiveApp:
    """The app served by uvicorn in a daemon thread; `url` ends with '/'."""

    def __init__(self, state):
        import uvicorn

        from app import create_server

        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # A browser page left open holds a stream: stop() cuts it after a second, as app.py does after its grace.
        config = uvicorn.Config(create_server(state), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="live-app")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live app did not start within 60 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def live_app(tmp_path_factory, max_demos: int = 2) -> LiveApp:
    """The session's live app over `real_kb`, with its own runs folder."""
    global _server
    with _lock:
        if _server is not None:
            return _server
    kb = real_kb(tmp_path_factory)
    from app import ChatApp
    from demos.runner import Runner

    state = ChatApp(kb, Runner(tmp_path_factory.mktemp("live-runs"), max_concurrent=max_demos))
    with _lock:
        if _server is None:
            _server = LiveApp(state)
    return _server


def chromium_browser():
    """Body of the browser tests' module-scoped `browser` fixture: headless Debian chromium via Playwright."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
