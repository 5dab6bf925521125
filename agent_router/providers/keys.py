"""API keys: read from environment variables named in settings, rotated, set aside after failed auth, and
redacted from every text we produce. Keys are identified by their variable's name, never by value."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from .. import secrets
from ..secrets import REDACTED, redact
from .state import StateStore

__all__ = ["REDACTED", "KeyPool", "Secret", "redact", "remember"]



def remember(value: str) -> None:
    """Register a secret so `redact` removes it from any text (the one redactor lives in agent_router.secrets)."""
    secrets.remember(value)


class Secret:
    """Holds one key; its repr and str never show it."""

    __slots__ = ("env", "value")

    def __init__(self, env: str, value: str):
        self.env = env
        self.value = value
        remember(value)

    def __repr__(self) -> str:
        return f"Secret({self.env}={REDACTED})"

    __str__ = __repr__


def key_problem(value: str) -> str | None:
    """Why `value` cannot go into an HTTP header, without quoting it; None when it can."""
    if value.isascii() and value.isprintable() and " " not in value:  # fast path: every call checks its keys
        return None
    for i, ch in enumerate(value):
        if not ch.isascii():
            return (
                f"holds a non-ASCII character at position {i + 1} (a pasted curly quote or non-breaking space?); "
                "API keys are plain ASCII"
            )
        if not ch.isprintable() or ch.isspace():
            return f"holds a space or control character at position {i + 1}; API keys have none"
    return None


class KeyPool:
    """Round-robin over a model's keys; a key an endpoint rejected sits out there for `set_aside_s`."""

    def __init__(
        self,
        state: StateStore,
        env: Mapping[str, str] | None = None,
        set_aside_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.state = state
        self.env = env if env is not None else os.environ
        self.set_aside_s = set_aside_s
        self.clock = clock

    def _values(self, envs: list[str]) -> list[tuple[str, str]]:
        # Stripped: a trailing newline from `export K=$(cat file)` would make an invalid header.
        return [(n, v) for n in envs if (v := (self.env.get(n) or "").strip())]

    def present(self, envs: list[str]) -> list[Secret]:
        """The usable keys that are set (see `unusable` for set ones that cannot be sent)."""
        return [Secret(n, v) for n, v in self._values(envs) if key_problem(v) is None]

    def unusable(self, envs: list[str]) -> list[str]:
        """'ENV holds ...' for each set variable whose value cannot be sent as a key; never the value."""
        out = []
        for n, v in self._values(envs):
            problem = key_problem(v)
            if problem is not None:
                remember(v)
                out.append(f"{n} {problem}")
        return out

    def rotation(self, group: str, envs: list[str], endpoint: str = "") -> list[Secret]:
        """This call's keys, in order to try: usable keys not set aside at `endpoint`, starting at the group's
        next position."""
        keys = [k for k in self.present(envs) if not self.is_set_aside(k, endpoint)]
        if len(keys) > 1:
            pos = int(self.state.incr(f"keys:{group}:pos", 1)) - 1
            i = pos % len(keys)
            keys = keys[i:] + keys[:i]
        return keys

    def set_aside(self, key: Secret, endpoint: str = "") -> None:
        """`endpoint` (a base URL) rejected `key`: leave it out there; other endpoints may still accept it."""
        self.state.set(self._bad(key, endpoint), self.clock(), ttl_s=self.set_aside_s)

    def is_set_aside(self, key: Secret, endpoint: str = "") -> bool:
        return self.state.get(self._bad(key, endpoint)) is not None

    @staticmethod
    def _bad(key: Secret, endpoint: str) -> str:
        return f"keybad:{endpoint}:{key.env}" if endpoint else f"keybad:{key.env}"
