"""Conversations kept in the reader's browser (gr.BrowserState, localStorage): a list of past chats, the
current one, new chat. (👍/👎 are stored server-side in the question log: see ChatHandlers.feedback.)

The browser value is {"current": id, "items": [{"id", "title", "updated", "messages", "qids"}]}, newest
first: `messages` are the chat's messages, `qids` maps the index of an assistant message to the id of its
row in kb.analytics' question log (what feedback is stored against). Nothing here identifies the reader.
"""
from __future__ import annotations

import html
import time
import uuid

import gradio as gr


MAX_CONVERSATIONS = 30
MAX_MESSAGES = 60                  # per conversation kept in the browser
TITLE_CHARS = 24


def empty() -> dict:
    return {"current": "", "items": []}


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _title(messages: list) -> str:
    from kb.ui.chat import text_of

    first = next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), None) or ""
    first = " ".join(html.unescape(first).split())
    return (first[:TITLE_CHARS] + "…") if len(first) > TITLE_CHARS else (first or "新对话")


def _valid(store) -> dict:
    if not isinstance(store, dict) or not isinstance(store.get("items"), list):
        return empty()
    items = [c for c in store["items"] if isinstance(c, dict) and isinstance(c.get("id"), str)
             and isinstance(c.get("messages"), list)]
    return {"current": store.get("current") if isinstance(store.get("current"), str) else "", "items": items}


def save(store, conv_id: str, messages: list, qids: dict) -> dict:
    """The store with conversation `conv_id` updated (moved to the top); an empty chat is not kept."""
    store = _valid(store)
    items = [c for c in store["items"] if c["id"] != conv_id]
    messages = [m for m in (messages or []) if isinstance(m, dict)][-MAX_MESSAGES:]
    if messages:
        items.insert(0, {"id": conv_id, "title": _title(messages), "updated": time.time(), "messages": messages,
                         "qids": {str(k): v for k, v in (qids or {}).items()}})
    return {"current": conv_id, "items": items[:MAX_CONVERSATIONS]}


def choices(store) -> list[tuple[str, str]]:
    out = []
    for c in _valid(store)["items"]:
        when = time.strftime("%m-%d %H:%M", time.localtime(c.get("updated") or 0))
        out.append((f"{c.get('title') or '新对话'}（{when}）", c["id"]))
    return out


def find(store, conv_id: str) -> dict | None:
    return next((c for c in _valid(store)["items"] if c["id"] == conv_id), None)


# ---- handlers (wired by chat.py) ------------------------------------------------------------------
def restore(store):
    """Page load: reopen the conversation the reader was in. -> (chatbot, conv id, qids, list, store)."""
    store = _valid(store)
    conv = find(store, store["current"]) or (store["items"][0] if store["items"] else None)
    if conv is None:
        return [], new_id(), {}, gr.update(choices=choices(store), value=None), store
    return (conv["messages"], conv["id"], dict(conv.get("qids") or {}),
            gr.update(choices=choices(store), value=conv["id"]), store)


def open_conversation(conv_id: str, store):
    conv = find(store, conv_id or "")
    if conv is None:
        return gr.skip(), gr.skip(), gr.skip()
    return conv["messages"], conv["id"], dict(conv.get("qids") or {})


def new_chat(store):
    """-> (chatbot, conv id, qids, list); the finished chat stays in the list."""
    return [], new_id(), {}, gr.update(choices=choices(store), value=None)


def remember(store, conv_id: str, messages: list, qids: dict):
    """After an answer: -> (store, list)."""
    store = save(store, conv_id or new_id(), messages, qids)
    return store, gr.update(choices=choices(store), value=store["current"])
