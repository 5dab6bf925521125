"""Per-model health: a circuit breaker. Repeated failures open it (the model is skipped for `cooldown_s`);
after the cooldown one probe call is let through (half-open); its success closes the breaker again."""

from __future__ import annotations

import time
from collections.abc import Callable

from . import types as t
from .state import StateStore


class Health:
    def __init__(
        self,
        state: StateStore,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        probe_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self.state = state
        self.threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.probe_ttl_s = probe_ttl_s
        self.clock = clock
        self._keys: dict[str, tuple[str, str, str]] = {}  # alias -> its three state keys, formatted once

    def _k(self, alias: str) -> tuple[str, str, str]:
        """(cooldown_until, failures, probe) keys of `alias`."""
        k = self._keys.get(alias)
        if k is None:
            if len(self._keys) >= 4096:  # aliases are a catalog's: a bound all the same
                self._keys.clear()
            k = self._keys[alias] = (
                f"health:{alias}:cooldown_until", f"health:{alias}:failures", f"health:{alias}:probe"
            )
        return k

    def available(self, alias: str) -> bool:
        """True when calls may go to `alias` now (closed, or this caller holds the half-open probe)."""
        cooldown, _, probe = self._k(alias)
        until = self.state.get(cooldown)
        if until is None:
            return True
        if self.clock() < until:
            return False
        # Half-open: the first caller past the cooldown probes; others keep skipping until it reports.
        return self.state.incr(probe, 1, ttl_s=self.probe_ttl_s) == 1

    def cooling_until(self, alias: str) -> float | None:
        until = self.state.get(self._k(alias)[0])
        return until if until is not None and until > self.clock() else None

    def success(self, alias: str) -> None:
        cooldown, failures, probe = self._k(alias)
        state = self.state
        if state.get(failures) is not None:
            state.delete(failures)
        if state.get(cooldown) is not None:
            state.delete(cooldown)
            state.delete(probe)

    def failure(self, alias: str, kind: str) -> None:
        if kind not in t.UNHEALTHY:
            # This request's fault (too long, refused, bad key), not the model's: it answered, so a
            # half-open probe that got this far proves the model is up.
            if self.state.get(f"health:{alias}:cooldown_until") is not None:
                self.success(alias)
            return
        n = self.state.incr(f"health:{alias}:failures", 1)
        probing = self.state.get(f"health:{alias}:cooldown_until") is not None
        if probing or n >= self.threshold:
            self.trip(alias, self.cooldown_s)

    def trip(self, alias: str, seconds: float) -> None:
        """Skip `alias` for `seconds` from now."""
        self.state.set(f"health:{alias}:cooldown_until", self.clock() + seconds)
        self.state.delete(f"health:{alias}:probe")
