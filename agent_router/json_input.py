"""Reading JSON that a user gave us (settings files, messages on stdin, JSONL rows): bounded in size and nesting,
valid UTF-8, no lone surrogates. Every problem is one `InputError` line naming where (file, line, JSON path)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputError, clip

MAX_DEPTH = 100  # no settings file or message list nests half as deep; Python's parser gives up near 1000
# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): only then can a decoded string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode(raw: bytes, where: str = "input") -> str:
    """Bytes to text; non-UTF-8 input is an InputError naming the byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r})") from None


def read_bounded(stream: BinaryIO, limit: int, where: str) -> bytes:
    """At most `limit` bytes of `stream`; more is an InputError (so /dev/zero or a runaway pipe cannot fill
    memory)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{where}: larger than {limit:,} bytes; refusing to read it")
    return data


def read_file(path: str | Path, limit: int, where: str | None = None) -> bytes:
    """The bytes of file `path`, at most `limit` of them; a missing, unreadable or oversized file (a directory,
    /dev/zero) is an InputError naming it."""
    where = where or str(path)
    try:
        with open(path, "rb") as fh:
            return read_bounded(fh, limit, where)
    except FileNotFoundError:
        raise InputError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{where}: cannot read (permission denied)") from None
    except OSError as e:
        raise InputError(f"{where}: cannot read ({e.strerror or e})") from None


def loads(text: str, where: str = "input", max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON `text`. Invalid JSON, nesting deeper than `max_depth`, numbers too long to convert and strings
    holding a lone surrogate (an unpaired \\ud800-\\udfff escape) are InputErrors naming `where` and the place."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise InputError(f"{where}: invalid JSON: {clip(str(e), 200)}") from None
    check(data, where, max_depth, strings=_SURROGATE_ESCAPE.search(text) is not None)
    return data


def check(data: Any, where: str = "input", max_depth: int = MAX_DEPTH, strings: bool = True) -> None:
    """Raise an InputError naming the JSON path of the first place nested deeper than `max_depth` or (with
    `strings`) of the first string or key that is not encodable text (a lone surrogate). Iterative: any depth."""
    stack: list[tuple[Any, int, Any]] = [(data, 0, None)]  # (value, depth, link to its path)
    while stack:
        value, depth, link = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise InputError(f"{where}: JSON nested deeper than {max_depth} levels at {_path(link)}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if strings and isinstance(k, str) and not _encodable(k):
                    raise InputError(f"{where}: key at {_path((link, k))} holds a lone surrogate (invalid text)")
                stack.append((v, depth + 1, (link, k)))
        elif strings and isinstance(value, str) and not _encodable(value):
            raise InputError(
                f"{where}: string at {_path(link)} holds a lone surrogate (an unpaired \\ud800-\\udfff escape)"
            )


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path(link: Any) -> str:
    parts: list[Any] = []
    while link is not None:
        link, key = link
        parts.append(key)
    out = "$"
    for p in reversed(parts):
        out += f"[{p}]" if isinstance(p, int) else f".{clip(p.encode('utf-8', 'backslashreplace').decode())}"
    return clip(out, 200)
