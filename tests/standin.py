"""A stand-in OpenAI-compatible server on 127.0.0.1 for fault tests: it answers by role (the
request's model name) and fails on request — 429, 500, a hang, a malformed body, an outage.

It claims no capability: the answers are fixed texts that drive the pipeline's control flow.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TASKS = ('{"tasks": ["Count the rows of every table in this database", '
         '"Show the first row of the largest table"]}')
ACTION = "REASON: look at the tables\nACTION: SELECT name FROM sqlite_master"
INSTRUCTION = "List the names of the tables in this database."
VOTE = ('{"aligned": true, "coherent": true, "natural": true, "reasonable": true, '
        '"reason": "fine"}')


def answer(body: dict[str, Any]) -> str:
    """The fixed answer for a request, by role: ``generator`` (tasks when a JSON format is
    asked, else an instruction), ``agent``, ``judge``."""
    model = body.get("model", "")
    if model == "judge":
        return VOTE
    if model == "generator":
        return TASKS if "response_format" in body else INSTRUCTION
    return ACTION


class StandIn:
    """``with StandIn() as server:``; ``server.url`` is the ``api_base``. ``fail(mode, n)``
    makes the next ``n`` requests fail (``n=None``: until ``recover()``), only those of one
    role if ``fail(..., model=role)``; modes: ``429``,
    ``500``, ``hang``, ``malformed``, ``truncated`` (an answer cut at max_tokens, HTTP 200).
    ``too_long_if``: requests containing that text are
    refused with llama-server's context-size error (HTTP 400). ``latency_s``: every answer
    takes this long (a model's decode time); ``max_in_flight`` is the most requests it held at
    once, ``spans`` the (start, end) monotonic times of each request."""

    def __init__(self, hang_s: float = 30.0, too_long_if: str | None = None,
                 answers: dict[str, str] | None = None, latency_s: float = 0.0) -> None:
        self.answers = answers or {}
        """Plain-text answers by role (model name) in place of those of ``answer``."""
        self.too_long_if = too_long_if
        """Requests whose messages contain this text are refused as over the context size."""
        self.requests = 0
        self.failed = 0
        self.latency_s = latency_s
        self.in_flight = self.max_in_flight = 0
        self.spans: list[tuple[float, float]] = []
        self.hang_s = hang_s
        self._mode: str | None = None
        self._left: int | None = None
        self._model: str | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                started = time.monotonic()
                try:
                    time.sleep(server.latency_s)
                    self._answer()
                finally:
                    with server._lock:
                        server.in_flight -= 1
                        server.spans.append((started, time.monotonic()))

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                mode = server._next_mode(body.get("model"))
                prompt = "\n".join(str(m.get("content")) for m in body["messages"])
                if server.too_long_if and server.too_long_if in prompt:
                    self._send(400, {"error": {  # llama-server's answer
                        "code": 400, "type": "exceed_context_size_error",
                        "message": "the request exceeds the available context size, try "
                                   "increasing it"}})
                    return
                if mode == "hang":
                    time.sleep(server.hang_s)
                    return
                if mode == "truncated":  # stopped at max_tokens in the middle of the action
                    self._send(200, {
                        "id": "x", "object": "chat.completion", "created": 0,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "length", "message": {
                            "role": "assistant", "content": server.answer(body)[:-12]}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                  "total_tokens": 15}})
                elif mode in ("429", "500"):
                    self._send(int(mode), {"error": {"message": f"stand-in {mode}"}})
                elif mode == "malformed":
                    self._send(200, None, raw=b'{"choices": [{"message": ')
                else:
                    text = server.answer(body)
                    self._send(200, {
                        "id": "x", "object": "chat.completion", "created": 0,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                  "total_tokens": 15}})

            def _send(self, code: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many clients connect at once (socketserver's default: 5)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def answer(self, body: dict[str, Any]) -> str:
        if "response_format" in body:  # JSON answers (tasks, votes) stay the defaults
            return answer(body)
        return self.answers.get(body.get("model", "")) or answer(body)

    def _next_mode(self, model: str | None) -> str | None:
        with self._lock:
            self.requests += 1
            if self._mode is None or self._model not in (None, model):
                return None
            if self._left is not None:
                self._left -= 1
                if self._left < 0:
                    self._mode = self._left = None
                    return None
            self.failed += 1
            return self._mode

    def fail(self, mode: str, n: int | None = None, model: str | None = None) -> None:
        with self._lock:
            self._mode, self._left, self._model = mode, n, model

    def recover(self) -> None:
        self.fail(None, None)  # type: ignore[arg-type]

    def __enter__(self) -> StandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def role(name: str, url: str, **settings: Any) -> dict[str, Any]:
    """An LLMConfig (as config data) for a role of the stand-in."""
    return {"model": f"openai/{name}", "api_base": url, "retry_backoff_s": 0.01,
            "cache": False, **settings}
