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
import queue  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from demos import present, registry  # noqa: E402
from demos.runner import Runner, RunnerUnavailable, make_runner  # noqa: E402
from demos.spec import DemoParamError, DemoSpec  # noqa: E402
from kb.answer import Answer, stream_answer  # noqa: E402
from kb.config import Config  # noqa: E402
from kb.engine import KnowledgeBase  # noqa: E402
from kb.errors import KBError, QueryError  # noqa: E402
from kb.llm import LLMConfig  # noqa: E402
from kb.upload import UploadError, save_article  # noqa: E402

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
                 admin_password: str | None = None):
        self.kb, self.runner, self.llm = kb, runner, llm
        self.admin_password = admin_password or None
        self._index_lock = threading.Lock()

    # ---- chat ---------------------------------------------------------------------------------------
    def ask(self, question: str, history: list | None, article: str = ""):
        """Chat handler: yields (chatbot messages, cleared textbox, evidence, linked demo ids, 3 buttons)."""
        history = list(history or [])
        question = (question or "").strip()
        if not question:
            raise gr.Error("请输入问题：问题不能为空。")
        limit = self.kb.config.max_question_chars
        if len(question) > limit:
            gr.Warning(f"问题有 {len(question)} 字，超过 {limit} 字，只检索了前 {limit} 字。")
        turns = _turns(history)
        try:
            stream = stream_answer(self.kb, question, turns, prefer_slug=self._slug_or_none(article), llm=self.llm)
        except QueryError as exc:
            raise gr.Error(str(exc)) from None
        except KBError as exc:
            raise gr.Error(f"知识库出错：{exc}") from None
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
        slug = (slug or "").strip()
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
    def start_demo(self, demo_id: str, params: dict | None = None):
        """Submit a run: RunHandle, or gr.Error for an unknown demo or a bad parameter."""
        try:
            return self.runner.submit(demo_id, params or {})
        except registry.UnknownDemo as exc:
            raise gr.Error(str(exc)) from None
        except (DemoParamError, ValueError) as exc:
            raise gr.Error(f"参数有误：{exc}") from None
        except RunnerUnavailable as exc:   # the Celery pool's broker is down: demos wait, answers go on
            print(f"demo not started: {exc}", file=sys.stderr, flush=True)
            raise gr.Error(str(exc)) from None

    def run_linked_demo(self, index: int, demo_ids: list[str]):
        """A demo button under an answer: run the index-th linked demo and stream its view."""
        if not demo_ids or index >= len(demo_ids):
            raise gr.Error("这个回答没有对应的演示。")
        yield from stream_view(self.start_demo(demo_ids[index]), self.runner.max_concurrent)

    def run_demo_form(self, demo_id: str, *values):
        """The Demos tab: parameters in the spec's order (advanced ones included)."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        yield from stream_view(self.start_demo(demo_id, params), self.runner.max_concurrent)

    def cancel_run(self, run_id: str):
        for handle in self.runner.history():
            if handle.id == run_id:
                handle.cancel()
                return f"已请求停止 {run_id}。"
        return "没有正在运行的演示。"

    def history_rows(self) -> list[list]:
        return present.history_rows(self.runner.load_history())

    # ---- admin --------------------------------------------------------------------------------------
    def _check_password(self, password: str | None) -> None:
        if self.admin_password and not hmac.compare_digest((password or "").encode(), self.admin_password.encode()):
            raise gr.Error("管理密码不正确。")

    def status_rows(self, password: str | None = None) -> list[list]:
        self._check_password(password)
        labels = {"indexed": "已索引", "changed": "已修改，待重建", "new": "新文章，待索引",
                  "deleted": "已删除，待重建", "unreadable": "无法读取"}
        return [[s.slug or Path(s.path).name, s.title, labels.get(s.state, s.state), s.chunks, s.error or ""]
                for s in self.kb.status()]

    def reindex(self, password: str | None = None, progress=gr.Progress()):
        self._check_password(password)
        if not self._index_lock.acquire(blocking=False):
            raise gr.Error("索引正在重建中，请稍候。")
        try:
            summary = self.kb.index(progress=lambda done, total, msg: progress(done / total if total else 1.0, desc=msg))
        except KBError as exc:
            raise gr.Error(f"重建索引失败：{exc}") from None
        finally:
            self._index_lock.release()
        return "\n".join(f"- {line}" for line in summary.lines()), self.status_rows(password)

    def upload_article(self, file_path: str | None, password: str | None = None, original_name: str | None = None,
                       progress=gr.Progress()):
        """Validate, save atomically (with a backup when replacing), then re-index incrementally."""
        self._check_password(password)
        if not file_path:
            raise gr.Error("请选择要上传的 .md 文件。")
        name = original_name or Path(file_path).name
        try:
            data = Path(file_path).read_bytes()
            saved = save_article(self.kb.config.articles_dir, name, data, self.kb.config.home / "backups")
        except UploadError as exc:
            raise gr.Error(f"上传被拒绝：{exc}（未做任何修改）") from None
        except OSError as exc:
            raise gr.Error(f"读取上传的文件失败：{exc}") from None
        done = "替换" if saved.replaced else "新增"
        backup = f"（旧版本备份在 {saved.backup}）" if saved.backup else ""
        report, rows = self.reindex(password, progress)
        return f"已{done}《{html.escape(saved.article.title)}》{backup}。\n\n{report}", rows

    # ---- API (gradio_client) ------------------------------------------------------------------------
    def api_ask(self, question: str, article: str = "", history_json: str = "[]") -> dict:
        """Answer a question. history_json: [[question, answer], ...] of earlier turns."""
        try:
            turns = [tuple(t) for t in json.loads(history_json or "[]")]
            stream = stream_answer(self.kb, question, turns, prefer_slug=self._slug_or_none(article), llm=self.llm)
        except (QueryError, ValueError, TypeError) as exc:
            raise gr.Error(str(exc)) from None
        for _ in stream:
            pass
        return answer_dict(stream.answer)

    def api_search(self, question: str, k: int = 5, article: str = "") -> dict:
        try:
            result = self.kb.search(question, k=min(max(int(k), 1), 20), prefer_slug=self._slug_or_none(article))
        except QueryError as exc:
            raise gr.Error(str(exc)) from None
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

    def api_run_demo(self, demo_id: str, params_json: str = "{}", wait: bool = False) -> dict:
        """Start a demo (params as a JSON object); with wait=True return when it has ended."""
        try:
            params = json.loads(params_json or "{}")
        except ValueError as exc:
            raise gr.Error(f"params_json 不是 JSON：{exc}") from None
        handle = self.start_demo(demo_id, params if isinstance(params, dict) else {})
        if wait:
            handle.wait(handle.timeout_s + 30)
        return present.status_dict(handle)

    def api_demo_status(self, run_id: str) -> dict:
        for handle in self.runner.load_history():
            if handle.id == run_id:
                return present.status_dict(handle)
        raise gr.Error(f"没有编号为 {run_id!r} 的运行。")


# ---- presentation helpers (pure) --------------------------------------------------------------------
def _shown_question(question: str) -> str:
    """The question as chat text: HTML shown as text, very long questions shortened for display."""
    shown = question if len(question) <= SHOWN_QUESTION_CHARS else \
        f"{question[:SHOWN_QUESTION_CHARS]}…（共 {len(question)} 字）"
    return html.escape(shown, quote=False)


def _turns(history: list) -> list[tuple[str, str]]:
    """(question, answer) pairs of the chat so far, for follow-ups."""
    turns, question = [], None
    for message in history:
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            continue
        if role == "user":
            question = html.unescape(content)
        elif role == "assistant" and question is not None:
            turns.append((question, content))
            question = None
    return turns


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
    with gr.Blocks(title="技术博客知识库") as demo:
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
                    api_visibility="private")
        for i, button in enumerate(buttons):
            button.click(lambda ids, i=i: (yield from state.run_linked_demo(i, ids)), [linked],
                         chat_panel.outputs, api_visibility="private")
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
            run_btn.click(lambda *v, d=demo_id: (yield from state.run_demo_form(d, *v)), inputs, demos_panel.outputs,
                          api_visibility="private").then(state.history_rows, None, history, api_visibility="private")
        demos_panel.stop.click(state.cancel_run, [demos_panel.run_id], [demos_panel.status], api_visibility="private")
        refresh.click(state.history_rows, None, history, api_visibility="private")
        demo.load(state.history_rows, None, history, api_visibility="private")
        if not state.admin_password:   # with a password, the table fills once it is given
            demo.load(state.status_rows, None, table, api_visibility="private")

        # Admin.
        show.click(state.status_rows, [password], [table], api_visibility="private")
        reindex.click(state.reindex, [password], [admin_msg, table], api_visibility="private")
        upload_btn.click(lambda f, p, progress=gr.Progress(): state.upload_article(f, p, None, progress),
                         [upload, password], [admin_msg, table], api_visibility="private")

        # Embed: ?article=<slug> favours that article, ?embed=1 shows the chat only (read in the browser).
        demo.load(state.on_load, [article_param], [article_state, banner], api_visibility="private",
                  js="() => new URLSearchParams(window.location.search).get('article') || ''")
        demo.load(None, None, None, js="""() => { if (new URLSearchParams(location.search).get('embed') === '1') {
            document.body.classList.add('kb-embed'); } }""")

        # Named API endpoints.
        gr.api(state.api_ask, api_name="ask")
        gr.api(state.api_search, api_name="search")
        gr.api(state.api_list_articles, api_name="list_articles")
        gr.api(state.api_list_demos, api_name="list_demos")
        gr.api(state.api_run_demo, api_name="run_demo")
        gr.api(state.api_demo_status, api_name="demo_status")
    return demo


EMBED_CSS = """body.kb-embed .tab-wrapper, body.kb-embed footer { display: none !important; }"""


def create_server(state: ChatApp, runs_dir: Path | None = None):
    """A FastAPI app: the Blocks at '/', article pages at /article/<slug>, KaTeX at /kb-assets, the embed example."""
    from fastapi import FastAPI

    from kb.web import add_routes

    server = FastAPI()
    add_routes(server, state.kb)
    blocks = create_app(state)
    allowed = [str(Path(runs_dir or state.runner.runs_dir).resolve())]
    return gr.mount_gradio_app(server, blocks, path="/", allowed_paths=allowed, ssr_mode=False,
                               footer_links=["api"], css=CSS + EMBED_CSS, max_file_size="1mb")


def build_state(runs_dir: Path, max_demos: int, config: Config | None = None) -> ChatApp:
    from kb.embedding import make_embedder
    from kb.sentences import QueryMemoEmbedder

    config = config or Config.from_env()
    # The retrieval's question vector is reused to score answer sentences.
    kb = KnowledgeBase(config, embedder=QueryMemoEmbedder(make_embedder(config)))
    # KB_DEMO_BROKER=redis://... runs demos on the Celery pool (`python -m demos worker`), else here.
    runner = make_runner(runs_dir, max_concurrent=max_demos, broker_url=os.environ.get("KB_DEMO_BROKER"))
    return ChatApp(kb, runner, LLMConfig.from_env(), os.environ.get("KB_ADMIN_PASSWORD"))


def prepare_index(kb: KnowledgeBase) -> None:
    """First start: build the index with a progress bar in the terminal; later starts only load it."""
    if kb.store.exists():
        kb.loaded_index()
        return
    print(f"首次启动：正在为 {kb.config.articles_dir} 建立索引（{kb.store.describe()}）…", file=sys.stderr, flush=True)
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
