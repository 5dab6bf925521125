"""Worker functions run in separate (spawned) processes by the scale tests; importable by name."""

from __future__ import annotations

import logging
import random
import time
from typing import Any


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def entry(index: int, fn_name: str, args: tuple, barrier: Any, results: Any) -> None:
    """Process entry point: run `fn_name(*args, ready=barrier.wait)`, put (index, ok, result) on `results`."""
    import traceback

    try:
        out = globals()[fn_name](*args, ready=barrier.wait)
        results.put((index, True, out))
    except BaseException:  # report any failure to the test instead of dying silently
        results.put((index, False, traceback.format_exc()))


def limit_worker(url: str, key: str, limit: int, window_s: float, duration_s: float,
                 max_amount: int, seed: int, retry_after_s: float = 0.2, *, ready: Any) -> dict[str, Any]:
    """Hammer one shared limit until `start_at + duration_s`; report every decision and warnings logged."""
    from agent_router.shared_state import RedisState

    handler = _Count()
    logging.getLogger("agent_router.shared_state").addHandler(handler)
    rng = random.Random(seed)
    state = RedisState(url, retry_after_s=retry_after_s, timeout_s=0.5)
    admitted: list[tuple[float, int, bool]] = []  # (at, amount, shared)
    refused = 0
    ready()
    end = time.time() + duration_s
    while time.time() < end:
        amount = 1 if max_amount == 1 else rng.randint(1, max_amount)
        a = state.acquire(key, limit, window_s, amount)
        if a.allowed:
            admitted.append((a.at, amount, a.shared))
        else:
            refused += 1
            time.sleep(min(a.retry_after_s, 0.005))
    state.close()
    return {"admitted": admitted, "refused": refused, "warnings": handler.messages}


def state_worker(url: str, rot_key: str, n: int, fail_key: str, times: int, *, ready: Any) -> dict[str, Any]:
    """Take `times` positions of a shared key rotation over n keys and count `times` failures of a model."""
    from agent_router.shared_state import RedisState

    state = RedisState(url)
    ready()
    picks, top = [], 0
    for _ in range(times):
        picks.append(state.rotate(rot_key, n))
        top = max(top, state.add_failure(fail_key, 30.0))
    state.close()
    return {"picks": picks, "top_failures": top}
