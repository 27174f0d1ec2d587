"""The semantic index's build notice on the 问答 tab, and the `/index_status` JSON route.

While a first start builds the index in the background (kb/warm_start.py), the chat page shows what is
being done, how far it is, and that answers use keyword search (BM25) until it is done; a timer polls
every second and hides the notice (and stops itself) once the semantic index serves.
"""
from __future__ import annotations

import html

import gradio as gr

POLL_S = 1.0


def notice_html(progress) -> str:
    text = progress.notice()
    return f'<div class="kb-banner" id="index-notice" role="status">{html.escape(text)}</div>' if text else ""


def create_ui(ui: dict, state) -> None:
    """The notice (visible only while building) and its timer; call inside the chat tab's column."""
    progress = state.kb.progress
    building = progress.state != "ready"
    ui["index_notice"] = gr.HTML(notice_html(progress), visible=building, elem_id="index-notice-box")
    ui["index_timer"] = gr.Timer(POLL_S, active=building)


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    def refresh():
        progress = state.kb.progress
        building = progress.state != "ready"
        return gr.update(value=notice_html(progress), visible=building), gr.Timer(active=building)

    ui["index_timer"].tick(refresh, outputs=[ui["index_notice"], ui["index_timer"]], api_visibility="private",
                           show_progress="hidden")
    # A page opened during the build starts polling at once; one opened later shows nothing.
    demo.load(refresh, outputs=[ui["index_notice"], ui["index_timer"]], api_visibility="private",
              show_progress="hidden")


def add_route(server, kb) -> None:
    """GET /index_status: {"state": "building"|"ready"|"failed", "phase", "done", "total", "seconds", ...}."""
    @server.get("/index_status")
    def index_status():
        return {**kb.progress.as_dict(), "retrieval": "hybrid" if kb.semantic_ready else "bm25"}
