"""Helpers shared by the built-in commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .. import messages as msgs
from ..errors import InputError
from ..plugins import load_plugins
from ..router import Router
from ..settings import Settings, load

settings_option = click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings JSON file (default: $AGENT_ROUTER_SETTINGS, then ~/.agent-router/settings.json, "
    "then built-in defaults).",
)


def get_settings(path: str | None) -> Settings:
    return load(path)


def get_router(path: str | None) -> Router:
    return Router(load(path), pm=load_plugins())


def read_stdin_messages() -> list[dict[str, Any]]:
    raw = sys.stdin.buffer.read()
    return msgs.from_json_text(msgs.decode(raw, "stdin"), "stdin")


def iter_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a routing-eval JSONL file; bad lines are InputErrors naming file and line."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            line = msgs.decode(raw, where)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict) or "messages" not in row:
                raise InputError(f"{where}: expected an object with 'messages'")
            row["messages"] = msgs.validate(row["messages"], f"{where} messages")
            yield row
