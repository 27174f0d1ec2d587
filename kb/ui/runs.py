"""Demo runs in the UI: each run in its own card (RunPanel), a small pool of cards per tab (RunCards), and
stream_view, which yields a card's values while its run goes.

A click only submits the run and picks a card; the card's own event streams it (one event per card, no
concurrency limit: the runner bounds how many demos run at once and queues the rest, which the card shows).
So a click while another run streams is never blocked or dropped. What a run's status, checks and files
look like comes from demos/present.py; this module only turns them into component updates.
"""
from __future__ import annotations

import queue
import threading
import time

import gradio as gr

from demos import present

POLL_S = 0.25                      # how often a card is refreshed while its run goes
CARDS = 4                          # cards per tab: more runs than that reuse the card of the oldest ended run


class RunPanel:
    """Components showing one run; `outputs` is the order `stream_view` yields in."""

    def __init__(self, name: str):
        with gr.Column(visible=False, elem_id=f"{name}-run", elem_classes=["kb-run-card"]) as self.column:
            self.status = gr.Markdown(elem_id=f"{name}-run-status", elem_classes=["kb-run-status"])
            self.checks = gr.Markdown(elem_id=f"{name}-run-checks", elem_classes=["kb-run-checks"])
            self.stop = gr.Button("停止", size="sm", variant="stop", visible=False, elem_classes=["kb-run-stop"])
            with gr.Accordion("实时日志", open=False):
                self.log = gr.Textbox(show_label=False, lines=8, max_lines=16, autoscroll=True,
                                      elem_id=f"{name}-run-log", elem_classes=["kb-run-log"])
            self.images = gr.Gallery(label="图像", columns=1, height="auto", object_fit="contain", visible=False,
                                     elem_id=f"{name}-run-images", elem_classes=["kb-run-images"])
            self.transcript = gr.Textbox(label="文字记录", lines=8, max_lines=30, visible=False,
                                         elem_id=f"{name}-run-transcript")
            # The run this card shows; setting it starts the card's stream (see RunCards.wire).
            self.run_id = gr.Textbox(visible=False, elem_classes=["kb-run-id"])
        self.outputs = [self.column, self.status, self.checks, self.stop, self.log, self.images, self.transcript]


class RunCards:
    """A pool of RunPanels; `place` puts a new run in a free card (or the oldest ended one)."""

    def __init__(self, name: str, n: int = CARDS):
        self.name = name
        with gr.Column(elem_id=f"{name}-runs", elem_classes=["kb-run-cards"]):
            self.panels = [RunPanel(f"{name}-{i}") for i in range(n)]
        self.boxes = [p.run_id for p in self.panels]

    def wire(self, state, history=None) -> None:
        """Each card streams its run when its run id is set; `history` (a table) is refreshed at the end."""
        for p in self.panels:
            ev = p.run_id.change(state.stream_run, [p.run_id], p.outputs, concurrency_limit=None,
                                 api_visibility="private", show_progress="hidden", trigger_mode="multiple")
            if history is not None:
                ev.then(state.history_rows, None, history, api_visibility="private")
            p.stop.click(state.cancel_run, [p.run_id], [p.status], api_visibility="private")


class CardSlots:
    """Which run each card of a browser session shows, kept on the server: clicks in quick succession are
    separate events, and a gr.State read by each of them would still hold the value before the others."""

    def __init__(self, n: int = CARDS):
        self.n = n
        self._lock = threading.Lock()
        self._by_session: dict[tuple, list[str]] = {}

    def place(self, runner, handle, key) -> list:
        """The card-box updates putting `handle` in a card of session `key` (see `place`)."""
        with self._lock:
            slots = self._by_session.get(key) or [""] * self.n
            slots, updates = place(runner, handle, slots)
            self._by_session[key] = slots
            if len(self._by_session) > 10_000:            # forget the oldest sessions
                self._by_session.pop(next(iter(self._by_session)))
            return updates


def session_key(request, name: str) -> tuple:
    return (getattr(request, "session_hash", None) or "", name)


def place(runner, handle, slots: list[str]) -> tuple[list[str], list]:
    """(new slots, one update per card's run-id box): a free card, else the card of the oldest ended run,
    else the oldest card. The chosen box gets the run id; the others are left alone."""
    slots = list(slots)
    def ended(run_id):
        h = runner.get(run_id)
        return h is None or h.done
    free = [i for i, r in enumerate(slots) if not r]
    done = [i for i, r in enumerate(slots) if r and ended(r)]
    order = free or done or list(range(len(slots)))
    i = order[0]
    slots[i] = handle.id
    updates = [gr.update(value=handle.id) if j == i else gr.skip() for j in range(len(slots))]
    return slots, updates


def stream_view(handle, max_concurrent: int | None = None, expected_checks: int | None = None):
    """Yield a RunPanel's values until the run has ended.

    Polls a `demos.runner.RunHandle` every POLL_S: queue position while it waits (the runner queues beyond
    its concurrency limit), then status, elapsed time and progress over the demo's checks, ✓/✗ per check
    as the `CHECK` lines arrive, the live log (paths relative to the run folder), images and text
    transcripts once their files are complete, and the final result; the stop button goes when it ends.
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
        yield (gr.update(visible=True), present.status_markdown(handle, len(checks), max_concurrent, expected_checks),
               present.checks_markdown(checks), gr.update(visible=not final),
               present.log_text(handle, lines[-present.LOG_LINES:]),
               gr.update(value=images, visible=bool(images)), gr.update(value=transcript, visible=bool(transcript)))
        if final:
            return
        time.sleep(POLL_S)
