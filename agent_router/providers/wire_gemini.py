"""Google Gemini generateContent: convert OpenAI-shaped messages to contents/parts, parse candidates."""

from __future__ import annotations

import json
from typing import Any

from ..messages import content_text, data_url, tool_call_arguments
from ..usage import Usage, from_gemini
from . import shape as sh
from . import turns
from . import types as t

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
# Function calls one answer (or stream) may carry: a bound on memory against a hostile stream.
MAX_CALLS = 1024
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "other",
    "OTHER": "other",
}


def path(model: str, stream: bool) -> str:
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return f"/{name}:streamGenerateContent?alt=sse" if stream else f"/{name}:generateContent"


def auth_headers(key: str | None) -> dict[str, str]:
    # The key goes in a header, never in the URL, so it cannot leak through logged URLs.
    return {"x-goog-api-key": key} if key else {}


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline:
        return {"inline_data": {"mime_type": inline[0], "data": inline[1]}}
    return {"file_data": {"mime_type": "image/*", "file_uri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out = []
    for p in content:
        if p.get("type") == "text":
            out.append({"text": p.get("text", "")})
        elif p.get("type") == "image_url":
            iu = p.get("image_url")
            out.append(_image(iu.get("url", "") if isinstance(iu, dict) else str(iu)))
    return out


def convert(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages -> (system text, Gemini contents)."""
    names: dict[str, str] = {}  # tool_call_id -> function name, for functionResponse

    def call(tc: dict[str, Any]) -> dict[str, Any]:
        fn = tc.get("function") or {}
        names[tc.get("id") or ""] = fn.get("name", "")
        return {"functionCall": {"name": fn.get("name", ""), "args": tool_call_arguments(tc)}}

    def result(m: dict[str, Any]) -> dict[str, Any]:
        text = content_text(m.get("content"))
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        name = names.get(m.get("tool_call_id") or "", m.get("name") or "")
        return {"functionResponse": {"name": name, "response": value if isinstance(value, dict) else {"content": text}}}

    return turns.convert(messages, field="parts", assistant="model", items=_parts, tool_call=call, tool_result=result)


def build(req: t.Request, model: str, provider: str, stream: bool, stream_usage: bool) -> dict[str, Any]:
    system, contents = convert(req.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    gen: dict[str, Any] = {}
    if req.max_tokens is not None:
        gen["maxOutputTokens"] = req.max_tokens
    if req.temperature is not None:
        gen["temperature"] = req.temperature
    if req.json_mode:
        gen["responseMimeType"] = "application/json"
    if req.stop:
        gen["stopSequences"] = req.stop
    if gen:
        body["generationConfig"] = gen
    if req.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        k: v
                        for k, v in (
                            ("name", f["function"]["name"]),
                            ("description", f["function"].get("description")),
                            ("parameters", f["function"].get("parameters")),
                        )
                        if v
                    }
                    for f in req.tools
                ]
            }
        ]
        tc = req.tool_choice
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(tc) if isinstance(tc, str) else None
        if isinstance(tc, dict) and tc.get("type") == "function":
            body["toolConfig"] = {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [tc["function"]["name"]]}
            }
        elif mode:
            body["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    body.update(req.extra)
    return body


def _usage(v: Any) -> Usage | None:
    return sh.usage_of(from_gemini, v, "usageMetadata")


def _blocked(data: dict[str, Any], model: str) -> None:
    feedback = sh.obj(data.get("promptFeedback"), "promptFeedback")
    reason = sh.text(feedback.get("blockReason"), "promptFeedback.blockReason")
    if reason:
        raise t.ProviderError(t.CONTENT_POLICY, f"prompt blocked: {reason[:80]}", model=model)


class _Acc:
    """Accumulates candidates' parts (one response or many stream chunks)."""

    def __init__(self, model: str):
        self.model = model
        self.resolved = model
        self.text: list[str] = []
        self.calls: list[t.ToolCall] = []
        self.finish: str | None = None
        self.usage: Usage | None = None

    def add(self, data: Any) -> list[t.Delta]:
        data = sh.obj(data, "response")
        _blocked(data, self.model)
        self.resolved = sh.text(data.get("modelVersion"), "modelVersion") or self.resolved
        self.usage = _usage(data.get("usageMetadata")) or self.usage
        out = []
        cands = sh.objs(data.get("candidates"), "candidates")
        if cands:
            c = cands[0]
            content = sh.obj(c.get("content"), "candidates[0].content")
            for i, p in enumerate(sh.objs(content.get("parts"), "candidates[0].content.parts")):
                where = f"candidates[0].content.parts[{i}]"
                if p.get("thought"):
                    continue
                if "text" in p:
                    piece = sh.text(p["text"], f"{where}.text")
                    self.text.append(piece)
                    out.append(t.Delta(text=piece))
                elif "functionCall" in p:
                    fc = sh.obj(p["functionCall"], f"{where}.functionCall")
                    if len(self.calls) >= MAX_CALLS:
                        raise sh.ShapeError(f"{where}.functionCall", f"at most {MAX_CALLS} function calls", fc)
                    self.calls.append(
                        t.ToolCall(
                            id=sh.text(fc.get("id"), f"{where}.functionCall.id") or f"call_{len(self.calls)}",
                            name=sh.text(fc.get("name"), f"{where}.functionCall.name"),
                            arguments=json.dumps(fc.get("args") or {}),
                        )
                    )
            reason = sh.text(c.get("finishReason"), "candidates[0].finishReason")
            if reason:
                self.finish = _FINISH.get(reason, "other")
        return out

    def completion(self, raw: Any = None) -> t.Completion:
        finish = self.finish or "other"
        if self.calls and finish == "stop":
            finish = "tool_calls"
        return t.Completion(
            text="".join(self.text),
            tool_calls=self.calls,
            finish_reason=finish,
            usage=self.usage or Usage(source="estimated"),
            model=self.resolved,
            raw=raw,
        )


def parse(data: Any, model: str) -> t.Completion:
    if not isinstance(data, dict) or ("candidates" not in data and "promptFeedback" not in data):
        raise t.ProviderError(t.MALFORMED, "response has no candidates", model=model)
    acc = _Acc(model)
    acc.add(data)
    if acc.finish == "content_filter" and not acc.text and not acc.calls:
        raise t.ProviderError(t.CONTENT_POLICY, "response blocked by safety filters", model=model)
    return acc.completion(data)


class StreamParser:
    """Gemini streams have no end marker: a stream is whole when a chunk carried a finishReason."""

    def __init__(self, model: str):
        self.acc = _Acc(model)
        self.model = model

    def feed(self, event: str, data: str) -> list[t.Delta]:
        chunk = sh.stream_chunk(data, self.model, self.acc.text)
        return self.acc.add(chunk)

    def finish(self) -> t.Completion:
        if self.acc.finish is None:
            raise t.StreamBroken(
                "stream ended without a finishReason", model=self.model, partial="".join(self.acc.text)
            )
        return self.acc.completion()
