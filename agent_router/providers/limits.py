"""Per-model rate limits (requests, input and output tokens per minute), from settings or learned from 429s.

Counting uses a sliding-window estimate over two fixed one-minute buckets (previous bucket weighted by the
part of it still inside the window), which needs only counters: cheap in memory and in Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..settings import RateLimits
from .state import StateStore

METRICS = ("rpm", "input_tpm", "output_tpm")
LEARNED_TTL_S = 3600.0


def _counter(alias: str, metric: str, minute: int) -> str:
    """The state key counting `metric` for `alias` in `minute` (minutes since the epoch)."""
    return f"rl:{alias}:{metric}:{minute}"


class Limiter:
    def __init__(
        self,
        state: StateStore,
        clock: Callable[[], float] = time.time,
        max_wait_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.state = state
        self.clock = clock
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._learned: dict[str, tuple[tuple[str, str], ...]] = {}  # alias -> ((metric, state key), ...)
        self._minute: dict[str, tuple[int, tuple[str, str, str]]] = {}  # alias -> (minute, its counters' keys)

    def limits(self, alias: str, configured: RateLimits | None) -> dict[str, float]:
        out: dict[str, float] = {}
        names = self._learned.get(alias)
        if names is None:
            if len(self._learned) >= 4096:  # aliases are a catalog's: a bound all the same
                self._learned.clear()
            names = self._learned[alias] = tuple((m, f"learned:{alias}:{m}") for m in METRICS)
        get = self.state.get
        for m, key in names:
            v = getattr(configured, m, None) if configured is not None else None
            if v is None:
                v = get(key)
            if v is not None:
                out[m] = v
        return out

    def _counters(self, alias: str, minute: int) -> tuple[str, str, str]:
        """The rpm, input_tpm and output_tpm counters' keys of `alias` in `minute`."""
        k = self._minute.get(alias)
        if k is not None and k[0] == minute:
            return k[1]
        if len(self._minute) >= 4096:
            self._minute.clear()
        keys = (_counter(alias, "rpm", minute), _counter(alias, "input_tpm", minute),
                _counter(alias, "output_tpm", minute))
        self._minute[alias] = (minute, keys)
        return keys

    def _window(self, alias: str, metric: str, now: float) -> tuple[float, float, float]:
        minute = math.floor(now / 60)
        cur = self.state.get(_counter(alias, metric, minute)) or 0.0
        prev = self.state.get(_counter(alias, metric, minute - 1)) or 0.0
        return cur, prev, (now / 60) - minute

    def used(self, alias: str, metric: str) -> float:
        cur, prev, frac = self._window(alias, metric, self.clock())
        return cur + prev * (1 - frac)

    def wait_s(self, alias: str, limits: dict[str, float], input_tokens: int) -> float:
        """Seconds to wait before one more request fits every limit (inf when it never will)."""
        if not limits:
            return 0.0
        if self.state.shared:  # other processes count too (Redis): admit atomically, counting the call now
            admit = self.state.acquire
            wait = self._admit(admit, alias, limits, input_tokens)
            if wait or "output_tpm" not in limits:
                return wait
            limits = {"output_tpm": limits["output_tpm"]}  # known only after calls: estimated as below
        now = self.clock()
        worst = 0.0
        for metric, need in (("rpm", 1.0), ("input_tpm", float(input_tokens)), ("output_tpm", 1.0)):
            limit = limits.get(metric)
            if limit is None:
                continue
            if need > limit:
                return math.inf
            cur, prev, frac = self._window(alias, metric, now)
            if cur + prev * (1 - frac) + need <= limit:
                continue
            if cur + need > limit:  # not before the next minute starts (then `cur` becomes the weighted part)
                wait = (1 - frac) * 60 + (60 * max(0.0, (cur + need - limit) / cur) if cur else 0.0)
            else:  # the previous minute's share must shrink enough
                wait = 60 * ((1 - frac) - (limit - cur - need) / prev)
            worst = max(worst, wait)
        return worst

    def _admit(self, admit, alias: str, limits: dict[str, float], input_tokens: int) -> float:
        """Atomic admission through `state.acquire` (a sliding window, one Redis script): with a check
        then an add, processes sharing one limit could all pass the same check. The caller sends right
        after any wait without asking again, so waiting happens here, up to `max_wait_s`; beyond that the
        returned wait exceeds it and the caller fails over. (An rpm slot taken before an input_tpm refusal
        stays counted: a conservative error.)"""
        waited = 0.0  # counted, not read from a clock: an injected sleep need not pass real time
        for metric, need in (("rpm", 1), ("input_tpm", max(1, input_tokens))):
            limit = limits.get(metric)
            if limit is None:
                continue
            if need > limit:
                return math.inf
            while True:
                a = admit(f"{alias}:{metric}", int(limit), 60.0, int(need))
                if a.allowed:
                    break
                wait = max(a.retry_after_s, 0.001)
                if waited + wait > self.max_wait_s:
                    return max(wait, self.max_wait_s + 0.001)
                self.sleep(wait)
                waited += wait
        return 0.0

    def add(self, alias: str, rpm: float = 0, input_tokens: float = 0, output_tokens: float = 0) -> None:
        rpm_key, input_key, output_key = self._counters(alias, math.floor(self.clock() / 60))
        if rpm:
            self.state.incr(rpm_key, rpm, ttl_s=150)
        if input_tokens:
            self.state.incr(input_key, input_tokens, ttl_s=150)
        if output_tokens:
            self.state.incr(output_key, output_tokens, ttl_s=150)

    def learn(self, alias: str, announced: dict[str, int], configured: RateLimits | None) -> None:
        """After a 429: keep the limits the server announced; with none, the request rate that hit it."""
        if configured is not None and any(getattr(configured, m) for m in METRICS):
            return
        if announced:
            for m, v in announced.items():
                self.state.set(f"learned:{alias}:{m}", float(v), ttl_s=LEARNED_TTL_S)
            return
        seen = self.used(alias, "rpm")
        if seen > 0:
            self.state.set(f"learned:{alias}:rpm", float(max(1, round(seen))), ttl_s=LEARNED_TTL_S)
