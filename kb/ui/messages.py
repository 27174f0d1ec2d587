"""Messages to the reader in Chinese, logged in one line on the server (no traceback for a user's mistake).

gradio's own toasts say "Error"/"Warning"/"Info" in their titles; these give them Chinese titles.
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("kb.ui")


def user_error(message: str) -> gr.Error:
    """An error to raise for a reader's mistake or a refused action: shown in Chinese, logged in one line."""
    log.warning("user error: %s", message.replace("\n", " "))
    return gr.Error(message, title="出错了", print_exception=False)


def warn(message: str) -> None:
    log.info("warning shown: %s", message.replace("\n", " "))
    gr.Warning(message, title="提示")


def info(message: str) -> None:
    gr.Info(message, title="提示")
