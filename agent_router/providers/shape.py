"""Reading a decoded provider payload with its shape checked: each accessor returns the value with the type the
wire format promises, or raises ShapeError naming the JSON path and what was there. The client turns a
ShapeError into a `malformed` provider error (a bad response: retried, then failed over), so a 2xx body of the
wrong shape never surfaces as an AttributeError or TypeError.

Absent and null values read as empty (servers leave optional fields out or send null); a present value of
another type is an error. Values are never quoted back: only their JSON type is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import usage
from ..usage import Usage, UsageError, json_type
from . import types as t


class ShapeError(ValueError):
    """A payload value of the wrong type, at `path`."""

    def __init__(self, path: str, expected: str, got: Any):
        self.path = path
        super().__init__(f"{path}: expected {expected}, got {json_type(got)}")

    @classmethod
    def of(cls, e: UsageError) -> ShapeError:
        """The usage parsers' error (same message form) as a ShapeError: the client's `malformed`."""
        err = cls.__new__(cls)
        ValueError.__init__(err, str(e))
        err.path = e.path or ""
        return err


def obj(v: Any, path: str, *, required: bool = False) -> dict[str, Any]:
    """An object; absent/null -> {} unless `required`."""
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise ShapeError(path, "an object", v)
    return v


def arr(v: Any, path: str) -> list[Any]:
    """An array; absent/null -> []."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise ShapeError(path, "an array", v)
    return v


def objs(v: Any, path: str) -> list[dict[str, Any]]:
    """An array of objects (a null element is an error too); absent/null -> []."""
    out = arr(v, path)
    for i, x in enumerate(out):
        if not isinstance(x, dict):
            raise ShapeError(f"{path}[{i}]", "an object", x)
    return out


def text(v: Any, path: str) -> str:
    """A string; absent/null -> ''."""
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ShapeError(path, "a string", v)
    return v


def count(v: Any, path: str) -> int:
    """A token count or index: a non-negative whole number (12 or 12.0); absent/null -> 0."""
    try:
        return usage.count(v, path)
    except UsageError as e:
        raise ShapeError.of(e) from None


def usage_of(parse: Callable[[Any, str], Usage], v: Any, path: str) -> Usage | None:
    """A usage object read by one of agent_router.usage's parsers (`from_openai`...); absent/null/{} -> None."""
    u = obj(v, path)
    if not u:
        return None
    try:
        return parse(u, path)
    except UsageError as e:
        raise ShapeError.of(e) from None


def stream_chunk(data: str, model: str, partial: list[str]) -> dict[str, Any]:
    """One JSON chunk of an OpenAI or Gemini event stream, as an object. An undecodable chunk, or one that
    reports an error, breaks the stream (StreamBroken keeps the text received so far, `partial`)."""
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):
        raise t.StreamBroken(f"undecodable stream chunk {data[:80]!r}", model=model, partial="".join(partial)) from None
    chunk = obj(chunk, "chunk", required=True)
    if chunk.get("error"):
        raise t.StreamBroken(
            f"server error mid-stream: {str(chunk['error'])[:300]}", model=model, partial="".join(partial)
        )
    return chunk
