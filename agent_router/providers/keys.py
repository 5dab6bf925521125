"""API keys: read from environment variables named in settings, rotated, set aside after failed auth, and
redacted from every text we produce. Keys are identified by their variable's name, never by value."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

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


class KeyPool:
    """Round-robin over a model's keys; a key that failed authentication sits out for `set_aside_s`."""

    def __init__(
        self,
        state: StateStore,
        env: Mapping[str, str] | None = None,
        set_aside_s: float = 3600.0,
        clock=time.time,
    ):
        self.state = state
        self.env = env if env is not None else os.environ
        self.set_aside_s = set_aside_s
        self.clock = clock

    def present(self, envs: list[str]) -> list[Secret]:
        # Stripped: a trailing newline from `export K=$(cat file)` would make an invalid header whose
        # error message might quote the key.
        return [Secret(n, v) for n in envs if (v := (self.env.get(n) or "").strip())]

    def rotation(self, group: str, envs: list[str]) -> list[Secret]:
        """This call's keys, in order to try: usable keys starting at the group's next position."""
        keys = [k for k in self.present(envs) if self.state.get(f"keybad:{k.env}") is None]
        if len(keys) > 1:
            pos = int(self.state.incr(f"keys:{group}:pos", 1)) - 1
            i = pos % len(keys)
            keys = keys[i:] + keys[:i]
        return keys

    def set_aside(self, key: Secret) -> None:
        self.state.set(f"keybad:{key.env}", self.clock(), ttl_s=self.set_aside_s)
