"""Errors a user can act on: each names what is wrong and where."""

from __future__ import annotations


class AgentRouterError(Exception):
    """Base class for every error agent_router raises on purpose."""


class SettingsError(AgentRouterError):
    """A settings file (or settings object) is invalid.

    `source` is the file (or "<built-in defaults>"), `problems` a list of (json_path, message) pairs.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid settings"]
        lines += [f"  at {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class InputError(AgentRouterError):
    """Messages or other request input that cannot be routed (empty, malformed, not UTF-8, too large)."""


class UnknownModelError(AgentRouterError):
    """A model alias or name that the catalog does not know."""
