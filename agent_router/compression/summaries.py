"""Summaries through the `summarize` hook: bounded in time, remembered per span, and left alone for a while
after a failure, so that a slow or broken utility model never stalls the agent."""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

timeout_var: contextvars.ContextVar[float] = contextvars.ContextVar(
    "agent_router_summarize_timeout", default=20.0
)


class SummaryCache:
    """Recent hook summaries by span content: the agent recompresses the same history every iteration, and
    asking the utility model again for an unchanged span costs money and time for nothing."""

    def __init__(self, size: int = 64):
        self.size = size
        self._d: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


SUMMARIES = SummaryCache()


class Breaker:
    """After the summarizer fails or times out, leave it alone for a while: a provider that is down would
    otherwise cost every agent iteration the full timeout (Agent Zero #1202, #1881)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._why = ""
        self._at = 0.0

    def trip(self, why: str, seconds: float) -> None:
        with self._lock:
            self._at = time.monotonic()
            self._until = self._at + seconds
            self._why = why

    def resting(self) -> str:
        """Why the summarizer is being left alone, or "" when it may be asked."""
        with self._lock:
            now = time.monotonic()
            if now >= self._until:
                return ""
            return (f"{self._why} {now - self._at:.0f}s ago (asking again in {self._until - now:.0f}s, "
                    "summarize_retry_after_s)")

    def reset(self) -> None:
        with self._lock:
            self._until = 0.0


BREAKER = Breaker()


def span_key(span: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(span, sort_keys=True, default=str).encode()).hexdigest()



def call_hook(pm: Any, span: list[dict[str, Any]], budget: int, timeout: float) -> tuple[str | None, str]:
    """Run the summarize hook in a worker thread; give up after `timeout` seconds (abandoning the thread)."""
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def run() -> None:
        timeout_var.set(timeout)
        try:
            box["value"] = pm.hook.summarize(messages=span, budget=budget)
        except Exception as e:  # a plugin's failure must not stall or crash the agent
            box["error"] = type(e).__name__

    t = threading.Thread(target=lambda: ctx.run(run), name="agent-router-summarize", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, f"timed out after {timeout:.1f}s"
    if "error" in box:
        return None, f"failed ({box['error']})"
    v = box.get("value")
    if not isinstance(v, str) or not v.strip():
        return None, "unavailable (no summarizer answered)"
    return v, ""
