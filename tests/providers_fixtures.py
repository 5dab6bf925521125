"""A local HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions, Anthropic Messages, Gemini
generateContent and OpenAI audio-transcription wire formats, with faults injected per model on request.

`server.fault("model-name", "500", "ok")` queues behaviours for the next requests naming that model:
ok, 429[:retry_after], 500, 503, timeout, delay:<s>, reset, malformed, cut, cut_clean, context, policy,
filtered, nostream, exhausted, nostreamopts,
hang (read the request, never answer), drip:<s> (headers at once, then the body one byte every <s> seconds),
driphead:<s> (the status line and headers one byte every <s> seconds too), body:<name> (a 200 whose body is
BAD_BODIES[format][name]), sse:<name> (a 200 event stream of BAD_EVENTS[format][name]), reply:<name> (a 200
whose body is REPLIES[format][name], a well-formed answer with the usage counts a test needs).
Requests are logged in `server.requests` (path, headers, parsed body).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

GOOD_KEYS = {"test-key-GOOD-0123456789abcdef", "test-key-SECOND-0123456789abcdef"}
BAD_KEY = "test-key-WRONG-0123456789abcdef"
USAGE = {"input": 21, "output": 7, "cached": 5}

_OK_OPENAI = {"role": "assistant", "content": "x"}
# 2xx bodies of the wrong shape, per wire format: each must be a `malformed` error that fails over.
BAD_BODIES: dict[str, dict[str, bytes]] = {
    fmt: {k: v if isinstance(v, bytes) else json.dumps(v).encode() for k, v in bodies.items()}
    for fmt, bodies in {
        "openai": {
            "message_is_text": {"choices": [{"message": "hi", "finish_reason": "stop"}]},
            "usage_is_text": {"choices": [{"message": _OK_OPENAI, "finish_reason": "stop"}], "usage": "lots"},
            "tool_call_is_number": {"choices": [{"message": {"content": None, "tool_calls": [5]}}]},
            "no_choices": {"choices": []},
            "choices_is_object": {"choices": {"message": _OK_OPENAI}},
            "content_is_number": {"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]},
            "finish_is_list": {"choices": [{"message": _OK_OPENAI, "finish_reason": ["stop"]}]},
            "tokens_negative": {"choices": [{"message": _OK_OPENAI}], "usage": {"prompt_tokens": -3}},
            "tokens_text": {"choices": [{"message": _OK_OPENAI}], "usage": {"completion_tokens": "many"}},
            "function_is_text": {"choices": [{"message": {"tool_calls": [{"id": "a", "function": "f"}]}}]},
            "top_is_list": [1, 2, 3],
            "not_json": b"<html><body>502 Bad Gateway</body></html>",
            "deeply_nested": b"[" * 100_000,
        },
        "anthropic": {
            "content_is_text": {"content": "hi", "stop_reason": "end_turn"},
            "block_is_number": {"content": [5], "stop_reason": "end_turn"},
            "text_is_number": {"content": [{"type": "text", "text": 5}]},
            "usage_is_text": {"content": [{"type": "text", "text": "x"}], "usage": "lots"},
            "tokens_text": {"content": [{"type": "text", "text": "x"}], "usage": {"input_tokens": "many"}},
            "stop_is_object": {"content": [{"type": "text", "text": "x"}], "stop_reason": {"a": 1}},
            "not_json": b"oops",
        },
        "gemini": {
            "candidates_is_text": {"candidates": "hi"},
            "part_is_number": {"candidates": [{"content": {"parts": [5]}, "finishReason": "STOP"}]},
            "text_is_object": {"candidates": [{"content": {"parts": [{"text": {"a": 1}}]}, "finishReason": "STOP"}]},
            "usage_is_text": {
                "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
                "usageMetadata": "lots",
            },
            "call_is_text": {"candidates": [{"content": {"parts": [{"functionCall": "f"}]}}]},
            "not_json": b"",
        },
    }.items()
}
# Well-formed answers whose usage counts are the point of a test.
REPLIES: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {
        # Some compatible servers count reasoning outside completion_tokens: more reasoning than output.
        "reasoning_over_output": {
            "choices": [{"message": {"role": "assistant", "content": "thought hard"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5,
                      "completion_tokens_details": {"reasoning_tokens": 9}},
        },
    },
    "gemini": {
        # Gemini after a tool round: toolUsePromptTokenCount is not inside promptTokenCount.
        "tool_use_prompt": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "done"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1000, "toolUsePromptTokenCount": 400,
                              "cachedContentTokenCount": 200, "candidatesTokenCount": 50,
                              "thoughtsTokenCount": 30, "totalTokenCount": 1480},
        },
    },
}
# Event streams whose events are of the wrong shape (`data:` payloads, in order).
BAD_EVENTS: dict[str, dict[str, list[str]]] = {
    "openai": {
        "number": ["5"],
        "delta_is_text": ['{"choices": [{"delta": "hi"}]}'],
        "choices_is_text": ['{"choices": "hi"}'],
        "tool_call_is_number": ['{"choices": [{"delta": {"tool_calls": [5]}}]}'],
        "usage_is_text": ['{"choices": [], "usage": "lots"}', "[DONE]"],
        "null": ["null"],
    },
    "anthropic": {
        "number": ["5"],
        "message_is_text": ['{"type": "message_start", "message": "hi"}'],
        "delta_is_text": ['{"type": "content_block_delta", "index": 0, "delta": "x"}'],
        "usage_is_text": ['{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": "lots"}'],
        "index_is_text": ['{"type": "content_block_start", "index": "a", "content_block": {"type": "tool_use"}}'],
    },
    "gemini": {
        "number": ["5"],
        "candidates_is_text": ['{"candidates": "hi"}'],
        "part_is_number": ['{"candidates": [{"content": {"parts": [5]}}]}'],
        "list": ["[1]"],
    },
}
# Streams that go wrong after text was delivered (served by sse:<name> too).
MIDSTREAM_EVENTS: dict[str, dict[str, list[str]]] = {
    "openai": {"partial_then_bad": ['{"choices": [{"delta": {"content": "Hel"}}]}', '{"choices": [{"delta": 7}]}']},
}


class FakeLLM:
    def __init__(self, valid_keys: set[str] | None = None, hang_s: float = 3.0):
        self.valid_keys = set(GOOD_KEYS) if valid_keys is None else valid_keys
        self.hang_s = hang_s
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()  # set at shutdown: hanging and dripping handlers stop
        self._lock = threading.Lock()
        outer = self

        class Handler(_Handler):
            server_obj = outer

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fault(self, model: str, *behaviours: str) -> None:
        with self._lock:
            self.faults[model].extend(behaviours)

    def next_fault(self, model: str) -> str:
        with self._lock:
            q = self.faults.get(model)
            return q.popleft() if q else "ok"

    def count(self, model: str) -> int:
        return sum(1 for r in self.requests if r["model"] == model)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-reply are what these tests provoke; no traceback noise.
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_obj: FakeLLM

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _start_stream(self, chunked: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._chunked = chunked

    def _event(self, data: Any, event: str | None = None) -> None:
        text = (
            f"event: {event}\n" if event else ""
        ) + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        raw = text.encode()
        if self._chunked:
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        else:
            self.wfile.write(raw)
        self.wfile.flush()

    def _end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send a TCP RST: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _drip(self, full: dict[str, Any], stream: bool, every_s: float, head: bool) -> None:
        """A server alive but slow: one byte every `every_s` seconds (httpx's read timeout never trips)."""
        if stream:
            payload = f"data: {json.dumps(full)}\n\n".encode()
            heads = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        else:
            payload = json.dumps(full).encode()
            heads = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        self.close_connection = True
        if not head:
            self.wfile.write(heads.encode())
            self.wfile.flush()
        for b in (heads.encode() if head else b"") + payload:
            if self.server_obj.closing.wait(every_s):
                break
            try:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
            except OSError:  # the client gave up: what the test wants
                break
        self._drop()

    # -- dispatch ------------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path
        if path.endswith("/chat/completions"):
            fmt, body = "openai", json.loads(raw)
            model, key = body.get("model"), self._bearer()
            stream = bool(body.get("stream"))
        elif path.endswith("/messages"):
            fmt, body = "anthropic", json.loads(raw)
            model, key = body.get("model"), self.headers.get("x-api-key")
            stream = bool(body.get("stream"))
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            fmt, body = "gemini", json.loads(raw)
            model = path.split("/models/")[1].split(":")[0]
            key, stream = self.headers.get("x-goog-api-key"), ":streamGenerateContent" in path
        elif path.endswith("/audio/transcriptions"):
            fmt, body = "stt", self._form(raw)
            model, key, stream = body.get("model"), self._bearer(), False
        else:
            return self._send(404, {"error": {"message": f"no route {path}"}})
        srv = self.server_obj
        with srv._lock:
            srv.requests.append(
                {
                    "path": path,
                    "headers": dict(self.headers),
                    "body": body,
                    "model": model,
                    "format": fmt,
                    "stream": stream,
                }
            )
        if srv.valid_keys and key not in srv.valid_keys:
            return self._auth_error(fmt, key)
        fault = srv.next_fault(model)
        name, _, arg = fault.partition(":")
        if name == "hang":
            srv.closing.wait(60)
            return self._drop()
        if name == "body":
            return self._send(200, BAD_BODIES[fmt][arg])
        if name == "reply":
            return self._send(200, REPLIES[fmt][arg])
        if name == "sse":
            self._start_stream()
            for data in {**BAD_EVENTS[fmt], **MIDSTREAM_EVENTS.get(fmt, {})}[arg]:
                self._event(data)
            return self._end_stream()
        if name in ("drip", "driphead"):
            return self._drip(getattr(self, f"_full_{fmt}")(model, self._reply(body, fmt, model)), stream,
                              float(arg), head=name == "driphead")
        if name == "timeout":
            time.sleep(srv.hang_s)
            name = "ok"
        elif name == "delay":
            time.sleep(float(arg))
            name = "ok"
        if name == "429":
            return self._error(
                fmt, 429, "rate_limit_error", "Rate limit reached for requests", {"Retry-After": arg or "1"}
            )
        if name in ("500", "503"):
            return self._error(fmt, int(name), "server_error", "The server had an error while processing")
        if name == "context":
            msg = {
                "openai": "This model's maximum context length is 8192 tokens",
                "anthropic": "prompt is too long: 250000 tokens > 200000 maximum",
                "gemini": "The input token count exceeds the maximum number of tokens allowed",
            }.get(fmt, "too long")
            return self._error(fmt, 400, "invalid_request_error", msg, code="context_length_exceeded")
        if name == "policy":
            return self._error(
                fmt,
                400,
                "invalid_request_error",
                "Your request was rejected by our content policy",
                code="content_policy_violation",
            )
        if name == "nostreamopts" and "stream_options" in body:
            return self._error(
                fmt, 400, "invalid_request_error", "Unrecognized request argument supplied: stream_options"
            )
        if name == "reset":
            return self._reset()
        if name == "malformed":
            return self._send(200, b'{"id": "x", "choices": [ {not json')
        if name == "filtered":  # a 200 whose answer the provider withheld
            return self._send(
                200,
                {
                    "openai": {
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": None},
                                "finish_reason": "content_filter",
                            }
                        ],
                    },
                    "anthropic": {
                        "model": model,
                        "content": [],
                        "stop_reason": "refusal",
                        "usage": {"input_tokens": 3, "output_tokens": 0},
                    },
                    "gemini": {
                        "candidates": [{"finishReason": "SAFETY"}],
                        "usageMetadata": {"promptTokenCount": 3},
                    },
                }[fmt],
            )
        problem = self._check(fmt, body)
        if problem:
            return self._error(fmt, 400, "invalid_request_error", problem)
        if fmt == "stt":
            return self._send(200, {"text": f"transcribed by {model}", "duration": 30.0})
        reply = self._reply(body, fmt, model)
        if stream and name == "nostream":  # a server that ignores `stream` and answers in one piece
            return self._send(200, getattr(self, f"_full_{fmt}")(model, reply))
        if stream:
            return getattr(self, f"_stream_{fmt}")(
                model, reply, body, cut=name in ("cut", "cut_clean"), chunked=name != "cut_clean"
            )
        if name == "cut":  # promise more bytes than are sent, then drop the connection
            raw_body = json.dumps(getattr(self, f"_full_{fmt}")(model, reply)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw_body)))
            self.end_headers()
            self.wfile.write(raw_body[:20])
            return self._drop()
        return self._send(
            200,
            getattr(self, f"_full_{fmt}")(model, reply),
            {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499"}
            if name != "exhausted"  # the last request the quota allows, for the next 0.3 s
            else {
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "0.3s",
            },
        )

    def _bearer(self) -> str | None:
        h = self.headers.get("Authorization") or ""
        return h[7:] if h.startswith("Bearer ") else None

    def _form(self, raw: bytes) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "")
        msg = BytesParser(policy=policy.default).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        out: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            out[name] = part.get_content() if part.get_filename() is None else part.get_payload(decode=True)
            if part.get_filename():
                out["filename"] = part.get_filename()
        return out

    def _auth_error(self, fmt: str, key: str | None) -> None:
        # Real providers echo (part of) the key they refused; our client must redact it.
        if fmt == "gemini":
            return self._send(
                400,
                {
                    "error": {
                        "code": 400,
                        "status": "INVALID_ARGUMENT",
                        "message": f"API key not valid. Please pass a valid API key. {key}",
                    }
                },
            )
        if fmt == "anthropic":
            return self._send(
                401,
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": f"invalid x-api-key {key}"},
                },
            )
        return self._send(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )

    def _error(
        self,
        fmt: str,
        status: int,
        etype: str,
        message: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        if fmt == "anthropic":
            body: Any = {"type": "error", "error": {"type": etype, "message": message}}
        elif fmt == "gemini":
            body = {
                "error": {
                    "code": status,
                    "message": message,
                    "status": "RESOURCE_EXHAUSTED" if status == 429 else "INVALID_ARGUMENT",
                }
            }
        else:
            body = {"error": {"message": message, "type": etype, "code": code}}
        self._send(status, body, headers)

    def _check(self, fmt: str, body: dict[str, Any]) -> str | None:
        """The structural rules each real API enforces, so conversions are checked against the format."""
        if fmt == "anthropic":
            if "max_tokens" not in body:
                return "max_tokens: Field required"
            roles = [m["role"] for m in body["messages"]]
            if any(r not in ("user", "assistant") for r in roles):
                return "messages: roles must be user or assistant"
            if any(a == b for a, b in zip(roles, roles[1:], strict=False)) or roles[:1] != ["user"]:
                return "messages: roles must alternate, starting with user"
            if any(isinstance(m["content"], str) is False and not m["content"] for m in body["messages"]):
                return "messages: content must not be empty"
        if fmt == "gemini":
            if any(c.get("role") not in ("user", "model") for c in body.get("contents", [])):
                return "contents.role must be user or model"
            if not body.get("contents"):
                return "contents is required"
        if fmt == "openai" and not body.get("messages"):
            return "messages is required"
        return None

    # -- replies -------------------------------------------------------------------------------------------
    def _reply(self, body: dict[str, Any], fmt: str, model: str) -> dict[str, Any]:
        wants_tool = bool(body.get("tools"))
        if fmt == "openai":
            last = body["messages"][-1]
            wants_tool = wants_tool and last.get("role") != "tool"
        elif fmt == "anthropic":
            last_c = body["messages"][-1]["content"]
            wants_tool = wants_tool and not (
                isinstance(last_c, list) and last_c[-1].get("type") == "tool_result"
            )
        elif fmt == "gemini":
            wants_tool = wants_tool and "functionResponse" not in body["contents"][-1]["parts"][-1]
        if wants_tool:
            return {"tool": ("get_weather", {"city": "Paris"})}
        return {"text": f"Hello from {model}"}

    def _full_openai(self, model: str, reply: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.get("text")}
        if "tool" in reply:
            name, args = reply["tool"]
            msg["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            ]
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": f"{model}-2025-01-01",
            "choices": [
                {"index": 0, "message": msg, "finish_reason": "tool_calls" if "tool" in reply else "stop"}
            ],
            "usage": {
                "prompt_tokens": USAGE["input"],
                "completion_tokens": USAGE["output"],
                "prompt_tokens_details": {"cached_tokens": USAGE["cached"]},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        }

    def _full_anthropic(self, model: str, reply: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if "tool" in reply:
            name, args = reply["tool"]
            content.append({"type": "tool_use", "id": "toolu_1", "name": name, "input": args})
        else:
            content.append({"type": "text", "text": reply["text"]})
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if "tool" in reply else "end_turn",
            "usage": {
                "input_tokens": USAGE["input"] - USAGE["cached"],
                "cache_read_input_tokens": USAGE["cached"],
                "cache_creation_input_tokens": 0,
                "output_tokens": USAGE["output"],
            },
        }

    def _full_gemini(self, model: str, reply: dict[str, Any]) -> dict[str, Any]:
        if "tool" in reply:
            name, args = reply["tool"]
            parts: list[dict[str, Any]] = [{"functionCall": {"name": name, "args": args}}]
        else:
            parts = [{"text": reply["text"]}]
        return {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": USAGE["input"],
                "candidatesTokenCount": USAGE["output"] - 3,
                "thoughtsTokenCount": 3,
                "cachedContentTokenCount": USAGE["cached"],
            },
            "modelVersion": f"{model}-001",
        }

    def _stream_openai(
        self, model: str, reply: dict[str, Any], body: dict[str, Any], cut: bool, chunked: bool
    ) -> None:
        self._start_stream(chunked)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": f"{model}-2025-01-01"}
        if "tool" in reply:
            name, args = reply["tool"]
            a = json.dumps(args)
            self._event(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "call_1",
                                        "type": "function",
                                        "function": {"name": name, "arguments": a[:5]},
                                    }
                                ]
                            },
                        }
                    ],
                }
            )
            self._event(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": a[5:]}}]},
                        }
                    ],
                }
            )
            finish = "tool_calls"
        else:
            text = reply["text"]
            self._event(
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text[:5]}}]}
            )
            if cut:
                return self._drop() if chunked else self._end_stream()
            self._event({**base, "choices": [{"index": 0, "delta": {"content": text[5:]}}]})
            finish = "stop"
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": USAGE["input"], "completion_tokens": USAGE["output"]},
                }
            )
        self._event("[DONE]")
        self._end_stream()

    def _stream_anthropic(
        self, model: str, reply: dict[str, Any], body: dict[str, Any], cut: bool, chunked: bool
    ) -> None:
        self._start_stream(chunked)
        self._event(
            {
                "type": "message_start",
                "message": {
                    "model": model,
                    "usage": {
                        "input_tokens": USAGE["input"] - USAGE["cached"],
                        "cache_read_input_tokens": USAGE["cached"],
                        "output_tokens": 1,
                    },
                },
            },
            "message_start",
        )
        self._event({"type": "ping"}, "ping")
        if "tool" in reply:
            name, args = reply["tool"]
            a = json.dumps(args)
            self._event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}},
                },
                "content_block_start",
            )
            for piece in (a[:5], a[5:]):
                self._event(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                    "content_block_delta",
                )
            stop = "tool_use"
        else:
            text = reply["text"]
            self._event(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
            self._event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text[:5]},
                },
                "content_block_delta",
            )
            if cut:
                return self._drop() if chunked else self._end_stream()
            self._event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text[5:]},
                },
                "content_block_delta",
            )
            stop = "end_turn"
        self._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self._event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop},
                "usage": {"output_tokens": USAGE["output"]},
            },
            "message_delta",
        )
        self._event({"type": "message_stop"}, "message_stop")
        self._end_stream()

    def _stream_gemini(
        self, model: str, reply: dict[str, Any], body: dict[str, Any], cut: bool, chunked: bool
    ) -> None:
        self._start_stream(chunked)
        meta = {
            "promptTokenCount": USAGE["input"],
            "candidatesTokenCount": USAGE["output"],
            "cachedContentTokenCount": USAGE["cached"],
        }
        if "tool" in reply:
            name, args = reply["tool"]
            self._event(
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [{"functionCall": {"name": name, "args": args}}],
                            },
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": meta,
                    "modelVersion": f"{model}-001",
                }
            )
        else:
            text = reply["text"]
            self._event(
                {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text[:5]}]}}],
                    "modelVersion": f"{model}-001",
                }
            )
            if cut:
                return self._drop() if chunked else self._end_stream()
            self._event(
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": text[5:]}]}, "finishReason": "STOP"}
                    ],
                    "usageMetadata": meta,
                    "modelVersion": f"{model}-001",
                }
            )
        self._end_stream()


class FakeClock:
    """Epoch seconds that move only when a test says so: `ProviderClient(clock=c, sleep=c.sleep)` makes
    cooldowns, rate-limit windows, key set-asides and Retry-After waits pass without real sleeping."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start
        self.slept: list[float] = []  # every wait the code under test asked for, in order

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def llm():
    """The local model server, one per test."""
    with FakeLLM() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
