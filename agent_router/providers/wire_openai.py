"""OpenAI-compatible chat completions (OpenAI, OpenRouter, Together, Groq, DeepSeek, Mistral, Ollama, ...).

Our internal message shape is OpenAI's, so requests pass through; the work is in normalizing responses,
assembling streamed tool calls and noticing a stream that ends before `data: [DONE]`.
"""

from __future__ import annotations

import json
from typing import Any

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


def _usage(u: dict[str, Any] | None) -> t.Usage | None:
    if not u:
        return None
    pd = u.get("prompt_tokens_details") or {}
    cd = u.get("completion_tokens_details") or {}
    return t.Usage(
        input_tokens=int(u.get("prompt_tokens") or 0),
        output_tokens=int(u.get("completion_tokens") or 0),
        cached_input_tokens=int(pd.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0),
        cache_write_tokens=0,
        reasoning_tokens=int(cd.get("reasoning_tokens") or 0),
    )


def _text(content: Any) -> str:
    if isinstance(content, list):  # some servers return parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def parse(data: Any, model: str) -> t.Completion:
    if not isinstance(data, dict):
        raise t.ProviderError(t.MALFORMED, "response is not a JSON object", model=model)
    if data.get("error"):
        raise t.ProviderError(t.SERVER, f"error in a 200 response: {str(data['error'])[:300]}", model=model)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise t.ProviderError(t.MALFORMED, "response has no choices", model=model)
    msg = choices[0].get("message") or {}
    calls = [
        t.ToolCall(
            id=c.get("id") or f"call_{i}",
            name=(c.get("function") or {}).get("name", ""),
            arguments=(c.get("function") or {}).get("arguments") or "{}",
        )
        for i, c in enumerate(msg.get("tool_calls") or [])
    ]
    finish = _FINISH.get(choices[0].get("finish_reason") or "", "other")
    if calls and finish == "stop":
        finish = "tool_calls"
    if finish == "content_filter" and not msg.get("content") and not calls:
        raise t.ProviderError(t.CONTENT_POLICY, "response withheld by the content filter", model=model)
    usage = _usage(data.get("usage"))
    return t.Completion(
        text=_text(msg.get("content")),
        tool_calls=calls,
        finish_reason=finish,
        usage=usage or t.Usage(source="estimated"),
        model=data.get("model") or model,
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
        self.usage: t.Usage | None = None
        self.done = False

    def feed(self, event: str, data: str) -> list[t.Delta]:
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise t.StreamBroken(
                f"undecodable stream chunk {data[:80]!r}", model=self.model, partial="".join(self.text)
            ) from None
        if chunk.get("error"):
            raise t.StreamBroken(
                f"server error mid-stream: {str(chunk['error'])[:300]}",
                model=self.model,
                partial="".join(self.text),
            )
        self.resolved = chunk.get("model") or self.resolved
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        out = []
        for ch in chunk.get("choices") or []:
            delta = ch.get("delta") or {}
            piece = _text(delta.get("content"))
            if piece:
                self.text.append(piece)
                out.append(t.Delta(text=piece))
            for tc in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(
                    int(tc.get("index", len(self.calls))), {"id": "", "name": "", "args": ""}
                )
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
            if ch.get("finish_reason"):
                self.finish_reason = _FINISH.get(ch["finish_reason"], "other")
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
            usage=self.usage or t.Usage(source="estimated"),
            model=self.resolved,
        )
