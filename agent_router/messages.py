"""Chat messages as the router takes them: OpenAI chat shape, validated with errors that say where."""

from __future__ import annotations

import json
import re
from typing import Any

from . import json_input
from .errors import InputError
from .json_input import decode

__all__ = ["ROLES", "MAX_INPUT_CHARS", "MAX_INPUT_BYTES", "decode", "from_json_text", "validate"]

ROLES = ("system", "user", "assistant", "tool", "developer", "function")
# About 5M tokens of text: beyond any model's window, and a guard against runaway input.
MAX_INPUT_CHARS = 20_000_000
MAX_INPUT_BYTES = 4 * MAX_INPUT_CHARS  # read bound for stdin and each JSONL row (UTF-8: up to 4 bytes a char)
# Text features (the analyzer's patterns, the learned router's features) read at most this much of one
# message: its start and its end. Their counts saturate long before, and the time per request stays bounded
# however long the message is.
SCAN_HEAD_CHARS = 24_000
SCAN_TAIL_CHARS = 8_000


def from_json_text(text: str, where: str = "input") -> list[dict[str, Any]]:
    """Parse a JSON list of messages (or {"messages": [...]}) and validate it. Invalid JSON, nesting deeper than
    json_input.MAX_DEPTH and lone surrogates are InputErrors naming `where` and the JSON path."""
    data = json_input.loads(text, where)
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    return validate(data, where)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(s: str) -> str:
    """`s` with lone UTF-16 surrogates (valid JSON escapes such as "\\ud800", which a string cut between the two
    halves of an emoji leaves) replaced by U+FFFD, a split pair joined; `s` itself when it has none."""
    if s.isascii() or not _SURROGATE.search(s):
        return s
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_strings(data: Any) -> Any:
    """`data` (parsed JSON) with `clean_text` applied to every string and key, for a body that is forwarded as
    it came (a lone surrogate cannot be encoded as UTF-8 on the way out). Nesting is bounded by the parser."""
    if isinstance(data, str):
        return clean_text(data)
    if isinstance(data, list):
        return [clean_strings(v) for v in data]
    if isinstance(data, dict):
        return {clean_text(k): clean_strings(v) for k, v in data.items()}
    return data


def _clean_content(c: Any) -> Any:
    if isinstance(c, str):
        return clean_text(c)
    if isinstance(c, list):
        out = [{**p, "text": clean_text(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
               for p in c]
        return out if any(a is not b for a, b in zip(out, c, strict=True)) else c
    return c


_CONTENT_TYPES = (str, list)  # a tuple: `str | list` would build a union object on every message


def validate(messages: Any, where: str = "messages") -> list[dict[str, Any]]:
    """Check shape, roles and size; return the list, or a copy whose texts have lone surrogates replaced
    (`clean_text`): the analysis, token counts and ledger then never meet a string UTF-8 cannot encode."""
    if not isinstance(messages, list):
        raise InputError(f"{where}: expected a list of messages, got {type(messages).__name__}")
    if not messages:
        raise InputError(f"{where}: is empty; give at least one message with role 'user'")
    total = 0
    said = False  # a message with text or an image seen
    cleaned: list[dict[str, Any]] | None = None  # a copy, begun at the first message whose text changes
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InputError(f"{where}[{i}]: expected an object with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise InputError(f"{where}[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        c = m.get("content")
        if c is None and not m.get("tool_calls"):
            raise InputError(f"{where}[{i}].content: missing")
        if c is not None and not isinstance(c, _CONTENT_TYPES):
            raise InputError(f"{where}[{i}].content: expected a string or a list of parts, got {type(c).__name__}")
        total += len(c) if isinstance(c, str) else _json_len(c, f"{where}[{i}].content") if c else 0
        if total > MAX_INPUT_CHARS:
            raise InputError(
                f"{where}: larger than {MAX_INPUT_CHARS:,} characters at message {i}; "
                "no model's context window holds that much; compress or split it"
            )
        if not said:
            text = c if isinstance(c, str) else content_text(c)
            said = (bool(text) and not text.isspace()) or has_image(m)  # as text.strip(), without a copy
        new = _clean_content(c)
        if new is not c:
            if cleaned is None:
                cleaned = messages[:i]
            cleaned.append({**m, "content": new})
        elif cleaned is not None:
            cleaned.append(m)
    if not said:
        raise InputError(f"{where}: every message is empty; nothing to route")
    return messages if cleaned is None else cleaned


def _json_len(c: Any, where: str) -> int:
    try:
        return len(json.dumps(c, default=str))
    except (RecursionError, ValueError):  # nested too deep, or a circular reference from the Python API
        raise InputError(f"{where}: nested too deeply (or circular) to be message content") from None


def content_text(c: Any) -> str:
    """The text of a message's content: the string itself, or its text parts joined by newlines."""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and "text" in p)
    return ""


def text_of(m: dict[str, Any]) -> str:
    """The text of a message (text parts joined)."""
    return content_text(m.get("content"))


def scan_window(text: str) -> str:
    """`text` itself, or for a very long text its first SCAN_HEAD_CHARS and last SCAN_TAIL_CHARS characters."""
    if len(text) <= SCAN_HEAD_CHARS + SCAN_TAIL_CHARS:
        return text
    return text[:SCAN_HEAD_CHARS] + "\n" + text[-SCAN_TAIL_CHARS:]


def has_image(m: dict[str, Any]) -> bool:
    c = m.get("content")
    return isinstance(c, list) and any(
        isinstance(p, dict) and p.get("type") in ("image_url", "image", "input_image") for p in c
    )


def last_user_index(messages: list[dict[str, Any]]) -> int:
    """Index of the newest user message, or the last message when there is none."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return len(messages) - 1


def tool_call_arguments(tc: dict[str, Any]) -> dict[str, Any]:
    """The decoded arguments of an OpenAI tool call; text that is not JSON is kept under "_raw"."""
    raw = (tc.get("function") or {}).get("arguments")
    try:
        return json.loads(raw or "{}")
    except ValueError:
        return {"_raw": raw}


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a data: URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    return head[5:].split(";")[0] or "image/png", data
