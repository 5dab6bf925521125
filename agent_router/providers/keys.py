"""API keys: read from environment variables named in settings, rotated, set aside after failed auth, and
redacted from every text we produce. Keys are identified by their variable's name, never by value."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping

from .state import StateStore

_known: set[str] = set()
_known_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None
REDACTED = "[redacted]"


def remember(value: str) -> None:
    """Register a secret so `redact` removes it from any text."""
    global _pattern
    if len(value) < 4 or value in _known:
        return
    with _known_lock:
        _known.add(value)
        _pattern = re.compile("|".join(re.escape(k) for k in sorted(_known, key=len, reverse=True)))


# Key-like tokens we never print even when we did not read them ourselves (e.g. echoed by a server).
_KEYLIKE = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-*]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|gsk_[A-Za-z0-9]{8,}|"
    r"xai-[A-Za-z0-9]{8,})"
)


def redact(text: str) -> str:
    """`text` with every known API key (and anything shaped like one) replaced by [redacted]."""
    if _pattern is not None:
        text = _pattern.sub(REDACTED, text)
    return _KEYLIKE.sub(REDACTED, text)


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
