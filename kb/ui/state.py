"""ChatApp: the state every tab shares, with the handlers of every tab.

The handlers live next to their tab (ChatHandlers in chat.py, DemoHandlers in demos.py, ...); ChatApp only
holds the shared objects and the two helpers several tabs use. Tests call the handlers directly.
"""
from __future__ import annotations

import threading

from demos.runner import Runner
from kb.engine import KnowledgeBase
from kb.llm import LLMConfig
from kb.ui.admin import AdminHandlers
from kb.ui.api import ApiHandlers
from kb.ui.chat import ChatHandlers
from kb.ui.demos import DemoHandlers


class ChatApp(ChatHandlers, DemoHandlers, AdminHandlers, ApiHandlers):
    """The app's state (knowledge base, runner, LLM, admin password) and every handler."""

    def __init__(self, kb: KnowledgeBase, runner: Runner, llm: LLMConfig | None = None,
                 admin_password: str | None = None):
        self.kb, self.runner, self.llm = kb, runner, llm
        self.admin_password = admin_password or None
        self._index_lock = threading.Lock()

    def _slug_or_none(self, slug: str | None) -> str | None:
        slug = (slug or "").strip()
        return slug if slug in self.kb.articles else None
