"""POST /api/ask: the /ask answer as one plain JSON request and response, for programs, proxies and load.

    curl -s localhost:7860/api/ask -H 'content-type: application/json' \\
         -d '{"question": "生成器为什么省内存？", "article": "python-generators", "history": [["问", "答"]]}'

The body is a JSON object: `question` (required), `article` (the page the reader is on, optional) and
`history` (`[[question, answer], ...]`, or `history_json` as a string, as /ask takes it). The response is
the dict gradio's /ask returns (`question, text, answerable, citations, demos, hits, retrieval, ...`),
from the same function (ChatApp.answer_request), so the checks, limits and question log are the same.

Why a second door to the same answer: gradio's named endpoints run through its queue (a POST, then an
event stream, per request), which on the 2-core machine costs more CPU per request than the answer
itself (kb.load_bench measures both). This route is one round trip.

Load: at most `limits.ask_concurrency` answers are computed at once (an anyio CapacityLimiter of this
route's own, so waiting requests hold no worker thread and gradio's threads stay free); beyond
`limits.ask_queue_max` requests waiting or running, the answer is 503 with Retry-After at once rather than
a growing queue. Bad input is 400 (413 past the body cap, kb/security_http.py) with a Chinese `error` and
one log line; nothing is written for a refused request.
"""
from __future__ import annotations

import functools
import json

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kb.errors import KBError, QueryError
from kb.security import UnsafeInput
from kb.ui.api import KB_FAILED
from kb.ui.guard import client_host, log

NOT_AN_OBJECT = "请求体必须是 JSON 对象，例如 {\"question\": \"生成器为什么省内存？\"}。"
BUSY = "服务繁忙，请稍后再试。"


class AskGate:
    """How many /api/ask requests may compute at once, and how many may wait or run in all."""

    def __init__(self, slots: int, max_pending: int):
        self.limiter = anyio.CapacityLimiter(slots)
        self.max_pending = max_pending
        self.pending = 0            # waiting or running; only touched on the event loop, so no lock


def _refuse(request: Request, status: int, message: str) -> JSONResponse:
    log.warning("refused /api/ask from %s: %s", client_host(request), message[:200])
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _fields(body: bytes) -> tuple[object, object, object]:
    """(question, article, history_json) from the request body, unchecked: ChatApp.answer_request checks
    them with the same messages /ask gives. UnsafeInput when the body is not a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise UnsafeInput(NOT_AN_OBJECT) from None
    if not isinstance(data, dict):
        raise UnsafeInput(NOT_AN_OBJECT)
    history = data.get("history", data.get("history_json", "[]"))
    if isinstance(history, list):
        history = json.dumps(history, ensure_ascii=False)
    return data.get("question"), data.get("article") or "", history


def add_rest_routes(app: FastAPI, state) -> AskGate:
    """Register POST /api/ask on `app` for the ChatApp `state`; returns its gate (tests read it)."""
    gate = AskGate(state.limits.ask_concurrency, state.limits.ask_queue_max)

    @app.post("/api/ask")
    async def rest_ask(request: Request):
        if gate.pending >= gate.max_pending:
            return _refuse(request, 503, BUSY)
        try:
            question, article, history = _fields(await request.body())
        except UnsafeInput as exc:
            return _refuse(request, 400, str(exc))
        gate.pending += 1
        try:
            work = functools.partial(state.answer_request, question, article, history)
            return await anyio.to_thread.run_sync(work, limiter=gate.limiter)
        except (QueryError, UnsafeInput) as exc:
            return _refuse(request, 400, str(exc))
        except KBError as exc:
            log.error("/api/ask failed: %s", exc)
            return JSONResponse({"error": KB_FAILED}, status_code=500)
        finally:
            gate.pending -= 1

    return gate
