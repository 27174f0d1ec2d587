"""The Gradio app: chat with grounded answers, article pages, demos, the admin tab and the API.

    make run                                   # = .venv/bin/python app.py, http://127.0.0.1:7860
    .venv/bin/python app.py --host 0.0.0.0 --port 8080 --runs-dir .demo-runs --max-demos 2

UI only: handlers are methods of `ChatApp` that call `kb` and `demos` and yield; `create_app(...)` wires
them into a `gr.Blocks`, `create_server(...)` mounts it on a FastAPI app next to the plain HTTP routes of
kb/web.py: the article pages (`/article/<slug>#<anchor>`, rendered by kb.render), KaTeX's files (the copy
gradio ships) and the embed example (`/web/embed.html`). A demo run is shown in a `RunPanel` that
`stream_view` updates while the run goes; what the run's status, checks and files look like comes from
demos/present.py. Named API endpoints for gradio_client: /ask, /search, /list_articles,
/list_demos, /run_demo, /demo_status. Environment: KB_HOME, KB_ADMIN_PASSWORD, KB_LLM_BASE_URL,
KB_LLM_MODEL, KB_LLM_API_KEY (see kb/llm.py).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import hmac  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from demos import present, registry  # noqa: E402
from demos.runner import QueueFull, Runner  # noqa: E402
from demos.spec import DemoParamError, DemoSpec  # noqa: E402
from kb.answer import Answer, stream_answer  # noqa: E402
from kb.config import Config  # noqa: E402
from kb.engine import KnowledgeBase  # noqa: E402
from kb.errors import KBError, QueryError  # noqa: E402
from kb import security  # noqa: E402
from kb.llm import LLMConfig  # noqa: E402
from kb.security import LIMITS, Limits, RateLimiter, UnsafeInput  # noqa: E402
from kb.upload import UploadError, save_article  # noqa: E402

log = logging.getLogger("kb.app")

ROOT = Path(__file__).resolve().parent
MAX_LINKED_DEMOS = 3               # demo buttons under an answer
POLL_S = 0.25                      # how often a run's panel is refreshed while it runs
SHOWN_QUESTION_CHARS = 600         # a longer question is shown shortened in the chat (searched as the engine allows)
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
CSS = """
#evidence table { font-size: .85em; } .kb-banner { padding: .4em .8em; background: #f0f6ff; border-radius: 6px; }
#run-checks li { list-style: none; }
"""


class ChatApp:
    """The app's state (knowledge base, runner, LLM, admin password) and every handler."""

    def __init__(self, kb: KnowledgeBase, runner: Runner, llm: LLMConfig | None = None,
                 admin_password: str | None = None, limits: Limits = LIMITS, upload_dir: Path | None = None):
        self.kb, self.runner, self.llm = kb, runner, llm
        self.admin_password = admin_password or None
        self.limits = limits
        # Files a client uploaded lie in gradio's upload cache; nothing else may be read as an upload.
        self.upload_dir = Path(upload_dir) if upload_dir else Path(gr.utils.get_upload_folder())
        self.admin_limiter = RateLimiter(attempts=10, window_s=60.0)   # wrong passwords per client address
        self._index_lock = threading.Lock()

    # ---- chat ---------------------------------------------------------------------------------------
    def ask(self, question: str, history: list | None, article: str = "", request: gr.Request = None):
        """Chat handler: yields (chatbot messages, cleared textbox, evidence, linked demo ids, 3 buttons)."""
        try:
            question = security.text_field(question, "问题", self.limits).strip()
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "chat") from None
        history = list(history or []) if isinstance(history, list) else []
        if not question:
            raise refuse("请输入问题：问题不能为空。", request, "chat")
        limit = self.kb.config.max_question_chars
        if len(question) > limit:
            gr.Warning(f"问题有 {len(question)} 字，超过 {limit} 字，只检索了前 {limit} 字。")
        turns = security.bound_turns(_turns(history, self.limits.max_history_turns), self.limits)
        try:
            stream = stream_answer(self.kb, question, turns, prefer_slug=self._slug_or_none(article), llm=self.llm)
        except QueryError as exc:
            raise refuse(str(exc), request, "chat") from None
        except KBError as exc:
            log.error("chat failed: %s", exc)
            raise refuse("知识库出错，请稍后再试或联系管理员。", request, "chat") from None
        history.append({"role": "user", "content": _shown_question(question)})
        history.append({"role": "assistant", "content": ""})
        evidence = evidence_markdown(stream.answer)
        yield history, "", evidence, [], *demo_buttons([])
        for delta in stream:
            history[-1]["content"] += delta
            yield history, "", evidence, [], *demo_buttons([])
        result = stream.answer
        yield history, "", evidence_markdown(result), result.demos, *demo_buttons(result.demos)

    def _slug_or_none(self, slug: str | None) -> str | None:
        slug = (slug or "").strip() if isinstance(slug, str) else ""
        return slug if slug in self.kb.articles else None

    def on_load(self, article: str):
        """Page load: the embed passes ?article=<slug> (read in the browser) and ?embed=1 hides other tabs."""
        slug = self._slug_or_none(article)
        if not slug:
            return "", gr.update(value="", visible=False)
        title = html.escape(self.kb.article(slug).title)
        return slug, gr.update(value=f'<div class="kb-banner">正在阅读《{title}》：回答会优先参考这篇文章。</div>',
                               visible=True)

    # ---- demos --------------------------------------------------------------------------------------
    def start_demo(self, demo_id: str, params: dict | None = None, request: gr.Request = None):
        """Submit a run for this client (its session): RunHandle, or gr.Error for an unknown demo, a bad
        parameter or a full queue."""
        try:
            demo_id = security.text_field(demo_id, "demo_id", self.limits, required=True)
            return self.runner.submit(demo_id, params or {}, client=client_key(request))
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "demo") from None
        except registry.UnknownDemo as exc:
            raise refuse(html.escape(str(exc)[:300], quote=False), request, "demo") from None
        except QueueFull as exc:
            raise refuse(str(exc), request, "demo") from None
        except (DemoParamError, ValueError, TypeError) as exc:
            raise refuse(f"参数有误：{html.escape(str(exc)[:300], quote=False)}", request, "demo") from None

    def run_linked_demo(self, index: int, demo_ids: list[str], request: gr.Request = None):
        """A demo button under an answer: run the index-th linked demo and stream its view."""
        if not isinstance(demo_ids, list) or index >= len(demo_ids):
            raise refuse("这个回答没有对应的演示。", request, "demo")
        yield from stream_view(self.start_demo(demo_ids[index], request=request), self.runner.max_concurrent)

    def run_demo_form(self, demo_id: str, *values, request: gr.Request = None):
        """The Demos tab: parameters in the spec's order (advanced ones included)."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        yield from stream_view(self.start_demo(demo_id, params, request), self.runner.max_concurrent)

    def own_run(self, run_id, request: gr.Request = None):
        """The run with this id when this client started it, else None (runs are private to a session)."""
        handle = self.runner.get(run_id) if isinstance(run_id, str) else None
        return handle if handle is not None and handle.client == client_key(request) else None

    def cancel_run(self, run_id: str, request: gr.Request = None):
        handle = self.own_run(run_id, request)
        if handle is None or handle.done:
            return "没有正在运行的演示。"
        handle.cancel()
        return f"已请求停止 {run_id}。"

    def history_rows(self, request: gr.Request = None) -> list[list]:
        """This client's runs only: another visitor's runs (and logs) are not shown."""
        me = client_key(request)
        return present.history_rows(h for h in self.runner.load_history() if h.client == me)

    # ---- admin --------------------------------------------------------------------------------------
    def _check_password(self, password: str | None, request: gr.Request = None) -> None:
        """Refuse a wrong password; a client address with too many wrong ones waits (rate limit)."""
        if not self.admin_password:
            return
        host = client_host(request)
        if self.admin_limiter.blocked(host):
            raise refuse("密码错误次数过多，请稍后再试。", request, "admin")
        if not isinstance(password, str) or not hmac.compare_digest(password.encode(), self.admin_password.encode()):
            self.admin_limiter.check(host)
            raise refuse("管理密码不正确。", request, "admin")

    def status_rows(self, password: str | None = None, request: gr.Request = None) -> list[list]:
        self._check_password(password, request)
        labels = {"indexed": "已索引", "changed": "已修改，待重建", "new": "新文章，待索引",
                  "deleted": "已删除，待重建", "unreadable": "无法读取"}
        return [[s.slug or Path(s.path).name, s.title, labels.get(s.state, s.state), s.chunks, s.error or ""]
                for s in self.kb.status()]

    def reindex(self, password: str | None = None, request: gr.Request = None, progress=gr.Progress()):
        self._check_password(password, request)
        if not self._index_lock.acquire(blocking=False):
            raise refuse("索引正在重建中，请稍候。", request, "admin")
        try:
            return self._reindex_locked(progress), self.status_rows(password, request)
        finally:
            self._index_lock.release()

    def _reindex_locked(self, progress) -> str:
        try:
            summary = self.kb.index(progress=lambda done, total, msg: progress(done / total if total else 1.0, desc=msg))
        except KBError as exc:
            log.error("re-index failed: %s", exc)
            raise gr.Error(f"重建索引失败：{html.escape(str(exc)[:300], quote=False)}", print_exception=False) from None
        return "\n".join(f"- {line}" for line in summary.lines())

    def upload_article(self, file_path: str | None, password: str | None = None, original_name: str | None = None,
                       progress=gr.Progress(), request: gr.Request = None):
        """Validate, save atomically (with a backup when replacing), then re-index incrementally.

        Only a file the client uploaded (in gradio's upload cache) is read; the app checks this itself
        because a mounted gradio app skips gradio's own check. Refused while a re-index runs, before any
        write. Messages never name a server path."""
        self._check_password(password, request)
        if not file_path:
            raise refuse("请选择要上传的 .md 文件。", request, "upload")
        if isinstance(file_path, dict):   # a FileData payload sent through the API
            file_path = file_path.get("path")
        try:
            path = security.uploaded_file(file_path, self.upload_dir)
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "upload") from None
        name = original_name if isinstance(original_name, str) and original_name else path.name
        if not self._index_lock.acquire(blocking=False):
            raise refuse("索引正在重建中，请稍候再上传（未做任何修改）。", request, "upload")
        try:
            try:
                data = path.read_bytes()
                saved = save_article(self.kb.config.articles_dir, name, data, self.kb.config.home / "backups")
            except UploadError as exc:
                raise refuse(f"上传被拒绝：{html.escape(str(exc), quote=False)}（未做任何修改）", request, "upload") from None
            except OSError as exc:
                log.warning("upload read/write failed: %s", exc)
                raise refuse("读取上传的文件失败，请重新上传（未做任何修改）。", request, "upload") from None
            report = self._reindex_locked(progress)
        finally:
            self._index_lock.release()
        done = "替换" if saved.replaced else "新增"
        backup = f"（旧版本已备份为 {saved.backup.name}）" if saved.backup else ""
        return f"已{done}《{html.escape(saved.article.title)}》{backup}。\n\n{report}", self.status_rows(password, request)

    # ---- API (gradio_client) ------------------------------------------------------------------------
    def api_ask(self, question: str, article: str = "", history_json: str = "[]", request: gr.Request = None) -> dict:
        """Answer a question. history_json: [[question, answer], ...] of earlier turns (the last few are used)."""
        try:
            question = security.text_field(question, "question", self.limits)
            turns = security.parse_history_json(history_json, self.limits)
            stream = stream_answer(self.kb, question, turns, prefer_slug=self._slug_or_none(article), llm=self.llm)
        except (QueryError, UnsafeInput) as exc:
            raise refuse(str(exc), request, "/ask") from None
        for _ in stream:
            pass
        return answer_dict(stream.answer)

    def api_search(self, question: str, k: int = 5, article: str = "", request: gr.Request = None) -> dict:
        try:
            question = security.text_field(question, "question", self.limits)
            if isinstance(k, bool) or not isinstance(k, (int, float)) or k != k:
                raise UnsafeInput("参数 k 必须是 1 到 20 的整数。")
            result = self.kb.search(question, k=min(max(int(k), 1), 20), prefer_slug=self._slug_or_none(article))
        except (QueryError, UnsafeInput, OverflowError) as exc:
            raise refuse(str(exc) if not isinstance(exc, OverflowError) else "参数 k 必须是 1 到 20 的整数。",
                         request, "/search") from None
        return {"question": result.question, "answerable": result.answerable, "confidence": result.confidence,
                "notice": result.notice, "hits": [hit_dict(h) for h in result.hits],
                "nearest_articles": [{"slug": a.slug, "title": a.title} for a in result.nearest_articles]}

    def api_list_articles(self) -> list:
        return [{"slug": a.slug, "title": a.title, "summary": a.summary, "tags": list(a.tags), "demos": list(a.demos),
                 "url": f"article/{a.slug}", "sections": [{"anchor": s.anchor, "heading": s.heading, "level": s.level}
                                                          for s in a.sections]}
                for a in self.kb.articles.values()]

    def api_list_demos(self) -> list:
        return present.list_demos()

    def api_run_demo(self, demo_id: str, params_json: str = "{}", wait: bool = False,
                     request: gr.Request = None) -> dict:
        """Start a demo (params as a JSON object); with wait=True return when it has ended, or after at most
        `limits.wait_max_s` with the run still going (then poll /demo_status)."""
        try:
            params = security.params_object(params_json, self.limits)
            if not isinstance(wait, bool):
                raise UnsafeInput("参数 wait 必须是 true 或 false。")
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "/run_demo") from None
        handle = self.start_demo(demo_id, params, request)
        if wait:
            try:
                handle.wait(min(handle.timeout_s + 30, self.limits.wait_max_s))
            except TimeoutError:
                pass   # still queued or running: the status says so
        return present.status_dict(handle)

    def api_demo_status(self, run_id: str, request: gr.Request = None) -> dict:
        """A run this client started (looked up by id alone, without reading the other runs)."""
        handle = self.own_run(run_id, request)
        if handle is None:
            shown = html.escape(run_id[:80], quote=False) if isinstance(run_id, str) else "?"
            raise refuse(f"没有编号为 “{shown}” 的运行（只能查看自己启动的运行）。", request, "/demo_status")
        return present.status_dict(handle)


# ---- presentation helpers (pure) --------------------------------------------------------------------
def _shown_question(question: str) -> str:
    """The question as chat text: HTML shown as text, very long questions shortened for display."""
    shown = question if len(question) <= SHOWN_QUESTION_CHARS else \
        f"{question[:SHOWN_QUESTION_CHARS]}…（共 {len(question)} 字）"
    return html.escape(shown, quote=False)


def _turns(history: list, max_turns: int | None = None) -> list[tuple[str, str]]:
    """(question, answer) pairs of the chat so far, for follow-ups; only the last `max_turns` are read.

    A message's content is a string, or (Gradio 6 in the browser) a list of parts such as
    {"type": "text", "text": ...}; files and other non-text parts are skipped."""
    if not isinstance(history, list):
        return []
    if max_turns is not None:
        history = history[-4 * max_turns:]   # a turn is 2 messages; leave room for extra assistant messages
    turns, question = [], None
    for message in history:
        if not isinstance(message, dict):
            message = getattr(message, "__dict__", {})
        role, content = message.get("role"), _message_text(message.get("content"))
        if content is None:
            continue
        if role == "user":
            question = html.unescape(content)
        elif role == "assistant" and question is not None:
            turns.append((question, content))
            question = None
    return turns[-max_turns:] if max_turns else turns


def _message_text(content) -> str | None:
    """The text of a chat message's content: a string, a text part, or a list of parts; None if no text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") if content.get("type", "text") == "text" and isinstance(content.get("text"), str) else None
    if isinstance(content, (list, tuple)):
        texts = [t for t in (_message_text(part) for part in content[:50]) if t is not None]
        return "\n".join(texts) if texts else None
    text = getattr(content, "text", None)
    return text if isinstance(text, str) else None


def client_key(request) -> str | None:
    """Who is asking, for run ownership: the gradio session (a browser tab, a gradio_client Client)."""
    return getattr(request, "session_hash", None) or None


def client_host(request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "local"


def refuse(message: str, request=None, where: str = "") -> gr.Error:
    """A refused request: one log line (no traceback) and a Chinese message for the client."""
    log.warning("refused %s from %s: %s", where or "request", client_host(request), message[:200])
    return gr.Error(message, print_exception=False)


def demo_buttons(demo_ids: list[str]) -> list:
    updates = []
    for i in range(MAX_LINKED_DEMOS):
        if i < len(demo_ids):
            try:
                title = registry.get(demo_ids[i]).title
            except Exception:
                title = demo_ids[i]
            updates.append(gr.update(value=f"▶ 运行演示：{title}（{demo_ids[i]}）", visible=True))
        else:
            updates.append(gr.update(visible=False))
    return updates


def hit_dict(hit) -> dict:
    c = hit.chunk
    return {"slug": c.slug, "title": c.title, "heading_path": list(c.heading_path), "anchor": c.anchor,
            "url": f"article/{c.slug}#{c.anchor}", "text": c.text, "score": hit.score,
            "dense_score": hit.dense_score, "bm25_score": hit.bm25_score}


def answer_dict(a: Answer) -> dict:
    return {"question": a.question, "searched": a.searched, "text": a.text, "answerable": a.answerable,
            "mode": a.mode, "notice": a.notice, "demos": a.demos,
            "citations": [{"n": c.n, "slug": c.slug, "title": c.title, "heading": c.heading, "anchor": c.anchor,
                           "url": c.url} for c in a.citations],
            "hits": [hit_dict(h) for h in a.hits]}


def evidence_markdown(a: Answer) -> str:
    if not a.hits:
        return "没有检索到片段。"
    head = [f"检索问题：{html.escape(a.searched, quote=False)}",
            f"可回答：{'是' if a.answerable else '否'}" + (f"；{html.escape(a.notice, quote=False)}" if a.notice else "")]
    rows = []
    for i, h in enumerate(a.hits, start=1):
        c = h.chunk
        text = html.escape(c.text[:300].replace("\n", " "), quote=False) + ("…" if len(c.text) > 300 else "")
        rows.append(f"**{i}. [{html.escape(c.title)} › {html.escape(c.heading_path[-1])}](article/{c.slug}#{c.anchor})**"
                    f" · 融合 {h.score:.4f} · 向量 {h.dense_score:.3f} · BM25 {h.bm25_score:.2f}\n\n> {text}")
    return "\n\n".join(head + rows)


# ---- demo runs in the UI ----------------------------------------------------------------------------
class RunPanel:
    """Components showing one run; `outputs` is the order `stream_view` yields in."""

    def __init__(self, name: str):
        with gr.Column(visible=False, elem_id=f"{name}-run") as self.column:
            gr.Markdown("#### 演示运行")
            self.status = gr.Markdown(elem_id=f"{name}-run-status")
            self.checks = gr.Markdown(elem_id=f"{name}-run-checks")
            self.stop = gr.Button("停止", size="sm", variant="stop")
            self.log = gr.Textbox(label="实时日志", lines=10, max_lines=18, autoscroll=True,
                                  elem_id=f"{name}-run-log")
            self.images = gr.Gallery(label="图像", columns=2, height="auto", elem_id=f"{name}-run-images")
            self.transcript = gr.Textbox(label="文字记录", lines=8, max_lines=30, elem_id=f"{name}-run-transcript")
            self.run_id = gr.State("")
        self.outputs = [self.column, self.status, self.checks, self.log, self.images, self.transcript, self.run_id]


def param_inputs(spec: DemoSpec) -> list:
    """One bounded input per parameter, advanced ones in a closed accordion; spec order kept."""
    made = {}
    for group in (False, True):
        params = [p for p in spec.params if p.advanced == group]
        if not params:
            continue
        ctx = gr.Accordion("高级参数（植入错误等）", open=False) if group else gr.Group()
        with ctx:
            for p in params:
                label = f"{p.name}：{p.help}" if p.help else p.name
                if p.choices:
                    made[p.name] = gr.Dropdown(choices=list(p.choices), value=p.default, label=label)
                elif p.kind is bool:
                    made[p.name] = gr.Checkbox(value=p.default, label=label)
                elif p.kind in (int, float):
                    made[p.name] = gr.Number(value=p.default, label=label, minimum=p.min, maximum=p.max,
                                             precision=0 if p.kind is int else None,
                                             step=1 if p.kind is int else 0.01)
                else:
                    made[p.name] = gr.Textbox(value=str(p.default), label=label)
    return [made[p.name] for p in spec.params]


def stream_view(handle, max_concurrent: int | None = None):
    """Yield a RunPanel's values until the run has ended.

    Polls a `demos.runner.RunHandle` every POLL_S: queue position while it waits (the runner queues beyond
    its concurrency limit), then status and elapsed time, ✓/✗ per check as the `CHECK` lines arrive, the
    live log, images and text transcripts once their files are complete, and the final result.
    """
    feed: queue.Queue = queue.Queue()

    def pump():
        for line in handle.lines():
            feed.put(line)
        feed.put(None)

    threading.Thread(target=pump, daemon=True, name=f"view-{handle.id}").start()
    lines, sizes, ended = [], {}, False
    while True:
        try:
            while True:
                line = feed.get_nowait()
                if line is None:
                    ended = True
                    break
                lines.append(line)
        except queue.Empty:
            pass
        final = ended and handle.done
        checks = (handle.result or {}).get("checks") if final else None
        checks = checks if checks else present.parse_checks(lines)
        images, transcript = present.scan_artifacts(handle, lines, sizes, final)
        yield (gr.update(visible=True), present.status_markdown(handle, len(checks), max_concurrent),
               present.checks_markdown(checks), "\n".join(lines[-present.LOG_LINES:]), images, transcript, handle.id)
        if final:
            return
        time.sleep(POLL_S)


# ---- layout -----------------------------------------------------------------------------------------
def create_app(state: ChatApp) -> gr.Blocks:
    """The Blocks of the app; `create_server` mounts it with the article routes."""
    specs = present.loadable_specs()
    articles = list(state.kb.articles.values())
    # Gradio's upload cache: files older than a day are deleted hourly (the whole cache at restart).
    with gr.Blocks(title="技术博客知识库", delete_cache=(3600, 86400)) as demo:
        article_state = gr.State("")
        article_param = gr.Textbox(visible=False)   # filled from ?article= in the browser
        banner = gr.HTML(visible=False)
        with gr.Tabs():
            with gr.Tab("问答", id="chat"):
                chatbot = gr.Chatbot(label="对话", height=520, latex_delimiters=LATEX, elem_id="chat",
                                     buttons=["copy"], feedback_options=None,
                                     placeholder="问一个关于博客文章的问题，例如：列表和元组有什么区别？")
                with gr.Row():
                    question = gr.Textbox(show_label=False, placeholder="输入问题，回车发送", scale=8,
                                          elem_id="question", max_length=20_000)
                    send = gr.Button("发送", variant="primary", scale=1, elem_id="send")
                linked = gr.State([])
                with gr.Row():
                    buttons = [gr.Button(visible=False, elem_id=f"demo-btn-{i}", size="sm") for i in range(MAX_LINKED_DEMOS)]
                with gr.Accordion("检索证据（片段与分数）", open=False):
                    evidence = gr.Markdown(elem_id="evidence")
                chat_panel = RunPanel("chat")
            with gr.Tab("文章", id="articles"):
                choices = [(a.title, a.slug) for a in articles]
                pick = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="文章")
                section = gr.Dropdown(label="小节", choices=[])
                frame = gr.HTML(elem_id="article-frame")
            with gr.Tab("演示", id="demos"):
                forms = []
                for spec in specs:
                    with gr.Accordion(f"{spec.title}（{spec.id}）", open=False):
                        gr.Markdown(html.escape(spec.summary) + f"\n\n设备：{spec.device} · 进程数：{spec.processes} · "
                                    f"超时：{spec.timeout_s:g} s · 文章：{', '.join(spec.articles)}")
                        inputs = param_inputs(spec)
                        run_btn = gr.Button("运行", variant="primary", elem_id=f"run-{spec.id}")
                        forms.append((spec.id, inputs, run_btn))
                demos_panel = RunPanel("demos")
                history = gr.Dataframe(headers=present.HISTORY_HEADERS, label="运行历史", interactive=False)
                refresh = gr.Button("刷新运行历史", size="sm")
            with gr.Tab("知识库管理", id="admin"):
                password = gr.Textbox(label="管理密码", type="password", visible=bool(state.admin_password))
                table = gr.Dataframe(headers=["文章", "标题", "索引状态", "片段数", "错误"], interactive=False)
                with gr.Row():
                    show = gr.Button("刷新状态", size="sm")
                    reindex = gr.Button("增量重建索引", size="sm")
                upload = gr.File(label="上传文章（.md，UTF-8，≤ 512 KiB，文件名须为 <slug>.md）", file_types=[".md"],
                                 type="filepath")
                upload_btn = gr.Button("上传并更新索引", variant="primary")
                admin_msg = gr.Markdown(elem_id="admin-msg")

        # Chat wiring.
        chat_outputs = [chatbot, question, evidence, linked, *buttons]
        for trigger, name in ((send.click, "chat_send"), (question.submit, "chat_submit")):
            trigger(state.ask, [question, chatbot, article_state], chat_outputs, api_name=name,
                    api_visibility="private", concurrency_limit=state.limits.ask_concurrency, concurrency_id="ask")
        for i, button in enumerate(buttons):
            button.click(linked_demo_handler(state, i), [linked], chat_panel.outputs, api_visibility="private")
        chat_panel.stop.click(state.cancel_run, [chat_panel.run_id], [chat_panel.status], api_visibility="private")

        # Articles.
        def show_article(slug, anchor=None):
            article = state.kb.articles.get(slug)
            anchors = [(s.heading, s.anchor) for s in article.sections] if article else []
            src = html.escape(f"article/{slug}" + (f"#{anchor}" if anchor else ""), quote=True)
            return (gr.update(choices=anchors, value=anchor),
                    f'<p><a href="{src}" target="_blank">在新标签页打开</a></p>'
                    f'<iframe src="{src}" style="width:100%;height:75vh;border:1px solid #ddd;border-radius:6px"></iframe>')
        pick.change(show_article, [pick], [section, frame], api_visibility="private")
        section.select(lambda slug, anchor: show_article(slug, anchor)[1], [pick, section], [frame],
                       api_visibility="private")
        demo.load(show_article, [pick], [section, frame], api_visibility="private")

        # Demos.
        for demo_id, inputs, run_btn in forms:
            run_btn.click(demo_form_handler(state, demo_id), inputs, demos_panel.outputs,
                          api_visibility="private").then(state.history_rows, None, history, api_visibility="private")
        demos_panel.stop.click(state.cancel_run, [demos_panel.run_id], [demos_panel.status], api_visibility="private")
        refresh.click(state.history_rows, None, history, api_visibility="private")
        demo.load(state.history_rows, None, history, api_visibility="private")
        if not state.admin_password:   # with a password, the table fills once it is given
            demo.load(lambda: state.status_rows(None), None, table, api_visibility="private")

        # Admin.
        show.click(state.status_rows, [password], [table], api_visibility="private")
        reindex.click(state.reindex, [password], [admin_msg, table], api_visibility="private")
        upload_btn.click(upload_handler(state),
                         [upload, password], [admin_msg, table], api_visibility="private")

        # Embed: ?article=<slug> favours that article, ?embed=1 shows the chat only (read in the browser).
        demo.load(state.on_load, [article_param], [article_state, banner], api_visibility="private",
                  js="() => new URLSearchParams(window.location.search).get('article') || ''")
        demo.load(None, None, None, js="""() => { if (new URLSearchParams(location.search).get('embed') === '1') {
            document.body.classList.add('kb-embed'); } }""")

        # Named API endpoints.
        # /ask shares the chat's concurrency group: a few answers at once, so one slow request (bounded by
        # kb.security.Limits) cannot hold everyone else's. /run_demo only queues (bounded by the runner's
        # limits) and its bounded wait=True must not hold the slot others submit through.
        gr.api(state.api_ask, api_name="ask", concurrency_limit=state.limits.ask_concurrency, concurrency_id="ask")
        gr.api(state.api_search, api_name="search", concurrency_limit=state.limits.ask_concurrency,
               concurrency_id="ask")
        gr.api(state.api_list_articles, api_name="list_articles")
        gr.api(state.api_list_demos, api_name="list_demos")
        gr.api(state.api_run_demo, api_name="run_demo",
               concurrency_limit=(state.runner.max_queue or 8) + state.runner.max_concurrent)
        gr.api(state.api_demo_status, api_name="demo_status")
    return demo


def linked_demo_handler(state: ChatApp, index: int):
    """The index-th demo button under an answer (a function, so gradio can hand it the request)."""
    def run(demo_ids: list, request: gr.Request = None):
        yield from state.run_linked_demo(index, demo_ids, request)
    return run


def demo_form_handler(state: ChatApp, demo_id: str):
    """A demo's Run button in the Demos tab: the request first, then the form's values."""
    def run(request: gr.Request, *values):
        yield from state.run_demo_form(demo_id, *values, request=request)
    return run


def upload_handler(state: ChatApp):
    def upload(file_path, password, request: gr.Request = None, progress=gr.Progress()):
        return state.upload_article(file_path, password, None, progress, request)
    return upload


EMBED_CSS = """body.kb-embed .tab-wrapper, body.kb-embed footer { display: none !important; }"""


def create_server(state: ChatApp, runs_dir: Path | None = None):
    """A FastAPI app: the Blocks at '/', article pages at /article/<slug>, KaTeX at /kb-assets, the embed example."""
    from fastapi import FastAPI

    from kb.web import add_routes

    server = FastAPI()
    add_routes(server, state.kb)
    blocks = create_app(state)
    allowed = [str(Path(runs_dir or state.runner.runs_dir).resolve())]
    app = gr.mount_gradio_app(server, blocks, path="/", allowed_paths=allowed, ssr_mode=False,
                              footer_links=["api"], css=CSS + EMBED_CSS, max_file_size="1mb")
    add_security(app, state.limits)
    return app


def add_security(app, limits: Limits = LIMITS) -> None:
    """CSP (frame-ancestors from KB_FRAME_ANCESTORS, default same origin only), nosniff and a body-size cap
    on every response; unknown API names answered 404 instead of 500 (see kb.security)."""
    ancestors = security.frame_ancestors_from(os.environ.get("KB_FRAME_ANCESTORS"))
    app.add_middleware(security.SecurityMiddleware, frame_ancestors=ancestors, max_body_bytes=limits.max_body_bytes)


def build_state(runs_dir: Path, max_demos: int, config: Config | None = None) -> ChatApp:
    from kb.embedding import make_embedder
    from kb.sentences import QueryMemoEmbedder

    config = config or Config.from_env()
    # The retrieval's question vector is reused to score answer sentences.
    kb = KnowledgeBase(config, embedder=QueryMemoEmbedder(make_embedder(config)))
    runner = Runner(runs_dir, max_concurrent=max_demos, max_queue=LIMITS.demo_queue_max,
                    max_per_client=LIMITS.demo_per_client)
    return ChatApp(kb, runner, LLMConfig.from_env(), os.environ.get("KB_ADMIN_PASSWORD"))


def prepare_index(kb: KnowledgeBase) -> None:
    """First start: build the index with a progress bar in the terminal; later starts only load it."""
    from kb import index as store

    if store.exists(kb.config.home):
        kb.loaded_index()
        return
    print(f"首次启动：正在为 {kb.config.articles_dir} 建立索引（{kb.config.home}）…", file=sys.stderr, flush=True)
    from tqdm import tqdm

    bar = tqdm(total=0, unit="片段", desc="建立索引", file=sys.stderr)

    def progress(done: int, total: int, message: str) -> None:
        bar.total, bar.n = total, done
        bar.set_postfix_str(message[-30:], refresh=True)

    summary = kb.index(progress=progress)
    bar.close()
    for line in summary.lines():
        print(f"  {line}", file=sys.stderr)


def warm_up(state: ChatApp) -> threading.Thread:
    """Load the model and embed every sentence in the background so the first answers are fast."""
    from kb.sentences import warm_cache

    def work():
        try:
            state.kb.search("预热")
            warm_cache(state.kb.embedder, (c.text for c in state.kb.loaded_index().chunks))
        except Exception as exc:  # warming up is an optimisation: never take the app down
            print(f"warm-up skipped: {exc}", file=sys.stderr)

    thread = threading.Thread(target=work, name="kb-warm-up", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="技术博客知识库：问答、文章、演示")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / ".demo-runs", help="folder for demo runs")
    parser.add_argument("--max-demos", type=int, default=2, help="demos running at once; more wait in a queue")
    parser.add_argument("--no-warm-up", action="store_true", help="load the model on the first question instead")
    args = parser.parse_args(argv)
    import uvicorn

    # One line per refused request or failure (kb.app, kb.answer), no tracebacks for expected refusals.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        state = build_state(args.runs_dir, args.max_demos)
        prepare_index(state.kb)
    except KBError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not args.no_warm_up:
        warm_up(state)
    server = create_server(state, args.runs_dir)
    print(f"serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(server, host=args.host, port=args.port, log_level="warning")
    finally:
        state.runner.close()


if __name__ == "__main__":
    main()
