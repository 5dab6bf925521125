"""The OpenAI chat-completions dialect on the gateway's side: a client's request body -> what the provider
client takes; a `Completion` or stream deltas -> OpenAI's response body and chunks."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ..providers import types as t
from .errors import BadRequest

# Sampling parameters passed through as they are to OpenAI-compatible upstreams (other wire formats drop them).
PASSTHROUGH = (
    "top_p", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "parallel_tool_calls",
    "reasoning_effort", "logprobs", "top_logprobs", "service_tier", "prediction", "modalities",
)
_PASSTHROUGH_SET = frozenset(PASSTHROUGH)


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: a non-empty list of messages is required", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}]: an object with a string 'role' is required", param=f"messages[{i}]")
    return msgs


def options(body: dict[str, Any], openai_upstream: bool) -> dict[str, Any]:
    """Request options for ProviderClient (types.Request fields but messages)."""
    opts: dict[str, Any] = {}
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is not None:
        if not isinstance(mt, int) or isinstance(mt, bool) or mt <= 0:
            raise BadRequest("max_tokens: a positive whole number is required", param="max_tokens")
        opts["max_tokens"] = mt
    if body.get("temperature") is not None:
        opts["temperature"] = body["temperature"]
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            raise BadRequest("tools: a list is required", param="tools")
        opts["tools"] = body["tools"]
        if body.get("tool_choice") is not None:
            opts["tool_choice"] = body["tool_choice"]
    stop = body.get("stop")
    if stop:
        opts["stop"] = [stop] if isinstance(stop, str) else list(stop)
    extra: dict[str, Any] = {}
    rf = body.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_object":
            opts["json_mode"] = True
        elif rf.get("type") == "json_schema" and openai_upstream:
            extra["response_format"] = rf
        elif rf.get("type") == "json_schema":
            opts["json_mode"] = True
    if openai_upstream and not _PASSTHROUGH_SET.isdisjoint(body):  # most bodies have none of them
        extra.update({k: body[k] for k in PASSTHROUGH if body.get(k) is not None})
    if extra:
        opts["extra"] = extra
    return opts


def finish_reason(c: t.Completion) -> str:
    return c.finish_reason if c.finish_reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def usage_body(u: t.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def completion_body(c: t.Completion, model: str, cid: str | None = None) -> dict[str, Any]:
    return {
        "id": cid or f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": c.message(), "finish_reason": finish_reason(c), "logprobs": None}
        ],
        "usage": usage_body(c.usage),
    }


class ChunkWriter:
    """Builds the `data: ...` lines of one streamed answer."""

    def __init__(self, model: str, include_usage: bool):
        self.id = f"chatcmpl-{os.urandom(12).hex()}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.tool_index = 0
        self._head = (
            f'{{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{json.dumps(model)},"choices":'
        )

    def _line(self, choices: str, extra: str = "") -> bytes:
        return f"data: {self._head}{choices}{extra}}}\n\n".encode()

    def first(self) -> bytes:
        return self._line('[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]')

    def delta(self, d: t.Delta) -> bytes:
        if d.tool_call is not None:
            tc = d.tool_call
            delta = {"tool_calls": [{"index": self.tool_index, **tc.to_openai()}]}
            self.tool_index += 1
        else:
            delta = {"content": d.text}
        return self._line(f'[{{"index":0,"delta":{json.dumps(delta)},"finish_reason":null}}]')

    def last(self, c: t.Completion) -> bytes:
        out = self._line(f'[{{"index":0,"delta":{{}},"finish_reason":"{finish_reason(c)}"}}]')
        if self.include_usage:
            out += self._line("[]", f',"usage":{json.dumps(usage_body(c.usage))}')
        return out + b"data: [DONE]\n\n"
