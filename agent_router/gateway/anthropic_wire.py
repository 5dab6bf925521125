"""The Anthropic Messages dialect on the gateway's side: a client's /v1/messages body -> our internal (OpenAI
chat) messages and options; a `Completion` or stream deltas -> Anthropic's message body and events. The
upstream may speak any wire format: agent_router.providers converts from the internal shape again."""

from __future__ import annotations

import json
import os
from typing import Any

from ..providers import types as t
from .errors import BadRequest

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _text_of(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise BadRequest(f"{where}: a string or a list of blocks is required", param=where)
    return "\n".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def _image(b: dict[str, Any], where: str) -> dict[str, Any]:
    src = b.get("source") or {}
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    elif src.get("type") == "url":
        url = str(src.get("url", ""))
    else:
        raise BadRequest(f"{where}.source: type must be 'base64' or 'url'", param=f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def to_internal(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic `system` + `messages` -> OpenAI chat messages."""
    out: list[dict[str, Any]] = []
    if body.get("system"):
        out.append({"role": "system", "content": _text_of(body["system"], "system")})
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: a non-empty list of messages is required", param="messages")
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: 'user' or 'assistant' is required", param=f"{where}.role")
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content: a string or a list of blocks is required", param=f"{where}.content")
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for j, b in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(b.get("text", ""))})
            elif kind == "image":
                parts.append(_image(b, at))
            elif kind == "tool_use":
                calls.append({
                    "id": str(b.get("id", f"call_{j}")),
                    "type": "function",
                    "function": {"name": str(b.get("name", "")), "arguments": json.dumps(b.get("input") or {})},
                })
            elif kind == "tool_result":
                res = b.get("content", "")
                text = _text_of(res, f"{at}.content") if res else ""
                if b.get("is_error"):
                    text = f"Error: {text}"
                out.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")), "content": text})
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                raise BadRequest(f"{at}.type: {kind!r} is not a supported block type", param=f"{at}.type")
        if not parts and not calls:
            continue
        msg: dict[str, Any] = {"role": m["role"]}
        if all(p["type"] == "text" for p in parts):
            msg["content"] = "\n".join(p["text"] for p in parts) if parts else None
        else:
            msg["content"] = parts
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def options(body: dict[str, Any]) -> dict[str, Any]:
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt <= 0:
        raise BadRequest("max_tokens: a positive whole number is required", param="max_tokens")
    opts: dict[str, Any] = {"max_tokens": mt}
    if body.get("temperature") is not None:
        opts["temperature"] = body["temperature"]
    if body.get("stop_sequences"):
        opts["stop"] = list(body["stop_sequences"])
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadRequest("tools: a list is required", param="tools")
        opts["tools"] = [
            {"type": "function", "function": {"name": tl.get("name", ""), "description": tl.get("description", ""),
                                              "parameters": tl.get("input_schema") or {"type": "object"}}}
            for tl in tools if isinstance(tl, dict)
        ]
        tc = body.get("tool_choice")
        if isinstance(tc, dict):
            kind = tc.get("type")
            if kind == "any":
                opts["tool_choice"] = "required"
            elif kind == "tool":
                opts["tool_choice"] = {"type": "function", "function": {"name": tc.get("name", "")}}
            elif kind in ("auto", "none"):
                opts["tool_choice"] = kind
    return opts


def _usage(u: t.Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }


def _input(args: str) -> Any:
    try:
        return json.loads(args or "{}")
    except ValueError:
        return {"_raw": args}


def message_body(c: t.Completion, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if c.text:
        content.append({"type": "text", "text": c.text})
    for tc in c.tool_calls:
        content.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": _input(tc.arguments)})
    return {
        "id": f"msg_{os.urandom(12).hex()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP.get(c.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": _usage(c.usage),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class EventWriter:
    """Anthropic's stream events for one answer: start, text block deltas, tool_use blocks, stop."""

    def __init__(self, model: str):
        self.model = model
        self.index = 0
        self.text_open = False

    def first(self) -> bytes:
        msg = {"id": f"msg_{os.urandom(12).hex()}", "type": "message", "role": "assistant", "model": self.model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 0, "output_tokens": 0}}
        return _event("message_start", {"type": "message_start", "message": msg})

    def delta(self, d: t.Delta) -> bytes:
        out = b""
        if d.tool_call is not None:
            if self.text_open:
                out += _event("content_block_stop", {"type": "content_block_stop", "index": self.index})
                self.index += 1
                self.text_open = False
            tc = d.tool_call
            out += _event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                  "content_block": {"type": "tool_use", "id": tc.id,
                                                                    "name": tc.name, "input": {}}})
            out += _event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                  "delta": {"type": "input_json_delta",
                                                            "partial_json": tc.arguments or "{}"}})
            out += _event("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.index += 1
            return out
        if not self.text_open:
            out += _event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                  "content_block": {"type": "text", "text": ""}})
            self.text_open = True
        return out + _event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                    "delta": {"type": "text_delta", "text": d.text}})

    def last(self, c: t.Completion) -> bytes:
        out = b""
        if self.text_open:
            out += _event("content_block_stop", {"type": "content_block_stop", "index": self.index})
        out += _event("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": _STOP.get(c.finish_reason, "end_turn"),
                                                  "stop_sequence": None},
                                        "usage": _usage(c.usage)})
        return out + _event("message_stop", {"type": "message_stop"})
