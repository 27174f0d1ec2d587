"""The HTTP half of kb/security.py: one ASGI middleware in front of the whole app (gradio included).

    app.add_middleware(SecurityMiddleware, frame_ancestors="'self'", upload_folder=cache, not_found=(E,))

On every response: Content-Security-Policy (article pages: same-origin script files only; gradio's page
needs its inline bootstrap scripts), X-Content-Type-Options: nosniff, Referrer-Policy, and X-Frame-Options
when only this origin may frame the app. On every request: the body is capped (a declared Content-Length
over the cap is answered 413 at once; a chunked body is counted as it arrives). For JSON bodies sent to
gradio's API (`/gradio_api/...`), every file payload (`{"path": ...}`, gradio's FileData) must name a file
in gradio's upload cache: a client may only hand the app files it uploaded, whatever the mounting (a
mounted gradio app skips gradio's own check) — a refusal says so in Chinese and names no server path.
Named endpoints (`/gradio_api/call/<name>`, `/gradio_api/run/<name>`): a name not in `api_arity` is a 404,
and a body that is not `{"data": [...]}` or has fewer values than `api_arity[name]` a 400, all with a
Chinese message, before gradio answers them with an English 422 or a 500 and a traceback.

This module knows ASGI and JSON, not gradio: app.py passes the upload folder and the endpoints' arities.
"""
from __future__ import annotations

import json
import logging

from kb.security import LIMITS, is_inside

log = logging.getLogger("kb.security")
MAX_JSON_DEPTH = 64


def content_security_policy(frame_ancestors: str = "'self'", strict_scripts: bool = False) -> str:
    """The CSP header value. `strict_scripts`: only same-origin script files (article pages); otherwise
    Gradio's page needs its inline bootstrap scripts. Both forbid plugins, foreign frames and `<base>`."""
    script = "'self'" if strict_scripts else "'self' 'unsafe-inline' 'unsafe-eval'"
    return "; ".join([
        "default-src 'self'",
        f"script-src {script}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob: data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])


def foreign_file_paths(data, upload_folder: str, depth: int = 0) -> list[str]:
    """File payloads in a JSON value whose path is not a file the client uploaded (in `upload_folder`).

    A file payload is a dict with a string "path" and gradio's FileData markers ("meta", "orig_name",
    "url" or "is_stream"). URLs are refused too: the server would fetch them."""
    if depth > MAX_JSON_DEPTH:
        return ["(too deep)"]
    bad: list[str] = []
    if isinstance(data, dict):
        path = data.get("path")
        if isinstance(path, str) and any(k in data for k in ("meta", "orig_name", "url", "is_stream", "mime_type")):
            if not (path and "\x00" not in path and path.startswith("/") and is_inside(path, upload_folder)):
                bad.append(path)
        for value in data.values():
            bad += foreign_file_paths(value, upload_folder, depth + 1)
    elif isinstance(data, list):
        for value in data:
            bad += foreign_file_paths(value, upload_folder, depth + 1)
    return bad


_TOO_LARGE = "请求过大：上限 {} 字节。"
_FOREIGN_FILE = "只接受通过本页面上传的文件；请重新选择文件上传。"
_NOT_AN_ENVELOPE = "请求体必须是 JSON 对象，形如 {\"data\": [参数1, 参数2, ...]}。"


def _http_exception(exc: BaseException):
    """The HTTPException `exc` is or was raised from (starlette wraps one raised mid-response), or None."""
    from starlette.exceptions import HTTPException

    for e in (exc, exc.__cause__):
        if isinstance(e, HTTPException):
            return e
    return None


class SecurityMiddleware:
    """See the module docstring."""

    def __init__(self, app, frame_ancestors: str = "'self'", max_body_bytes: int = LIMITS.max_body_bytes,
                 strict_prefixes: tuple[str, ...] = ("/article/",), upload_folder: str | None = None,
                 api_prefix: str = "/gradio_api/", api_arity: dict[str, int] | None = None):
        self.app, self.max_body_bytes, self.strict_prefixes = app, max_body_bytes, strict_prefixes
        self.upload_folder, self.api_prefix = upload_folder, api_prefix
        self.api_arity = api_arity or {}
        base = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
        if frame_ancestors == "'self'":
            base.append((b"x-frame-options", b"SAMEORIGIN"))
        self._headers = {
            strict: base + [(b"content-security-policy", content_security_policy(frame_ancestors, strict).encode())]
            for strict in (False, True)}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        extra = self._headers[path.startswith(self.strict_prefixes)]
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body_bytes
            except ValueError:
                too_large = True
            if too_large:
                return await self._refuse(send, extra)
        if self._unknown_endpoint(path):
            log.warning("refused %s: no such endpoint", path[:200])
            return await self._send(send, extra, 404, "没有这个接口。")
        if ((self.upload_folder or self.api_arity) and scope.get("method") == "POST" and path.startswith(self.api_prefix)
                and b"json" in headers.get(b"content-type", b"")):
            return await self._checked_json(scope, receive, send, extra)
        await self._forward(scope, receive, send, extra)

    async def _forward(self, scope, receive, send, extra):
        received = 0
        started = refused = finished = False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not refused:
                    # Answer 413 now; the app sees a client that went away and whatever it sends is dropped.
                    refused = True
                    if not started:
                        await self._refuse(send, extra)
                    return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message):
            nonlocal started, finished
            if refused:
                return
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in extra if k not in names]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:
            # Gradio's event streams answer an unknown session or event id by raising HTTPException(404)
            # after the stream has begun; the client already holds its answer (an error event), and the
            # server would log a traceback for it. One line instead, and the stream is closed.
            http_error = _http_exception(exc)
            if not (started and http_error is not None):
                raise
            log.warning("refused %s: %s (after the response began)", scope.get("path", "?")[:200], http_error)
            if not finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _checked_json(self, scope, receive, send, extra):
        """Read the whole (capped) JSON body, refuse foreign file paths, then replay it to the app."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return   # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return await self._refuse(send, extra)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None   # not JSON after all: the app answers it as it would
        refusal = self._arity_refusal(scope.get("path", ""), data)
        if refusal:
            log.warning("refused %s: %s", scope.get("path", "?")[:200], refusal)
            return await self._send(send, extra, 400, json.dumps({"error": refusal}, ensure_ascii=False),
                                    b"application/json")
        bad = foreign_file_paths(data, self.upload_folder) if data is not None and self.upload_folder else []
        if bad:
            log.warning("refused %s: file path not uploaded by the client (%d)", scope.get("path", "?")[:200], len(bad))
            return await self._send(send, extra, 400, json.dumps({"error": _FOREIGN_FILE}, ensure_ascii=False),
                                    b"application/json")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._forward(scope, replay, send, extra)

    def _unknown_endpoint(self, path: str) -> bool:
        if not self.api_arity or not path.startswith(self.api_prefix):
            return False
        parts = path[len(self.api_prefix):].split("/")
        return len(parts) >= 2 and parts[0] in ("call", "run") and parts[1] not in self.api_arity

    def _arity_refusal(self, path: str, data) -> str | None:
        """A Chinese message when a named endpoint's body is not {"data": [...]} or has fewer values than the
        endpoint takes, else None (FastAPI would answer the first with an English 422)."""
        parts = path[len(self.api_prefix):].split("/")
        if len(parts) < 2 or parts[0] not in ("call", "run") or parts[1] not in self.api_arity:
            return None
        values = data.get("data") if isinstance(data, dict) else None
        if not isinstance(values, list):
            return _NOT_AN_ENVELOPE
        need = self.api_arity[parts[1]]
        if isinstance(values, list) and len(values) < need:
            return f"参数个数不对：/{parts[1]} 需要 {need} 个参数，收到 {len(values)} 个。"
        return None

    async def _refuse(self, send, extra):
        await self._send(send, extra, 413, _TOO_LARGE.format(self.max_body_bytes))

    @staticmethod
    async def _send(send, extra, status: int, text: str, content_type: bytes = b"text/plain; charset=utf-8"):
        body = text.encode("utf-8")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type if b"charset" in content_type
                                 else content_type + b"; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())] + extra})
        await send({"type": "http.response.body", "body": body})
