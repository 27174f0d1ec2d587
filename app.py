"""The entry point: compose the UI's tabs (kb/ui/), mount them next to the plain HTTP routes, serve.

    make run                                   # = .venv/bin/python app.py, http://127.0.0.1:7860
    .venv/bin/python app.py --host 0.0.0.0 --port 8080 --runs-dir .demo-runs --max-demos 2

`create_app(state)` builds the Blocks from one module per tab (kb/ui/chat.py, articles.py, demos.py,
admin.py; the named API endpoints in kb/ui/api.py; the state and its handlers in kb/ui/state.py).
`create_server(...)` mounts it on a FastAPI app next to the routes of kb/web.py: the article pages
(`/article/<slug>#<anchor>`, rendered by kb.render), KaTeX's files (the copy gradio ships) and the embed
example (`/web/embed.html`). Named API endpoints for gradio_client: /ask, /search, /list_articles,
/list_demos, /run_demo, /demo_status. Environment: KB_HOME, KB_ADMIN_PASSWORD, KB_LLM_BASE_URL,
KB_LLM_MODEL, KB_LLM_API_KEY (see kb/llm.py).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import copy  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="技术博客知识库：问答、文章、演示")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / ".demo-runs", help="folder for demo runs")
    parser.add_argument("--max-demos", type=int, default=2, help="demos running at once; more wait in a queue")
    parser.add_argument("--no-warm-up", action="store_true", help="load the model on the first question instead")
    return parser.parse_args(argv)


def refuse_open_admin(host: str, password: str | None) -> None:
    """Beyond loopback the admin tab (upload, delete, re-index, analytics) needs a password: exit otherwise."""
    from kb.security import is_loopback_host

    if not password and not is_loopback_host(host):
        print(f"错误：--host {host} 会让其他机器访问本应用，包括知识库管理页（上传、删除文章、问答统计），"
              "但没有设置管理密码。请设置环境变量 KB_ADMIN_PASSWORD（例如 "
              "KB_ADMIN_PASSWORD=\"$(openssl rand -base64 18)\"），或只在本机监听：--host 127.0.0.1。",
              file=sys.stderr)
        raise SystemExit(2)


def setup_logging() -> None:
    """One line per refused request or failure (kb.app, kb.answer); expected refusals print no traceback.
    Libraries' routine INFO lines are not news on the console: faiss's CPU-feature probing, one line per
    HTTP request of httpx (the queue warm-up, LLM calls)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("faiss.loader", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


class ShutdownLog(logging.Filter):
    """uvicorn's log at the end of SHUTDOWN_GRACE_S: one WARNING line that says how many connections were still
    open (readers' pages), instead of an ERROR line and one traceback (CancelledError) per cut connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Cancel ") and "timeout graceful shutdown exceeded" in message:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = (f"shutdown: {message.split()[1]} connection(s) still open after {SHUTDOWN_GRACE_S:g} s "
                          f"(readers' open pages) were closed")
            record.args = ()
            return True
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def uvicorn_log_config() -> dict:
    """uvicorn's own logging configuration with ShutdownLog on its console handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"shutdown": {"()": ShutdownLog}}
    config["handlers"]["default"]["filters"] = ["shutdown"]
    return config


_EARLY = None
if __name__ == "__main__":
    # `python app.py`: check the arguments, then start the engine (kb/prestart.py: the index, or a first
    # start's background build, and one warm answer) before gradio's import, which takes 4-6 s.
    _ARGS = parse_args()
    refuse_open_admin(_ARGS.host, os.environ.get("KB_ADMIN_PASSWORD"))
    setup_logging()
    from kb.prestart import EarlyEngine  # noqa: E402
    _EARLY = EarlyEngine.start(warm=not _ARGS.no_warm_up)

import gradio as gr  # noqa: E402

from demos.runner import make_runner  # noqa: E402
from kb.config import Config  # noqa: E402
from kb.engine import KnowledgeBase  # noqa: E402
from kb.errors import KBError  # noqa: E402
from kb import security  # noqa: E402
from kb.llm import LLMConfig  # noqa: E402
from kb.security import LIMITS, Limits  # noqa: E402
from kb.ui import admin, api, articles, chat, demos, index_status  # noqa: E402
from kb.ui.state import ChatApp  # noqa: E402  (re-exported: tests and tools build the state from app)
from kb.ui.style import CSS, add_head  # noqa: E402

__all__ = ["ChatApp", "create_app", "create_server", "build_state", "main"]

WARM_WAIT_S = 10.0     # python app.py: how long the page waits for the early warm answer at most
# On SIGTERM (docker stop, systemd, a rolling deploy) answers in flight get this long to finish. Without a bound
# uvicorn waits for every open connection, and a reader's open page holds one for good (Gradio's heartbeat
# stream): the process never exited, and the SIGKILL that came instead skipped stopping the running demos.
SHUTDOWN_GRACE_S = 5.0

def create_app(state: ChatApp) -> gr.Blocks:
    """The Blocks of the app: each tab builds its blocks, then each wires its events; `create_server` mounts it."""
    ui: dict = {}   # the components the tab modules share, by name
    # Gradio's upload cache: files older than a day are deleted hourly (the whole cache at restart).
    with gr.Blocks(title="技术博客知识库", delete_cache=(3600, 86400)) as demo:
        ui["article_state"] = gr.State("")
        ui["article_param"] = gr.Textbox(visible=False)   # filled from ?article= in the browser
        ui["banner"] = gr.HTML(visible=False)
        api.create_endpoints(state)   # first: the named endpoints keep their names (/ask, /search, ...)
        index_status.create_ui(ui, state)        # the build notice while a first index builds
        with gr.Tabs():
            chat.create_ui(ui, state.kb.articles, state.browser_secret())
            articles.create_ui(ui, list(state.kb.articles.values()))
            demos.create_ui(ui)
            admin.create_ui(ui, state.admin_password)
        chat.create_event_handlers(state, ui)
        articles.create_event_handlers(state, ui, demo)
        demos.create_event_handlers(state, ui, demo)
        admin.create_event_handlers(state, ui, demo)
        chat.create_load_handlers(state, ui, demo)
        index_status.create_event_handlers(state, ui, demo)
    return demo


def create_server(state: ChatApp, runs_dir: Path | None = None):
    """A FastAPI app: the Blocks at '/', article pages at /article/<slug>, KaTeX at /kb-assets, the embed example."""
    from fastapi import FastAPI

    from kb.web import add_routes
    from kb.ui.rest import add_rest_routes
    from kb.widget import add_widget_routes

    server = FastAPI()
    add_routes(server, state.kb)
    index_status.add_route(server, state.kb)
    add_widget_routes(server, state.kb)
    state.rest_gate = add_rest_routes(server, state)      # POST /api/ask: /ask's answer in one JSON round trip
    add_head(server)   # gradio's built-in strings in Chinese whatever the browser's language
    blocks = create_app(state)
    blocks.state_session_capacity = state.limits.max_sessions   # gradio keeps 10,000 sessions by default
    allowed = [str(Path(runs_dir or state.runner.runs_dir).resolve())]
    app = gr.mount_gradio_app(server, blocks, path="/", allowed_paths=allowed, ssr_mode=False,
                              footer_links=["api"], css=CSS, max_file_size="1mb")
    # Gradio checks that a file input's path was uploaded by the client (lies in its upload cache) only for
    # a launched app; a mounted one skips the check and copies any server file a client names into the
    # cache. The flag is what launch() sets, and the check is its only reader (gradio 6.31). The admin's
    # upload handler checks the path itself as well (kb.security.uploaded_file).
    blocks.has_launched = True
    arity = {fn.api_name: len(fn.inputs) for fn in blocks.fns.values() if isinstance(fn.api_name, str)}
    add_security(app, state.limits, state.kb.config.site_url, arity)
    return app


def add_security(app, limits: Limits = LIMITS, site_url: str | None = None,
                 api_arity: dict[str, int] | None = None) -> None:
    """CSP on every response (frame-ancestors: this origin, the blog's (KB_SITE_URL) and KB_FRAME_ANCESTORS;
    article pages allow same-origin script files only), nosniff, a cap on request bodies, file payloads only
    from gradio's upload cache, and an unknown API name answered 404, not 500 (kb/security_http.py)."""
    from kb.security_http import SecurityMiddleware

    ancestors = security.frame_ancestors_from(os.environ.get("KB_FRAME_ANCESTORS"), site_url)
    app.add_middleware(SecurityMiddleware, frame_ancestors=ancestors, max_body_bytes=limits.max_body_bytes,
                       upload_folder=gr.utils.get_upload_folder(), api_arity=api_arity)


def build_state(runs_dir: Path, max_demos: int, config: Config | None = None,
                kb: KnowledgeBase | None = None) -> ChatApp:
    """The app's state; `kb`: a knowledge base made already (kb/prestart.py), else one is made here."""
    from kb.prestart import make_knowledge_base

    if kb is None:
        kb = make_knowledge_base(config)
    # KB_DEMO_BROKER=redis://... runs demos on the Celery pool (`python -m demos worker`), else here.
    runner = make_runner(runs_dir, max_concurrent=max_demos, broker_url=os.environ.get("KB_DEMO_BROKER"),
                         max_queue=LIMITS.demo_queue_max, max_per_client=LIMITS.demo_per_client)
    return ChatApp(kb, runner, LLMConfig.from_env(), os.environ.get("KB_ADMIN_PASSWORD"))


def prepare_index(kb: KnowledgeBase):
    """Serve at once: load the index if usable, else build it in the background while BM25 answers
    (kb/warm_start.py; the page shows the progress). Returns the BuildProgress."""
    from kb import warm_start

    warm_start.start(kb)
    return announce_build(kb)


def announce_build(kb: KnowledgeBase):
    """Say on the console when a first start builds the index in the background; returns the BuildProgress."""
    progress = kb.progress
    if progress.state == "building":
        print(f"首次启动：正在后台为 {kb.config.articles_dir} 建立语义索引（{kb.store.describe()}）；"
              f"在此期间回答只用关键词检索，进度显示在页面上。", file=sys.stderr, flush=True)
    return progress


def warm_up(state: ChatApp, answer: bool = True) -> threading.Thread:
    """In the background: answer one question (`answer`; python app.py's early engine has answered it already),
    then embed and store any answer sentences the index lacks, so the first answers are fast (a first
    start's background build stores the sentences itself)."""
    from kb.prestart import warm_answer

    def work():
        if answer:
            warm_answer(state.kb)
        try:
            if state.kb.semantic_ready:
                state.kb.index_sentences()
        except Exception as exc:  # warming up is an optimisation: never take the app down
            print(f"warm-up skipped: {exc}", file=sys.stderr)

    thread = threading.Thread(target=work, name="kb-warm-up", daemon=True)
    thread.start()
    return thread


def warm_gradio_queue(host: str, port: int, timeout_s: float = 60.0) -> threading.Thread:
    """Once the server listens, make one read-only call through gradio's queue (/list_articles, as
    gradio_client calls it). Gradio's first queued call of a process costs 1-2 s more than the next ones
    (measured at load average 3.4: 1.72 s, then 0.32 s, whatever the endpoint); without this the first
    reader's question pays it. Nothing is logged: /list_articles is not a question."""
    import time

    target = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    base = f"http://[{target}]:{port}/" if ":" in target else f"http://{target}:{port}/"

    def work():
        import httpx
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with httpx.Client(base_url=base, timeout=30) as client:
                    r = client.post("gradio_api/call/list_articles", json={"data": []})
                    r.raise_for_status()
                    client.get(f"gradio_api/call/list_articles/{r.json()['event_id']}").raise_for_status()
                return
            except httpx.ConnectError:
                time.sleep(0.05)                  # not listening yet
            except Exception as exc:  # noqa: BLE001 - an optimisation: one line, never a traceback
                print(f"queue warm-up skipped: {str(exc)[:200]}", file=sys.stderr, flush=True)
                return

    thread = threading.Thread(target=work, name="kb-queue-warm-up", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None, early=None) -> None:
    """Serve the app. `early`: the kb.prestart.EarlyEngine started before gradio's import (python app.py)."""
    args = parse_args(argv)
    refuse_open_admin(args.host, os.environ.get("KB_ADMIN_PASSWORD"))
    import uvicorn

    setup_logging()

    try:
        if early is None:
            state = build_state(args.runs_dir, args.max_demos)
            prepare_index(state.kb)
        else:
            state = build_state(args.runs_dir, args.max_demos, kb=early.knowledge_base())
            announce_build(state.kb)
    except KBError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not args.no_warm_up:
        warm_up(state, answer=early is None)
    server = create_server(state, args.runs_dir)
    if early is not None:
        if not args.no_warm_up and not early.wait_warm(WARM_WAIT_S):
            print(f"warm-up still running after {WARM_WAIT_S:g} s; serving anyway", file=sys.stderr, flush=True)
        early.serving.set()        # a first start's build may load the model now
    print(f"serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    if not args.no_warm_up:
        warm_gradio_queue(args.host, args.port)
    # uvicorn stops serving on SIGTERM, then raises the signal again with the handler it found: this one unwinds
    # (SystemExit) through the `finally` below, which stops the running demos, instead of ending the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        uvicorn.run(server, host=args.host, port=args.port, log_level="warning", log_config=uvicorn_log_config(),
                    timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    finally:
        state.runner.close()


if __name__ == "__main__":
    main(early=_EARLY)
