"""Anthropic Messages API: convert OpenAI-shaped messages, parse content blocks and the event stream."""

from __future__ import annotations

import json
from typing import Any

from ..messages import content_text, data_url, tool_call_arguments
from ..usage import StreamUsage, Usage, from_anthropic
from . import shape as sh
from . import turns
from . import types as t

DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"
# Tool-use blocks one stream may open: a bound on memory against a hostile stream.
MAX_STREAM_BLOCKS = 1024
JSON_INSTRUCTION = "Respond with a single JSON object and nothing else."
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}


def path(model: str, stream: bool) -> str:
    return "/messages"


def auth_headers(key: str | None) -> dict[str, str]:
    h = {"anthropic-version": API_VERSION}
    if key:
        h["x-api-key"] = key
    return h


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            out.append({"type": "text", "text": p.get("text", "")})
        elif kind == "image_url":
            iu = p.get("image_url")
            out.append(_image(iu.get("url", "") if isinstance(iu, dict) else str(iu)))
        elif kind in ("image", "tool_use", "tool_result", "document"):  # already Anthropic-shaped
            out.append(p)
    return out


def _tool_use(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    return {"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"), "input": tool_call_arguments(tc)}


def _tool_result(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": m.get("tool_call_id") or m.get("name"),
        "content": content_text(m.get("content")),
    }


def convert(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages -> (system text, Anthropic messages with strictly alternating roles)."""
    return turns.convert(
        messages, field="content", assistant="assistant", items=_blocks, tool_call=_tool_use, tool_result=_tool_result
    )


def _tool_choice(tc: Any) -> dict[str, Any] | None:
    if tc is None:
        return None
    if tc == "auto":
        return {"type": "auto"}
    if tc == "required":
        return {"type": "any"}
    if tc == "none":
        return {"type": "none"}
    if isinstance(tc, dict) and tc.get("type") == "function":
        return {"type": "tool", "name": tc["function"]["name"]}
    return tc


def build(req: t.Request, model: str, provider: str, stream: bool, stream_usage: bool) -> dict[str, Any]:
    system, msgs = convert(req.messages)
    if req.json_mode:  # Anthropic has no JSON mode; ask in the system prompt
        system = f"{system}\n\n{JSON_INSTRUCTION}" if system else JSON_INSTRUCTION
    body: dict[str, Any] = {"model": model, "messages": msgs, "max_tokens": req.max_tokens or 4096}
    if system:
        body["system"] = system
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.tools:
        body["tools"] = [
            {
                "name": f["function"]["name"],
                "description": f["function"].get("description", ""),
                "input_schema": f["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for f in req.tools
        ]
        choice = _tool_choice(req.tool_choice)
        if choice:
            body["tool_choice"] = choice
    if req.stop:
        body["stop_sequences"] = req.stop
    if stream:
        body["stream"] = True
    body.update(req.extra)
    return body


def _usage(v: Any, path: str = "usage") -> Usage | None:
    return sh.usage_of(from_anthropic, v, path)


def _finish(v: Any, path: str) -> str | None:
    reason = sh.text(v, path)
    return _FINISH.get(reason, "other") if reason else None


def parse(data: Any, model: str) -> t.Completion:
    """A Messages API body -> Completion; raises ProviderError, or ShapeError for a value of the wrong type."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise t.ProviderError(t.MALFORMED, "response has no content blocks", model=model)
    text, calls = [], []
    for i, b in enumerate(sh.objs(data["content"], "content")):
        kind = sh.text(b.get("type"), f"content[{i}].type")
        if kind == "text":
            text.append(sh.text(b.get("text"), f"content[{i}].text"))
        elif kind == "tool_use":
            calls.append(
                t.ToolCall(
                    id=sh.text(b.get("id"), f"content[{i}].id"),
                    name=sh.text(b.get("name"), f"content[{i}].name"),
                    arguments=json.dumps(b.get("input") or {}),
                )
            )
    stop = sh.text(data.get("stop_reason"), "stop_reason")
    if stop == "refusal" and not "".join(text) and not calls:
        raise t.ProviderError(t.CONTENT_POLICY, "the model refused (stop_reason refusal)", model=model)
    return t.Completion(
        text="".join(text),
        tool_calls=calls,
        finish_reason=_finish(stop, "stop_reason") or "other",
        usage=_usage(data.get("usage")) or Usage(source="estimated"),
        model=sh.text(data.get("model"), "model") or model,
        raw=data,
    )


class StreamParser:
    def __init__(self, model: str):
        self.model = model
        self.resolved = model
        self.text: list[str] = []
        self.blocks: dict[int, dict[str, str]] = {}
        self.usage = StreamUsage("anthropic")
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, event: str, data: str) -> list[t.Delta]:
        try:
            ev = json.loads(data)
        except (ValueError, RecursionError):
            raise t.StreamBroken(
                f"undecodable stream event {data[:80]!r}", model=self.model, partial="".join(self.text)
            ) from None
        ev = sh.obj(ev, "event", required=True)
        kind = sh.text(ev.get("type"), "event.type") or event
        if kind == "message_start":
            msg = sh.obj(ev.get("message"), "event.message")
            self.resolved = sh.text(msg.get("model"), "event.message.model") or self.resolved
            _usage(msg.get("usage"), "event.message.usage")  # checked here, where the error names the event
            self.usage.feed(ev)
        elif kind == "content_block_start":
            b = sh.obj(ev.get("content_block"), "event.content_block")
            if sh.text(b.get("type"), "event.content_block.type") == "tool_use":
                index = sh.count(ev.get("index"), "event.index")
                if index not in self.blocks and len(self.blocks) >= MAX_STREAM_BLOCKS:
                    raise sh.ShapeError("event.index", f"at most {MAX_STREAM_BLOCKS} tool blocks", index)
                self.blocks[index] = {
                    "id": sh.text(b.get("id"), "event.content_block.id"),
                    "name": sh.text(b.get("name"), "event.content_block.name"),
                    "args": "",
                }
        elif kind == "content_block_delta":
            d = sh.obj(ev.get("delta"), "event.delta")
            dtype = sh.text(d.get("type"), "event.delta.type")
            if dtype == "text_delta":
                piece = sh.text(d.get("text"), "event.delta.text")
                self.text.append(piece)
                return [t.Delta(text=piece)]
            index = sh.count(ev.get("index"), "event.index")
            if dtype == "input_json_delta" and index in self.blocks:
                self.blocks[index]["args"] += sh.text(d.get("partial_json"), "event.delta.partial_json")
        elif kind == "message_delta":
            delta = sh.obj(ev.get("delta"), "event.delta")
            self.finish_reason = _finish(delta.get("stop_reason"), "event.delta.stop_reason") or self.finish_reason
            _usage(ev.get("usage"), "event.usage")
            self.usage.feed(ev)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            err = sh.obj(ev.get("error"), "event.error")
            raise t.StreamBroken(
                f"server error mid-stream: {str(err.get('type'))[:80]}: {str(err.get('message'))[:300]}",
                model=self.model,
                partial="".join(self.text),
            )
        return []

    def finish(self) -> t.Completion:
        if not self.done:
            raise t.StreamBroken(
                "stream ended before message_stop", model=self.model, partial="".join(self.text)
            )
        calls = [
            t.ToolCall(id=b["id"], name=b["name"], arguments=b["args"] or "{}")
            for _, b in sorted(self.blocks.items())
        ]
        return t.Completion(
            text="".join(self.text),
            tool_calls=calls,
            finish_reason=self.finish_reason or "other",
            usage=self.usage.usage() if self.usage.seen else Usage(source="estimated"),
            model=self.resolved,
        )
