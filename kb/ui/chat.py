"""The 问答 tab: a welcoming first screen, the chat with stop/regenerate/👍👎, follow-up suggestions, the
demo buttons under an answer and the cards their runs stream into, and the past conversations.

ChatHandlers (mixed into ChatApp) answer by streaming kb.answer and log each answer in the question log
(kb.analytics) so feedback can be stored against it. How the answer reads is kb/ui/answer_view.py; the
conversation list is kb/ui/conversations.py; the first screen is kb/ui/starters.py.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import registry
from kb import security
from kb.answer import Answer, stream_answer
from kb.errors import KBError, QueryError
from kb.security import UnsafeInput
from kb.ui import answer_view, conversations, starters
from kb.ui.guard import log, refuse
from kb.ui.messages import info, warn
from kb.ui.owner import log_answer
from kb.ui.runs import RunCards, session_key

MAX_LINKED_DEMOS = 3               # demo buttons under an answer
MAX_FOLLOWUPS = 3
SHOWN_QUESTION_CHARS = 600         # a longer question is shown shortened in the chat (searched as the engine allows)
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class ChatHandlers:
    """The chat's handlers; `self` is the ChatApp (kb, llm, question_log, runner, _slug_or_none)."""

    def ask(self, question: str, history: list | None, article: str = "", qids: dict | None = None,
            request: gr.Request = None):
        """Yields (chatbot messages, cleared textbox, evidence, linked demo ids, 3 demo buttons,
        3 follow-up buttons, qids, regenerate button) while the answer streams."""
        try:
            question = security.text_field(question, "问题", self.limits).strip()
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "chat") from None
        history = list(history or []) if isinstance(history, list) else []
        qids = dict(qids) if isinstance(qids, dict) else {}
        if not question:
            raise refuse("请输入问题：问题不能为空。", request, "chat")
        limit = self.kb.config.max_question_chars
        if len(question) > limit:
            warn(f"问题有 {len(question)} 字，超过 {limit} 字，只检索了前 {limit} 字。")
        turns = security.bound_turns(_turns(history, self.limits.max_history_turns), self.limits)
        slug = self._slug_or_none(article)
        try:
            stream = stream_answer(self.kb, question, turns, prefer_slug=slug, llm=self.llm)
        except QueryError as exc:
            raise refuse(str(exc), request, "chat") from None
        except KBError as exc:
            log.error("chat failed: %s", exc)
            raise refuse("知识库出错，请稍后再试或联系管理员。", request, "chat") from None
        history.append({"role": "user", "content": _shown_question(question)})
        history.append({"role": "assistant", "content": ""})
        a = stream.answer
        evidence = evidence_markdown(a)
        hidden = (*demo_buttons([]), *followup_buttons([]))
        history[-1]["content"] = answer_view.display(a, "", False)
        yield history, "", evidence, [], *hidden, qids, gr.update(visible=False)
        for _ in stream:
            history[-1]["content"] = answer_view.display(a, a.text, False)
            yield history, "", evidence, [], *hidden, qids, gr.update(visible=False)
        history[-1]["content"] = answer_view.display(a, a.text, True, self.kb)
        qid = log_answer(self.question_log, question, a, slug)
        if qid is not None:
            qids[str(len(history) - 1)] = qid
        yield (history, "", evidence_markdown(a), a.demos, *demo_buttons(a.demos),
               *followup_buttons(answer_view.followups(a, self.kb, MAX_FOLLOWUPS)), qids, gr.update(visible=True))

    def regenerate(self, history: list | None, article: str = "", qids: dict | None = None,
                   request: gr.Request = None):
        """Answer the last question again (the earlier answer is replaced)."""
        history = list(history or []) if isinstance(history, list) else []
        qids = dict(qids) if isinstance(qids, dict) else {}
        while history and history[-1].get("role") == "assistant":
            qids.pop(str(len(history) - 1), None)
            history.pop()
        if not history or history[-1].get("role") != "user":
            raise refuse("没有可以重新生成的回答。", request, "chat")
        question = _question_of(history.pop()["content"])
        yield from self.ask(question, history, article, qids, request)

    def feedback(self, data: gr.LikeData, qids: dict | None, request: gr.Request = None):
        """👍/👎 on an answer: stored at once; then the comment box opens for an optional reason."""
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        qid = qids.get(str(index)) if isinstance(qids, dict) else None
        rating = 1 if data.liked is True else -1 if data.liked is False else 0
        if qid is None or self.question_log is None:
            warn("这条回答无法记录反馈（可能来自重启前的会话）。")
            return None, gr.update(visible=False)
        try:
            self.question_log.log_feedback(qid, rating)
        except Exception as exc:
            log.warning("feedback: %s", exc)
            raise refuse("反馈没有保存成功，请稍后再试。", request, "feedback") from None
        if rating == 0:
            return None, gr.update(visible=False)
        info("已记录反馈，谢谢！可以在下面补充说明（可选）。" if rating > 0 else "已记录反馈。哪里不对？可以在下面补充说明（可选）。")
        return {"qid": qid, "rating": rating}, gr.update(visible=True)

    def feedback_comment(self, comment: str, pending: dict | None, request: gr.Request = None):
        comment = comment.strip()[:1000] if isinstance(comment, str) else ""
        if not pending or not comment:
            return "", gr.update(visible=False)
        try:
            self.question_log.log_feedback(int(pending["qid"]), int(pending["rating"]), comment)
        except Exception as exc:
            log.warning("feedback comment: %s", exc)
            raise refuse("补充说明没有保存成功，请稍后再试。", request, "feedback") from None
        info("补充说明已保存，谢谢！")
        return "", gr.update(visible=False)

    def on_load(self, article: str):
        """Page load: the embed passes ?article=<slug> (read in the browser) and ?embed=1 hides other tabs."""
        slug = self._slug_or_none(article)
        if not slug:
            return "", gr.update(value="", visible=False)
        title = html.escape(self.kb.article(slug).title)
        return slug, gr.update(value=f'<div class="kb-banner">正在阅读《{title}》：回答会优先参考这篇文章。</div>',
                               visible=True)

    def first_screen(self, article: str):
        """The chat's placeholder and starter questions, for the article the reader is on (if any)."""
        slug = self._slug_or_none(article)
        return gr.update(placeholder=starters.welcome_markdown(self.kb.articles, slug),
                         examples=starters.examples(starters.starter_questions(self.kb.articles, slug)))

    def launch_linked_demo(self, index: int, demo_ids: list[str], qids: dict | None = None,
                           request: gr.Request = None):
        """A demo button under an answer: submit the run and give it a card. -> the card run-id boxes."""
        if not isinstance(demo_ids, list) or index >= len(demo_ids):
            raise refuse("这个回答没有对应的演示。", request, "demo")
        handle = self.start_demo(demo_ids[index], request=request, question_id=_latest_qid(qids))
        if handle.status == "queued":
            info(f"“{_demo_title(handle.demo)}”已加入队列：前面还有演示在运行，轮到时自动开始。")
        return self.card_slots.place(self.runner, handle, session_key(request, "chat"))


# ---- presentation helpers (pure) --------------------------------------------------------------------
def _shown_question(question: str) -> str:
    """The question as chat text: HTML shown as text, very long questions shortened for display."""
    shown = question if len(question) <= SHOWN_QUESTION_CHARS else \
        f"{question[:SHOWN_QUESTION_CHARS]}…（共 {len(question)} 字）"
    return html.escape(shown, quote=False)


def text_of(content) -> str | None:
    """A message's text: a string, a text part, or (gradio 6 in the browser) a list of parts; None if none."""
    return _message_text(content)


def _question_of(content) -> str:
    text = text_of(content)
    return html.unescape(text) if text is not None else ""


def _turns(history: list, max_turns: int | None = None) -> list[tuple[str, str]]:
    """(question, answer) pairs of the chat so far, for follow-ups (labels and source previews dropped);
    only the last `max_turns` are read.

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
            question = _question_of(content)
        elif role == "assistant" and question is not None:
            turns.append((question, answer_view.plain_answer(content)))
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


def _latest_qid(qids: dict | None) -> int | None:
    """The question id of the latest answer (the one whose demo buttons are shown)."""
    keys = [int(k) for k in (qids or {}) if str(k).isdigit()]
    return (qids or {}).get(str(max(keys))) if keys else None


def _demo_title(demo_id: str) -> str:
    try:
        return registry.get(demo_id).title
    except Exception:
        return demo_id


def demo_buttons(demo_ids: list[str]) -> list:
    updates = []
    for i in range(MAX_LINKED_DEMOS):
        if i < len(demo_ids):
            updates.append(gr.update(value=f"▶ 运行演示：{_demo_title(demo_ids[i])}", visible=True,
                                     elem_classes=["kb-demo-btn"]))
        else:
            updates.append(gr.update(visible=False))
    return updates


def followup_buttons(questions: list[str]) -> list:
    return [gr.update(value=questions[i], visible=True) if i < len(questions) else gr.update(visible=False)
            for i in range(MAX_FOLLOWUPS)]


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
def create_ui(ui: dict, articles: dict, secret: str | None = None) -> None:
    """The 问答 tab's blocks, added to `ui` (the components every tab module shares, by name)."""
    with gr.Tab("问答", id="chat"):
        # A slot for a status notice (e.g. the semantic index still being built); filled by whoever needs it.
        ui["status_banner"] = gr.HTML(visible=False, elem_id="status-banner")
        ui["conversations"] = gr.BrowserState(conversations.empty(), storage_key="kb-conversations",
                                                 secret=secret)
        ui["conv_id"] = gr.State("")
        ui["qids"] = gr.State({})
        with gr.Row(elem_id="conv-bar", equal_height=True):
            ui["conv_list"] = gr.Dropdown(choices=[], value=None, label="历史对话（保存在本浏览器）",
                                          elem_id="conv-list", scale=5, min_width=120, interactive=True)
            ui["new_chat"] = gr.Button("＋ 新对话", size="sm", elem_id="new-chat", scale=1, min_width=90)
        ui["chatbot"] = gr.Chatbot(
            label="对话", show_label=False, height=560, latex_delimiters=LATEX, elem_id="chat",
            buttons=["copy"], feedback_options=("Like", "Dislike"),
            placeholder=starters.welcome_markdown(articles),
            examples=starters.examples(starters.starter_questions(articles)))
        with gr.Row(elem_id="ask-row", equal_height=True):
            ui["question"] = gr.Textbox(label="问题", show_label=False, placeholder="输入问题，回车发送", scale=8, autofocus=True,
                                        elem_id="question", max_length=20_000, container=False, min_width=160)
            ui["send"] = gr.Button("发送", variant="primary", scale=1, elem_id="send", min_width=70)
            ui["stop"] = gr.Button("停止生成", variant="stop", scale=1, elem_id="stop", visible=False, min_width=70)
        with gr.Row(elem_id="answer-tools"):
            ui["regenerate"] = gr.Button("↻ 重新生成", size="sm", elem_id="regenerate", visible=False, scale=0,
                                         min_width=100)
            ui["followups"] = [gr.Button(visible=False, size="sm", elem_id=f"followup-{i}",
                                         elem_classes=["kb-followup"], scale=0) for i in range(MAX_FOLLOWUPS)]
        ui["pending_feedback"] = gr.State(None)
        with gr.Row(visible=False, elem_id="feedback-row", equal_height=True) as ui["feedback_row"]:
            ui["feedback_comment"] = gr.Textbox(show_label=False, placeholder="补充说明（可选）：哪里好，哪里不对？",
                                                scale=6, container=False, max_length=1000, elem_id="feedback-comment")
            ui["feedback_send"] = gr.Button("提交说明", size="sm", scale=1, elem_id="feedback-send", min_width=90)
        ui["linked"] = gr.State([])
        with gr.Row(elem_id="demo-buttons"):
            ui["demo_buttons"] = [gr.Button(visible=False, elem_id=f"demo-btn-{i}", size="sm")
                                  for i in range(MAX_LINKED_DEMOS)]
        ui["chat_cards"] = RunCards("chat")
        with gr.Accordion("检索证据（片段与分数）", open=False):
            ui["evidence"] = gr.Markdown(elem_id="evidence")


def create_event_handlers(state, ui: dict) -> None:
    chatbot, question, store = ui["chatbot"], ui["question"], ui["conversations"]
    busy = [ui["send"], ui["stop"]]
    outputs = [chatbot, question, ui["evidence"], ui["linked"], *ui["demo_buttons"], *ui["followups"], ui["qids"],
               ui["regenerate"]]
    ask_inputs = [question, chatbot, ui["article_state"], ui["qids"]]
    save = (conversations.remember, [store, ui["conv_id"], chatbot, ui["qids"]], [store, ui["conv_list"]])

    def streaming():
        return gr.update(visible=False), gr.update(visible=True)

    def idle():
        return gr.update(visible=True), gr.update(visible=False)

    # The chat shares /ask's concurrency group: a few answers at once (see kb/ui/api.py).
    ask_group = {"concurrency_limit": state.limits.ask_concurrency, "concurrency_id": "ask"}
    answering = []
    for trigger, name in ((ui["send"].click, "chat_send"), (question.submit, "chat_submit")):
        ev = trigger(streaming, None, busy, api_visibility="private")
        run = ev.then(state.ask, ask_inputs, outputs, api_name=name, api_visibility="private", **ask_group)
        run.then(idle, None, busy, api_visibility="private").then(*save, api_visibility="private")
        answering.append(run)

    # Starter questions (the chat's examples) and follow-up suggestions put their text in the box and ask.
    def pick_example(data: gr.SelectData):
        return data.value["text"] if isinstance(data.value, dict) else str(data.value)
    sources = [(chatbot.example_select, pick_example, None, "chat_starter")]
    sources += [(b.click, lambda text: text, [b], f"chat_followup_{i}") for i, b in enumerate(ui["followups"])]
    for trigger, fn, inputs, name in sources:
        ev = trigger(fn, inputs, [question], api_visibility="private").then(
            streaming, None, busy, api_visibility="private")
        run = ev.then(state.ask, ask_inputs, outputs, api_name=name, api_visibility="private", **ask_group)
        run.then(idle, None, busy, api_visibility="private").then(*save, api_visibility="private")
        answering.append(run)

    regen = ui["regenerate"].click(streaming, None, busy, api_visibility="private").then(
        state.regenerate, [chatbot, ui["article_state"], ui["qids"]], outputs, api_name="chat_regenerate",
        api_visibility="private", **ask_group)
    regen.then(idle, None, busy, api_visibility="private").then(*save, api_visibility="private")
    answering.append(regen)

    # Stop: cancel the streaming answer; what arrived so far stays and is saved.
    ui["stop"].click(idle, None, busy, cancels=answering, api_visibility="private").then(
        *save, api_visibility="private")

    # 👍/👎 and the optional comment.
    chatbot.like(state.feedback, [ui["qids"]], [ui["pending_feedback"], ui["feedback_row"]], api_visibility="private")
    for trigger in (ui["feedback_send"].click, ui["feedback_comment"].submit):
        trigger(state.feedback_comment, [ui["feedback_comment"], ui["pending_feedback"]],
                [ui["feedback_comment"], ui["feedback_row"]], api_visibility="private")

    # Conversations.
    reset = [chatbot, ui["conv_id"], ui["qids"]]
    ui["new_chat"].click(conversations.new_chat, [store], [*reset, ui["conv_list"]], api_visibility="private").then(
        lambda: (*demo_buttons([]), *followup_buttons([]), gr.update(visible=False)), None,
        [*ui["demo_buttons"], *ui["followups"], ui["regenerate"]], api_visibility="private")
    ui["conv_list"].input(conversations.open_conversation, [ui["conv_list"], store], reset, api_visibility="private")

    # Demo buttons under an answer: each click gets its own card; never blocked by a run that streams.
    cards = ui["chat_cards"]
    def launcher(i: int):
        def launch(ids: list, qids: dict, request: gr.Request):
            return state.launch_linked_demo(i, ids, qids, request)
        return launch

    for i, button in enumerate(ui["demo_buttons"]):
        button.click(launcher(i), [ui["linked"], ui["qids"]], cards.boxes, api_visibility="private",
                     concurrency_limit=None, trigger_mode="multiple")   # every click is a run, none dropped
    cards.wire(state)


def create_load_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    """Page load: the reader's conversations; ?article=<slug> favours that article (banner, starters),
    ?embed=1 shows the chat only (both read in the browser)."""
    demo.load(conversations.restore, [ui["conversations"]],
              [ui["chatbot"], ui["conv_id"], ui["qids"], ui["conv_list"], ui["conversations"]],
              api_visibility="private", show_progress="hidden")
    article_js = "() => new URLSearchParams(window.location.search).get('article') || ''"
    demo.load(state.on_load, [ui["article_param"]], [ui["article_state"], ui["banner"]], api_visibility="private",
              js=article_js, show_progress="hidden")
    ui["article_state"].change(state.first_screen, [ui["article_state"]], [ui["chatbot"]], api_visibility="private",
                               show_progress="hidden")
    demo.load(None, None, None, js="""() => { if (new URLSearchParams(location.search).get('embed') === '1') {
        document.body.classList.add('kb-embed'); } }""")
