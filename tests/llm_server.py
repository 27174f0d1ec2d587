"""A real OpenAI-compatible chat server on loopback for the tests (stdlib http.server in a thread).

`POST /v1/chat/completions` answers with the next scripted reply: a list of tokens, streamed as
`text/event-stream` `data: {...}` chunks ending with `data: [DONE]` when the request asks for a stream,
else one JSON completion. Every request body is recorded (`server.requests`) so tests can check the prompt
and the Authorization header. Not a mock object: langchain-openai talks to it over HTTP like to vLLM.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAIServer:
    def __init__(self, model: str = "stub-model"):
        self.model = model
        self.replies: deque[list[str]] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_with: int | None = None   # answer every request with this HTTP status when set
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: list[str]) -> None:
        """Queue replies, each a list of tokens streamed one chunk per token."""
        self.replies.extend(replies)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _json(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                server.requests.append(request)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if server.fail_with:
                    return self._json(server.fail_with, {"error": {"message": "stub failure", "type": "server_error"}})
                tokens = server.replies.popleft() if server.replies else ["（没有脚本回复）"]
                created, cid = int(time.time()), f"chatcmpl-{len(server.requests)}"
                if not request.get("stream"):
                    return self._json(200, {
                        "id": cid, "object": "chat.completion", "created": created, "model": server.model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "".join(tokens)}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": len(tokens), "total_tokens": 1 + len(tokens)},
                    })
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

                def send(delta: dict, finish: str | None = None) -> None:
                    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created,
                             "model": server.model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()

                send({"role": "assistant", "content": ""})
                for token in tokens:
                    send({"content": token})
                send({}, "stop")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
