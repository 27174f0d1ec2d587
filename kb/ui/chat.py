"""The 问答 tab: the chat, the evidence accordion, the demo buttons under an answer and their run panel.

ChatHandlers (mixed into ChatApp) answer a question by streaming kb.answer; the pure helpers below turn
the chat history into follow-up turns and an Answer into Markdown and button updates.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import registry
from kb import security
from kb.answer import Answer, stream_answer
from kb.errors import KBError, QueryError
from kb.security import UnsafeInput
from kb.ui.guard import log, refuse
from kb.ui.owner import log_answer
from kb.ui.runs import RunPanel

MAX_LINKED_DEMOS = 3               # demo buttons under an answer
SHOWN_QUESTION_CHARS = 600         # a longer question is shown shortened in the chat (searched as the engine allows)
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class ChatHandlers:
    """The chat's handlers; `self` is the ChatApp (kb, llm, _slug_or_none)."""

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
        log_answer(getattr(self, "question_log", None), question, result, self._slug_or_none(article))
        yield history, "", evidence_markdown(result), result.demos, *demo_buttons(result.demos)

    def on_load(self, article: str):
        """Page load: the embed passes ?article=<slug> (read in the browser) and ?embed=1 hides other tabs."""
        slug = self._slug_or_none(article)
        if not slug:
            return "", gr.update(value="", visible=False)
        title = html.escape(self.kb.article(slug).title)
        return slug, gr.update(value=f'<div class="kb-banner">正在阅读《{title}》：回答会优先参考这篇文章。</div>',
                               visible=True)


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


def evidence_markdown(a: Answer) -> str:
    if not a.hits:
        return "没有检索到片段。"
    head = [f"检索问题：{html.escape(a.searched, quote=False)}",
            f"可回答：{'是' if a.answerable else '否'}" + (f"；{html.escape(a.notice, quote=False)}" if a.notice else "")]
    rows = []
    for i, h in enumerate(a.hits, start=1):
        c = h.chunk
        text = html.escape(c.text[:300].replace("\n", " "), quote=False) + ("…" if len(c.text) > 300 else "")
        link = f"{security.markdown_text(c.title)} › {security.markdown_text(c.heading_path[-1])}"
        rows.append(f"**{i}. [{link}](article/{c.slug}#{c.anchor})**"
                    f" · 融合 {h.score:.4f} · 向量 {h.dense_score:.3f} · BM25 {h.bm25_score:.2f}\n\n> {text}")
    return "\n\n".join(head + rows)


# ---- layout and events ------------------------------------------------------------------------------
def create_ui(ui: dict) -> None:
    """The 问答 tab's blocks, added to `ui` (the components every tab module shares, by name)."""
    with gr.Tab("问答", id="chat"):
        ui["chatbot"] = gr.Chatbot(label="对话", height=520, latex_delimiters=LATEX, elem_id="chat",
                                   buttons=["copy"], feedback_options=None,
                                   placeholder="问一个关于博客文章的问题，例如：列表和元组有什么区别？")
        with gr.Row():
            ui["question"] = gr.Textbox(show_label=False, placeholder="输入问题，回车发送", scale=8,
                                        elem_id="question", max_length=20_000)
            ui["send"] = gr.Button("发送", variant="primary", scale=1, elem_id="send")
        ui["linked"] = gr.State([])
        with gr.Row():
            ui["demo_buttons"] = [gr.Button(visible=False, elem_id=f"demo-btn-{i}", size="sm")
                                  for i in range(MAX_LINKED_DEMOS)]
        with gr.Accordion("检索证据（片段与分数）", open=False):
            ui["evidence"] = gr.Markdown(elem_id="evidence")
        ui["chat_panel"] = RunPanel("chat")


def create_event_handlers(state, ui: dict) -> None:
    buttons, panel = ui["demo_buttons"], ui["chat_panel"]
    outputs = [ui["chatbot"], ui["question"], ui["evidence"], ui["linked"], *buttons]
    inputs = [ui["question"], ui["chatbot"], ui["article_state"]]
    for trigger, name in ((ui["send"].click, "chat_send"), (ui["question"].submit, "chat_submit")):
        # The chat shares /ask's concurrency group: a few answers at once (see kb/ui/api.py).
        trigger(state.ask, inputs, outputs, api_name=name, api_visibility="private",
                concurrency_limit=state.limits.ask_concurrency, concurrency_id="ask")
    for i, button in enumerate(buttons):
        button.click(linked_demo_handler(state, i), [ui["linked"]], panel.outputs, api_visibility="private")
    panel.stop.click(state.cancel_run, [panel.run_id], [panel.status], api_visibility="private")


def linked_demo_handler(state, index: int):
    """The index-th demo button under an answer (a def, not a lambda, so gradio hands it the request)."""
    def run(demo_ids: list, request: gr.Request = None):
        yield from state.run_linked_demo(index, demo_ids, request)
    return run


def create_load_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    """Embed: ?article=<slug> favours that article, ?embed=1 shows the chat only (read in the browser)."""
    demo.load(state.on_load, [ui["article_param"]], [ui["article_state"], ui["banner"]], api_visibility="private",
              js="() => new URLSearchParams(window.location.search).get('article') || ''")
    demo.load(None, None, None, js="""() => { if (new URLSearchParams(location.search).get('embed') === '1') {
        document.body.classList.add('kb-embed'); } }""")
