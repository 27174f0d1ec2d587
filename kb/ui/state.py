"""ChatApp: the state every tab shares, with the handlers of every tab.

The handlers live next to their tab (ChatHandlers in chat.py, DemoHandlers in demos.py, ...); ChatApp only
holds the shared objects and the helpers several tabs use. Tests call the handlers directly.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

import gradio as gr

from demos.runner import Runner
from kb.analytics import QuestionLog, open_log
from kb.engine import KnowledgeBase
from kb.llm import LLMConfig
from kb.security import LIMITS, Limits, RateLimiter
from kb.ui.admin import AdminHandlers
from kb.ui.api import ApiHandlers
from kb.ui.chat import ChatHandlers
from kb.ui.demos import DemoHandlers
from kb.ui.owner import OwnerHandlers
from kb.ui.runs import CardSlots

log = logging.getLogger("kb.ui")
_DEFAULT = object()
SECRET_FILE = "ui-secret"


class ChatApp(ChatHandlers, DemoHandlers, AdminHandlers, OwnerHandlers, ApiHandlers):
    """The app's state (knowledge base, runner, LLM, admin password, question log) and every handler.

    question_log: where answers and their 👍/👎 are stored; by default `<KB_HOME>/analytics.sqlite3`
    (kb.analytics.open_log); None keeps nothing (feedback is then refused with a message).
    """

    def __init__(self, kb: KnowledgeBase, runner: Runner, llm: LLMConfig | None = None,
                 admin_password: str | None = None, limits: Limits = LIMITS, upload_dir: Path | None = None,
                 question_log: QuestionLog | None = _DEFAULT):
        self.kb, self.runner, self.llm = kb, runner, llm
        self.admin_password = admin_password or None
        self.limits = limits   # what one request may cost (kb.security.Limits)
        # Files a client uploaded lie in gradio's upload cache; nothing else may be read as an upload.
        self.upload_dir = Path(upload_dir) if upload_dir else Path(gr.utils.get_upload_folder())
        self.admin_limiter = RateLimiter(attempts=10, window_s=60.0)   # wrong passwords per client address
        self._index_lock = threading.Lock()
        self.card_slots = CardSlots()   # which demo run each card of a browser session shows
        self.rest_gate = None           # POST /api/ask's load gate, set when the server is made (kb/ui/rest.py)
        if question_log is _DEFAULT:
            try:
                question_log = open_log(kb.config)
            except Exception as exc:   # a broken log must not keep the app from answering
                log.warning("question log unavailable: %s", exc)
                question_log = None
        self.question_log = question_log

    def browser_secret(self) -> str:
        """The key gr.BrowserState encrypts the reader's conversations with: kept in the data folder so
        conversations stay readable after the app restarts (a random key per start would lose them)."""
        path = Path(self.kb.config.home) / SECRET_FILE
        try:
            return path.read_text(encoding="utf-8").strip() or _new_secret(path)
        except FileNotFoundError:
            return _new_secret(path)

    def _slug_or_none(self, slug: str | None) -> str | None:
        slug = slug.strip() if isinstance(slug, str) else ""
        return slug if slug in self.kb.articles else None


def _new_secret(path: Path) -> str:
    secret = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret)
    return secret
