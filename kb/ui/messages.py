"""Notices to the reader in Chinese with Chinese toast titles (gradio's say "Warning"/"Info"); a refusal is
kb/ui/guard.refuse."""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("kb.ui")


def warn(message: str) -> None:
    log.info("warning shown: %s", message.replace("\n", " "))
    gr.Warning(message, title="提示")


def info(message: str) -> None:
    gr.Info(message, title="提示")
