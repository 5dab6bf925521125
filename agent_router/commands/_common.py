"""Helpers shared by the built-in commands."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import messages as msgs
from ..json_input import read_bounded
from ..learned.evaluation import iter_rows  # noqa: F401 - the routing-eval row reader, for the commands
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
