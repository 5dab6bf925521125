"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for the offline demo and tests.

It answers `POST /v1/chat/completions` (plain JSON, or SSE when `stream` is true, with a final usage chunk
when `stream_options.include_usage` is set) with deterministic text from a `reply(model, messages)` function,
and real `usage` numbers: the prompt and the reply counted with the same offline tokenizer the pack uses.
It binds only 127.0.0.1 (a random free port unless one is given) and needs no key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..messages import text_of
from ..tokens import TokenCounter

# A reply is the answer's text, or (text, finish_reason) to play e.g. an answer cut at the token limit ("length").
Reply = Callable[[str, list[dict[str, Any]]], "str | tuple[str, str]"]


def echo_reply(model: str, messages: list[dict[str, Any]]) -> str:
    """The default answer: names the model and the request, deterministically."""
    last = text_of(messages[-1]) if messages else ""
    return f"[{model}] {' '.join(last.split()[:24])}"


class DemoServer:
    """`with DemoServer(reply) as srv: srv.base_url` -> 'http://127.0.0.1:PORT/v1'."""

    def __init__(
        self,
        reply: Reply = echo_reply,
        port: int = 0,
        counter: TokenCounter | None = None,
        report_usage: bool = True,
    ):
        self.reply = reply
        self.report_usage = report_usage  # False plays a server that reports no usage (callers must count)
        self.counter = counter or TokenCounter()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> DemoServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="agent-router-demo-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling --------------------------------------------------------------------------------
    def answer(self, body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        text, usage, _ = self.answer_full(body)
        return text, usage

    def answer_full(self, body: dict[str, Any]) -> tuple[str, dict[str, int], str]:
        """The reply's text, its usage and its finish_reason ("stop" unless the reply says otherwise)."""
        model = str(body.get("model") or "")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        out = self.reply(model, messages)
        text, finish = out if isinstance(out, tuple) else (out, "stop")
        prompt = self.counter.count_messages(messages, "openai", model).tokens
        completion = self.counter.count_text(text, "openai", model).tokens
        with self._lock:
            self.requests.append(body)
        return text, {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }, finish

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints its own lines
                return

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._send(200, {"object": "list", "data": []})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(n) or b"null")
                    if not isinstance(body, dict):
                        raise ValueError("the body must be a JSON object")
                    text, usage, finish = server.answer_full(body)
                except (ValueError, json.JSONDecodeError) as e:
                    self._send(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
                    return
                model = str(body.get("model") or "")
                ident = f"chatcmpl-demo-{len(server.requests)}"
                created = int(time.time())
                if not body.get("stream"):
                    self._send(
                        200,
                        {
                            "id": ident,
                            "object": "chat.completion",
                            "created": created,
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": text},
                                    "finish_reason": finish,
                                }
                            ],
                            **({"usage": usage} if server.report_usage else {}),
                        },
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

                def event(obj: dict[str, Any] | str) -> None:
                    data = obj if isinstance(obj, str) else json.dumps(obj)
                    self.wfile.write(f"data: {data}\n\n".encode())

                base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
                words = text.split(" ")
                for i, w in enumerate(words):
                    piece = w if i == 0 else " " + w
                    event(
                        {
                            **base,
                            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                        }
                    )
                event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if server.report_usage and (body.get("stream_options") or {}).get("include_usage"):
                    event({**base, "choices": [], "usage": usage})
                event("[DONE]")
                self.wfile.flush()
                self.close_connection = True

        return Handler
