"""OpenAI-compatible chat completions (OpenAI, OpenRouter, Together, Groq, DeepSeek, Mistral, Ollama, ...).

Our internal message shape is OpenAI's, so requests pass through; the work is in normalizing responses,
assembling streamed tool calls and noticing a stream that ends before `data: [DONE]`.
"""

from __future__ import annotations

from typing import Any

from ..usage import Usage, from_openai
from . import shape as sh
from . import types as t

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "xai": "https://api.x.ai/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "vllm": "http://127.0.0.1:8000/v1",
}
# Local servers that need no key.
KEYLESS = frozenset({"ollama", "lmstudio", "vllm", "openai_compatible"})
# Distinct tool-call indexes one stream may open: a bound on memory against a hostile stream.
MAX_STREAM_TOOL_CALLS = 1024

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "eos": "stop",
    "end_turn": "stop",
}


def path(model: str, stream: bool) -> str:
    return "/chat/completions"


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def build(req: t.Request, model: str, provider: str, stream: bool, stream_usage: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": req.messages}
    if req.max_tokens is not None:
        # OpenAI's own reasoning models refuse max_tokens; every other server knows only max_tokens.
        body["max_completion_tokens" if provider == "openai" else "max_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.tools:
        body["tools"] = req.tools
        if req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
    if req.json_mode:
        body["response_format"] = {"type": "json_object"}
    if req.stop:
        body["stop"] = req.stop
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(req.extra)
    return body


def _usage(v: Any, path: str = "usage") -> Usage | None:
    return sh.usage_of(from_openai, v, path)


def _text(content: Any, path: str) -> str:
    if isinstance(content, list):  # some servers return parts
        return "".join(sh.text(p.get("text"), f"{path}[{i}].text") for i, p in enumerate(sh.objs(content, path)))
    return sh.text(content, path)


def _finish(v: Any, path: str) -> str | None:
    reason = sh.text(v, path)
    return _FINISH.get(reason, "other") if reason else None


def parse(data: Any, model: str) -> t.Completion:
    """A chat.completion body -> Completion; raises ProviderError, or ShapeError for a value of the wrong type."""
    if not isinstance(data, dict):
        raise t.ProviderError(t.MALFORMED, "response is not a JSON object", model=model)
    if data.get("error"):
        raise t.ProviderError(t.SERVER, f"error in a 200 response: {str(data['error'])[:300]}", model=model)
    choices = sh.objs(data.get("choices"), "choices")
    if not choices:
        raise t.ProviderError(t.MALFORMED, "response has no choices", model=model)
    msg = sh.obj(choices[0].get("message"), "choices[0].message")
    calls = []
    for i, c in enumerate(sh.objs(msg.get("tool_calls"), "choices[0].message.tool_calls")):
        where = f"choices[0].message.tool_calls[{i}]"
        fn = sh.obj(c.get("function"), f"{where}.function")
        calls.append(
            t.ToolCall(
                id=sh.text(c.get("id"), f"{where}.id") or f"call_{i}",
                name=sh.text(fn.get("name"), f"{where}.function.name"),
                arguments=sh.text(fn.get("arguments"), f"{where}.function.arguments") or "{}",
            )
        )
    text = _text(msg.get("content"), "choices[0].message.content")
    finish = _finish(choices[0].get("finish_reason"), "choices[0].finish_reason") or "other"
    if calls and finish == "stop":
        finish = "tool_calls"
    if finish == "content_filter" and not text and not calls:
        raise t.ProviderError(t.CONTENT_POLICY, "response withheld by the content filter", model=model)
    usage = _usage(data.get("usage"))
    return t.Completion(
        text=text,
        tool_calls=calls,
        finish_reason=finish,
        usage=usage or Usage(source="estimated"),
        model=sh.text(data.get("model"), "model") or model,
        raw=data,
    )


class StreamParser:
    """Feeds SSE `data:` payloads; `finish()` gives the Completion or raises StreamBroken."""

    def __init__(self, model: str):
        self.model = model
        self.resolved = model
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.done = False

    def feed(self, event: str, data: str) -> list[t.Delta]:
        if data.strip() == "[DONE]":
            self.done = True
            return []
        chunk = sh.stream_chunk(data, self.model, self.text)
        self.resolved = sh.text(chunk.get("model"), "chunk.model") or self.resolved
        self.usage = _usage(chunk.get("usage"), "chunk.usage") or self.usage
        out = []
        for i, ch in enumerate(sh.objs(chunk.get("choices"), "chunk.choices")):
            where = f"chunk.choices[{i}]"
            delta = sh.obj(ch.get("delta"), f"{where}.delta")
            piece = _text(delta.get("content"), f"{where}.delta.content")
            if piece:
                self.text.append(piece)
                out.append(t.Delta(text=piece))
            for j, tc in enumerate(sh.objs(delta.get("tool_calls"), f"{where}.delta.tool_calls")):
                at = f"{where}.delta.tool_calls[{j}]"
                index = sh.count(tc["index"], f"{at}.index") if "index" in tc else len(self.calls)
                fn = sh.obj(tc.get("function"), f"{at}.function")
                pieces = (sh.text(tc.get("id"), f"{at}.id"), sh.text(fn.get("name"), f"{at}.function.name"))
                args = sh.text(fn.get("arguments"), f"{at}.function.arguments")
                if index not in self.calls and len(self.calls) >= MAX_STREAM_TOOL_CALLS:
                    raise sh.ShapeError(f"{at}.index", f"at most {MAX_STREAM_TOOL_CALLS} tool calls", index)
                slot = self.calls.setdefault(index, {"id": "", "name": "", "args": ""})
                slot["id"] = pieces[0] or slot["id"]
                slot["name"] += pieces[1]
                slot["args"] += args
            self.finish_reason = _finish(ch.get("finish_reason"), f"{where}.finish_reason") or self.finish_reason
        return out

    def finish(self) -> t.Completion:
        if not self.done:
            raise t.StreamBroken("stream ended before [DONE]", model=self.model, partial="".join(self.text))
        calls = [
            t.ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["args"] or "{}")
            for i, c in sorted(self.calls.items())
        ]
        finish = self.finish_reason or "other"
        if calls and finish == "stop":
            finish = "tool_calls"
        return t.Completion(
            text="".join(self.text),
            tool_calls=calls,
            finish_reason=finish,
            usage=self.usage or Usage(source="estimated"),
            model=self.resolved,
        )
