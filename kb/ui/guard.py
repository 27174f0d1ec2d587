"""Who is asking and how a refusal looks: shared by every tab's handlers.

A refused request is one `kb.app` log line (no traceback: gradio prints one for every gr.Error unless told
not to) and a Chinese gr.Error for the client. The checks themselves live in kb/security.py.
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("kb.app")


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
