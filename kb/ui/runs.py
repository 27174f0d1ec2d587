"""One demo run in the UI: RunPanel (its components) and stream_view (their values while the run goes).

What a run's status, checks and files look like comes from demos/present.py; this module only turns them
into component updates.
"""
from __future__ import annotations

import queue
import threading
import time

import gradio as gr

from demos import present

POLL_S = 0.25                      # how often a run's panel is refreshed while it runs


class RunPanel:
    """Components showing one run; `outputs` is the order `stream_view` yields in."""

    def __init__(self, name: str):
        with gr.Column(visible=False, elem_id=f"{name}-run") as self.column:
            gr.Markdown("#### 演示运行")
            self.status = gr.Markdown(elem_id=f"{name}-run-status")
            self.checks = gr.Markdown(elem_id=f"{name}-run-checks")
            self.stop = gr.Button("停止", size="sm", variant="stop")
            self.log = gr.Textbox(label="实时日志", lines=10, max_lines=18, autoscroll=True,
                                  elem_id=f"{name}-run-log")
            self.images = gr.Gallery(label="图像", columns=2, height="auto", elem_id=f"{name}-run-images")
            self.transcript = gr.Textbox(label="文字记录", lines=8, max_lines=30, elem_id=f"{name}-run-transcript")
            self.run_id = gr.State("")
        self.outputs = [self.column, self.status, self.checks, self.log, self.images, self.transcript, self.run_id]


def stream_view(handle, max_concurrent: int | None = None):
    """Yield a RunPanel's values until the run has ended.

    Polls a `demos.runner.RunHandle` every POLL_S: queue position while it waits (the runner queues beyond
    its concurrency limit), then status and elapsed time, ✓/✗ per check as the `CHECK` lines arrive, the
    live log, images and text transcripts once their files are complete, and the final result.
    """
    feed: queue.Queue = queue.Queue()

    def pump():
        for line in handle.lines():
            feed.put(line)
        feed.put(None)

    threading.Thread(target=pump, daemon=True, name=f"view-{handle.id}").start()
    lines, sizes, ended = [], {}, False
    while True:
        try:
            while True:
                line = feed.get_nowait()
                if line is None:
                    ended = True
                    break
                lines.append(line)
        except queue.Empty:
            pass
        final = ended and handle.done
        checks = (handle.result or {}).get("checks") if final else None
        checks = checks if checks else present.parse_checks(lines)
        images, transcript = present.scan_artifacts(handle, lines, sizes, final)
        yield (gr.update(visible=True), present.status_markdown(handle, len(checks), max_concurrent),
               present.checks_markdown(checks), "\n".join(lines[-present.LOG_LINES:]), images, transcript, handle.id)
        if final:
            return
        time.sleep(POLL_S)
