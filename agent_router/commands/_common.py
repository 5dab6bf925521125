"""Helpers shared by the built-in commands."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from .. import messages as msgs
from ..json_input import read_bounded

if TYPE_CHECKING:  # the CLI imports settings and the router only when a command runs (fast --help)
    from ..router import Router
    from ..settings import Settings

settings_option = click.option(
    "--settings",
    "settings_path",
    type=click.Path(),  # a directory, a device or an unreadable file is reported by settings.load in one line
    default=None,
    help="Settings JSON file (default: $AGENT_ROUTER_SETTINGS, then ~/.agent-router/settings.json, "
    "then built-in defaults).",
)


class LazyChoice(click.Choice):
    """A click.Choice whose choices are `module:NAME`, imported only when an option is parsed or its help is
    shown, so listing the commands imports no library module."""

    def __init__(self, ref: str) -> None:
        self._ref = ref
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        module, _, name = self._ref.partition(":")
        return tuple(getattr(importlib.import_module(module, __package__), name))

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        """click.Choice.__init__ assigns the choices; ours come from `ref`."""


def get_settings(path: str | None) -> Settings:
    from ..settings import load

    return load(path)


def get_router(path: str | None) -> Router:
    """A Router on the settings at `path`, with the installed plugins (the default of Router)."""
    from ..router import Router

    return Router(get_settings(path))


def iter_rows(path: str) -> Iterator[dict[str, Any]]:
    """The routing-eval rows of `path` (agent_router.learned.evaluation.iter_rows), imported when a command runs."""
    from ..learned.evaluation import iter_rows as rows

    return rows(path)


def read_stdin_messages() -> list[dict[str, Any]]:
    raw = read_bounded(sys.stdin.buffer, msgs.MAX_INPUT_BYTES, "stdin")
    return msgs.from_json_text(msgs.decode(raw, "stdin"), "stdin")
