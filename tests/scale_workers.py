"""Worker functions run in separate processes by the scale tests (through scale_fixtures.run_workers)."""

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
    from agent_router.providers.state import RedisState

    handler = _Count()
    logging.getLogger("agent_router.providers.state").addHandler(handler)
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
    """Take `times` keys from a shared rotation over n keys and report `times` failures of a model, as
    ProviderClient does (KeyPool, Health), on one Redis."""
    from agent_router.providers.health import Health
    from agent_router.providers.keys import KeyPool
    from agent_router.providers.state import RedisState

    state = RedisState(url)
    envs = [f"K{i}" for i in range(n)]
    pool = KeyPool(state, env={e: f"test-key-{e}-0123456789abcdef" for e in envs})
    health = Health(state, failure_threshold=10**9)
    ready()
    picks, top = [], 0
    for _ in range(times):
        picks.append(envs.index(pool.rotation(rot_key, envs)[0].env))
        health.failure(fail_key, "server")
        top = max(top, int(state.get(f"health:{fail_key}:failures") or 0))
    state.close()
    return {"picks": picks, "top_failures": top}


def _pg_ledger(dsn: str, budgets: dict[str, Any] | None = None, spool_dir: str | None = None) -> Any:
    """A Ledger on the PostgreSQL server at `dsn` (passed through an environment variable, as users do)."""
    import os

    import pluggy

    from agent_router import hookspecs
    from agent_router.ledger import Ledger
    from agent_router.settings import parse

    os.environ["AR_TEST_PG_DSN"] = dsn
    led: dict[str, Any] = {"backend": "postgresql", "dsn_env": "AR_TEST_PG_DSN"}
    if spool_dir:
        led["path"] = os.path.join(spool_dir, "ledger")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return Ledger.from_settings(parse({"ledger": led, "budgets": budgets or {}}), pm=pm)


def write_worker(dsn: str, worker: int, n: int, *, ready: Any) -> int:
    """Record n calls, one transaction each; return how many got a row id."""
    led = _pg_ledger(dsn)
    ready()
    ok = 0
    for i in range(n):
        usage = {"prompt_tokens": 100 + i, "completion_tokens": 10}
        rid = led.record("gpt-4.1-mini", usage, provider="openai", conversation_id=f"w{worker}",
                         agent_id=str(worker), latency_ms=1.0)
        ok += rid is not None
    led.close()
    return ok


def budget_worker(dsn: str, limit: float, estimate: float, overrun: float, seed: int, *, ready: Any
                  ) -> dict[str, Any]:
    """Spend against one shared daily budget: check (reserve) `estimate`, then record a real cost up to
    `overrun` times the estimate, until the budget blocks 20 times in a row."""
    rng = random.Random(seed)
    led = _pg_ledger(dsn, {"daily_usd": limit, "on_exceed": "block"})
    ready()
    spent, calls, blocked = 0.0, 0, 0
    while blocked < 20:
        chk = led.check(estimate)
        if not chk.allowed:
            blocked += 1
            time.sleep(0.005)
            continue
        blocked = 0
        cost = estimate * rng.uniform(1.0, overrun)
        time.sleep(rng.uniform(0, 0.003))  # the model call
        led.record("gpt-4.1-mini", None, provider="openai", cost_usd=cost, reservation_id=chk.reservation_id)
        spent += cost
        calls += 1
    led.close()
    return {"spent": spent, "calls": calls, "max_cost": estimate * overrun}


def crash_worker(dsn: str, estimate: float, ttl_s: float, *, ready: Any) -> None:
    """Reserve budget, then die without recording or releasing (an agent crashing mid-call)."""
    import os

    led = _pg_ledger(dsn, {"daily_usd": 1.0, "reservation_ttl_s": ttl_s})
    ready()
    chk = led.check(estimate)
    assert chk.allowed and chk.reservation_id
    os._exit(0)


def limited_writer(dsn: str, redis_url: str, worker: int, duration_s: float, spool_dir: str, *, ready: Any
                   ) -> dict[str, Any]:
    """For `duration_s`, make calls each admitted by a shared Redis limit, then recorded in PostgreSQL. Either
    server may go away meanwhile; nothing may crash and no row may be lost (rows that cannot reach
    PostgreSQL spool). Returns how many calls were recorded, and how they were admitted."""
    from agent_router.providers.state import RedisState

    handler = _Count()
    logging.getLogger("agent_router").addHandler(handler)
    state = RedisState(redis_url, retry_after_s=0.1, timeout_s=0.3)
    led = _pg_ledger(dsn, spool_dir=spool_dir)
    led.store.retries = 3  # give up on PostgreSQL quickly and spool, as a busy agent would
    ready()
    shared = local = calls = 0
    end = time.time() + duration_s
    while time.time() < end:
        a = state.acquire("gpt-4.1-mini:rpm", 40, 0.1)
        if not a.allowed:
            time.sleep(min(a.retry_after_s, 0.01))
            continue
        shared += a.shared
        local += not a.shared
        led.record("gpt-4.1-mini", {"prompt_tokens": 10, "completion_tokens": 1}, provider="openai",
                   conversation_id=f"lw{worker}-{calls}", latency_ms=1.0)
        calls += 1
        time.sleep(0.02)  # ~50 calls a second per agent: enough to hit both outages
    pending = led._spooled  # rows spooled and not yet replayed by a later successful write
    led.close()
    state.close()
    return {"calls": calls, "shared": shared, "local": local, "warnings": handler.messages,
            "pending": pending}


def provider_settings(llm_url: str, rpm: int | None = None, **model_kw: Any) -> Any:
    """Settings for one OpenAI-compatible model on the local fake server, with shared state in Redis
    (URL in $AR_TEST_REDIS_URL)."""
    from agent_router.settings import Settings

    m: dict[str, Any] = {"provider": "openai", "name": "shared-model", "base_url": llm_url + "/v1",
                         "api_key_env": "TEST_KEY", **model_kw}
    if rpm:
        m["rate_limits"] = {"rpm": rpm}
    return Settings.model_validate({
        "models": {"m": m}, "tiers": {"utility": ["m"], "chat": ["m"], "premium": ["m"]},
        "providers": {"timeout_s": 2.0, "max_retries": 0, "max_retry_wait_s": 0.0, "failure_threshold": 2,
                      "cooldown_s": 30.0},
        "redis": {"url_env": "AR_TEST_REDIS_URL"},
    })


def client_worker(llm_url: str, redis_url: str, key: str, rpm: int, attempts: int, *, ready: Any
                  ) -> dict[str, int]:
    """A ProviderClient under a shared rpm limit: try `attempts` calls; count answered and refused."""
    import os

    from agent_router.providers import ProviderClient, ProviderError

    os.environ["AR_TEST_REDIS_URL"] = redis_url
    client = ProviderClient(provider_settings(llm_url, rpm), env={"TEST_KEY": key})
    ready()
    ok = refused = 0
    for _ in range(attempts):
        try:
            client.complete("m", [{"role": "user", "content": "hi"}])
            ok += 1
        except ProviderError as e:
            assert e.kind == "rate_limit", e
            refused += 1
    client.close()
    return {"ok": ok, "refused": refused}


def forked_writes(led: Any, tag: str, n: int) -> list[int | None]:
    """Record n calls on a Ledger object this process may have inherited through fork."""
    return [led.record("gpt-4.1-nano", {"prompt_tokens": 5, "completion_tokens": 1}, provider="openai",
                       conversation_id=f"{tag}{i}") for i in range(n)]


def _forked_child(led: Any, n: int, q: Any) -> None:
    q.put(forked_writes(led, "child", n))
