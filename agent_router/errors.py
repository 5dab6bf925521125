"""Errors a user can act on: each names what is wrong and where."""

from __future__ import annotations

from typing import Any


def clip(value: Any, limit: int = 80) -> str:
    """`value` as text for an error line: whole when short, else its first `limit` characters and its length,
    e.g. 'xxxx…(5,000 chars)', so a huge wrong value cannot flood the terminal."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}…({len(text):,} chars)"


class AgentRouterError(Exception):
    """Base class for every error agent_router raises on purpose."""


MAX_LISTED = 20  # problems shown in one SettingsError; a file with thousands of bad keys stays readable


class SettingsError(AgentRouterError):
    """A settings file (or settings object) is invalid.

    `source` is the file (or "<built-in defaults>"), `problems` a list of (json_path, message) pairs.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:  # the common case reads as one line
            super().__init__(f"{source}: invalid settings at {problems[0][0]}: {problems[0][1]}")
            return
        lines = [f"{source}: invalid settings"]
        lines += [f"  at {path}: {msg}" for path, msg in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            lines.append(f"  ... and {len(problems) - MAX_LISTED} more problems")
        super().__init__("\n".join(lines))


class InputError(AgentRouterError):
    """Messages or other request input that cannot be routed (empty, malformed, not UTF-8, too large)."""


class UnknownModelError(AgentRouterError):
    """A model alias or name that the catalog does not know."""
