"""Shared resilience state (health, rate-limit counters, key positions) behind a tiny key/value interface.

Everything is a float under a string key, with an optional time to live, so a Redis implementation maps
one-to-one (GET / SET PX / INCRBYFLOAT + PEXPIRE / DEL). Keys never hold secrets: API keys are named by
their environment variable. Key names used:

- ``health:{alias}:failures``, ``health:{alias}:cooldown_until``, ``health:{alias}:probe``
- ``rl:{alias}:{rpm|input_tpm|output_tpm}:{minute}`` (per-minute counters), ``learned:{alias}:{metric}``
- ``block:{alias}:{key_env}`` (rate-limited until), ``keys:{group}:pos``, ``keybad:{key_env}``
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class StateStore(Protocol):
    def get(self, key: str) -> float | None:
        """The value, or None when absent or expired."""

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        """Store a value, expiring after `ttl_s` seconds when given."""

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        """Add `amount` (absent counts as 0) and return the new value; `ttl_s` applies when the key is new."""

    def delete(self, key: str) -> None:
        """Remove the key if present."""


class MemoryState:
    """In-process StateStore; thread-safe. Expired keys are dropped when touched or on a periodic sweep."""

    def __init__(self, clock=time.time) -> None:
        self._data: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._ops = 0

    def _live(self, key: str, now: float) -> tuple[float, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def _sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % 4096 == 0:  # bounded memory: per-minute counters would otherwise pile up
            for k in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
                del self._data[k]

    def get(self, key: str) -> float | None:
        with self._lock:
            item = self._live(key, self._clock())
        return None if item is None else item[0]

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            self._data[key] = (float(value), None if ttl_s is None else now + ttl_s)

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            item = self._live(key, now)
            if item is None:
                item = (0.0, None if ttl_s is None else now + ttl_s)
            value = item[0] + amount
            self._data[key] = (value, item[1])
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
