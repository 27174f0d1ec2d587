"""The 问答 tab: the chat, the evidence accordion, the demo buttons under an answer and their run panel.

ChatHandlers (mixed into ChatApp) answer a question by streaming kb.answer; the pure helpers below turn
the chat history into follow-up turns and an Answer into Markdown and button updates.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import registry
from kb.answer import Answer, stream_answer
from kb.errors import KBError, QueryError
from kb.ui.runs import RunPanel

MAX_LINKED_DEMOS = 3               # demo buttons under an answer
SHOWN_QUESTION_CHARS = 600         # a longer question is shown shortened in the chat (searched as the engine allows)
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class ChatHandlers:
    """The chat's handlers; `self` is the ChatApp (kb, llm, _slug_or_none)."""

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
        trigger(state.ask, inputs, outputs, api_name=name, api_visibility="private")
    for i, button in enumerate(buttons):
        button.click(lambda ids, i=i: (yield from state.run_linked_demo(i, ids)), [ui["linked"]],
                     panel.outputs, api_visibility="private")
    panel.stop.click(state.cancel_run, [panel.run_id], [panel.status], api_visibility="private")


def create_load_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    """Embed: ?article=<slug> favours that article, ?embed=1 shows the chat only (read in the browser)."""
    demo.load(state.on_load, [ui["article_param"]], [ui["article_state"], ui["banner"]], api_visibility="private",
              js="() => new URLSearchParams(window.location.search).get('article') || ''")
    demo.load(None, None, None, js="""() => { if (new URLSearchParams(location.search).get('embed') === '1') {
        document.body.classList.add('kb-embed'); } }""")
