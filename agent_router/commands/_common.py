"""Helpers shared by the built-in commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .. import json_input
from .. import messages as msgs
from ..errors import InputError
from ..json_input import read_bounded
from ..plugins import load_plugins
from ..router import Router
from ..settings import Settings, load

settings_option = click.option(
    "--settings",
    "settings_path",
    type=click.Path(),  # a directory, a device or an unreadable file is reported by settings.load in one line
    default=None,
    help="Settings JSON file (default: $AGENT_ROUTER_SETTINGS, then ~/.agent-router/settings.json, "
    "then built-in defaults).",
)


def get_settings(path: str | None) -> Settings:
    return load(path)


def get_router(path: str | None) -> Router:
    return Router(load(path), pm=load_plugins())


def read_stdin_messages() -> list[dict[str, Any]]:
    raw = read_bounded(sys.stdin.buffer, msgs.MAX_INPUT_BYTES, "stdin")
    return msgs.from_json_text(msgs.decode(raw, "stdin"), "stdin")


def iter_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a routing-eval JSONL file; bad lines are InputErrors naming file and line."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    with fh:
        n = 0
        while raw := fh.readline(msgs.MAX_INPUT_BYTES + 1):  # bounded: a 2 GB line is refused, not read whole
            n += 1
            where = f"{path}:{n}"
            if len(raw) > msgs.MAX_INPUT_BYTES:
                raise InputError(f"{where}: line longer than {msgs.MAX_INPUT_BYTES:,} bytes")
            if not raw.strip():
                continue
            row = json_input.loads(msgs.decode(raw, where), where)
            if not isinstance(row, dict) or "messages" not in row:
                raise InputError(f"{where}: expected an object with 'messages'")
            row["messages"] = msgs.validate(row["messages"], f"{where} messages")
            yield row
