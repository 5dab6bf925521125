"""Shared limits, cooldowns, health and key rotation through a real redis-server, across processes."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time

import pytest

from .scale_fixtures import RedisServer, free_port, run_workers

pytestmark = pytest.mark.skipif(importlib.util.find_spec("redis") is None,
                                reason="redis-py not installed: pip install -e '.[redis]'")

from agent_router.providers.health import Health  # noqa: E402
from agent_router.providers.limits import Limiter  # noqa: E402
from agent_router.providers.state import MemoryState, RedisState, SharedStateError, open_state  # noqa: E402
from agent_router.settings import parse  # noqa: E402


def worst_window(admitted: list[tuple[float, int]], window_s: float) -> int:
    """The most units admitted in any half-open interval [t, t + window) starting at an admission."""
    pts = sorted((round(at * 1_000_000), amount) for at, amount in admitted)
    win = round(window_s * 1_000_000)
    worst, j, total = 0, 0, 0
    # Two pointers over sorted times: for each start i, sum amounts with time < start + window.
    for i in range(len(pts)):
        if i > 0:
            total -= pts[i - 1][1]
        j = max(j, i)
        while j < len(pts) and pts[j][0] < pts[i][0] + win:
            total += pts[j][1]
            j += 1
        worst = max(worst, total)
    return worst


def test_worst_window_counts_what_it_should() -> None:
    # The checker itself: 3 admissions within 1 s, a 4th 1 s after the first.
    assert worst_window([(0.0, 1), (0.5, 1), (0.999, 1), (1.0, 1)], 1.0) == 3
    assert worst_window([(0.0, 5), (0.2, 7)], 0.1) == 7


def test_shared_request_limit_across_4_processes(redis_server: RedisServer) -> None:
    limit, window, duration = 10, 0.3, 1.5
    results = run_workers(4, "limit_worker",
                          lambda i: (redis_server.url, "gpt:rpm", limit, window, duration, 1, i))
    admitted = [(at, amt) for r in results for at, amt, shared in r["admitted"]]
    assert all(shared for r in results for _, _, shared in r["admitted"])
    assert worst_window(admitted, window) <= limit
    # The processes wanted far more than the limit, and windows rolled over (more than one window's worth).
    assert sum(r["refused"] for r in results) > len(admitted)
    assert len(admitted) >= 3 * limit
    assert sum(1 for r in results if r["admitted"]) >= 2  # not one process holding the limit alone


def test_shared_token_limit_across_4_processes(redis_server: RedisServer) -> None:
    limit, window, duration = 300, 0.3, 1.2
    results = run_workers(4, "limit_worker",
                          lambda i: (redis_server.url, "gpt:tpm", limit, window, duration, 60, i))
    admitted = [(at, amt) for r in results for at, amt, _ in r["admitted"]]
    assert worst_window(admitted, window) <= limit
    assert sum(a for _, a in admitted) >= 2 * limit


def test_redis_stopped_mid_run_falls_back_locally_and_recovers(redis_server: RedisServer) -> None:
    # 1.7 s after the restart begins: on a loaded machine (four test workers beside the four limit workers)
    # redis-server's start and the clients' next retry took longer than the 1.1 s this left before.
    limit, window, duration = 8, 0.2, 3.2
    threads: list[threading.Thread] = []

    def outage() -> None:
        time.sleep(0.8)
        redis_server.stop()
        time.sleep(0.7)
        redis_server.start()  # same port; an empty server

    def on_start() -> None:
        threads.append(threading.Thread(target=outage))
        threads[0].start()

    try:
        args = (redis_server.url, "m:rpm", limit, window, duration, 1)
        results = run_workers(4, "limit_worker", lambda i: (*args, i, 0.1), on_start)
    finally:
        for t in threads:
            t.join()
    for r in results:  # every process kept working through the outage, locally, then shared again
        shared = [at for at, _, s in r["admitted"] if s]
        local = [(at, a) for at, a, s in r["admitted"] if not s]
        assert local, "no admissions while Redis was down"
        assert worst_window(local, window) <= limit  # the local fallback still limits
        assert any(at < min(a for a, _ in local) for at in shared)
        assert any(at > max(a for a, _ in local) for at in shared), "never went back to Redis"
        down = [m for m in r["warnings"] if "unavailable" in m]
        back = [m for m in r["warnings"] if "answers again" in m]
        assert len(down) == 1 and len(back) == 1, r["warnings"]
    shared_all = [(at, a) for r in results for at, a, s in r["admitted"] if s]
    assert worst_window(shared_all, window) <= limit


def test_key_rotation_and_failure_counts_are_shared(redis_server: RedisServer) -> None:
    results = run_workers(4, "state_worker", lambda i: (redis_server.url, "openai:keys", 7, "claude", 10))
    picks = [p for r in results for p in r["picks"]]
    # One rotation across all processes: 40 picks over 7 keys -> each key 5 or 6 times (per-process
    # rotations would give keys 0-2 eight times each).
    assert sorted(picks) == sorted(i % 7 for i in range(40))
    assert max(r["top_failures"] for r in results) == 40  # every failure from every process counted once


def test_cooldown_health_and_learned_limits_seen_by_other_clients(redis_server: RedisServer) -> None:
    a, b = RedisState(redis_server.url), RedisState(redis_server.url)
    ha, hb = Health(a, failure_threshold=2, cooldown_s=5), Health(b, failure_threshold=2, cooldown_s=5)
    ha.failure("gpt-4.1", "server")
    hb.failure("gpt-4.1", "server")  # the second failure, from another client, opens the breaker for both
    assert not ha.available("gpt-4.1") and not hb.available("gpt-4.1")
    assert 4 < hb.cooling_until("gpt-4.1") - time.time() <= 5
    hb.success("gpt-4.1")
    assert ha.available("gpt-4.1")
    Limiter(a).learn("gpt-4.1", {"rpm": 500}, None)  # limits announced in a 429 seen by one client
    assert Limiter(b).limits("gpt-4.1", None) == {"rpm": 500.0}
    assert Limiter(b).limits("other", None) == {}
    assert a.incr("x", 1, ttl_s=0.2) == 1 and b.incr("x", 1, ttl_s=0.2) == 2
    time.sleep(0.3)
    assert b.get("x") is None  # counters expire one ttl after they were created, for every client
    other = RedisState(redis_server.url, prefix="team2")  # a second team on the same server
    assert Limiter(other).limits("gpt-4.1", None) == {}
    for s in (a, b, other):
        s.close()


def test_unreachable_redis_uses_local_limits_logs_once_without_password(caplog) -> None:
    port = free_port()  # nothing listens there
    caplog.set_level(logging.WARNING, logger="agent_router.providers.state")
    s = RedisState(f"redis://:s3cret-pw@127.0.0.1:{port}/0", retry_after_s=60)
    t0 = time.monotonic()
    got = [s.acquire("m", 5, 10.0).allowed for _ in range(50)]
    assert got == [True] * 5 + [False] * 45
    assert time.monotonic() - t0 < 2.0  # one quick failure, then local without waiting on Redis
    assert not s.shared
    warnings = [r for r in caplog.records if r.name == "agent_router.providers.state"]
    assert len(warnings) == 1
    assert f"127.0.0.1:{port}" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text


def test_local_state_sliding_window_semantics() -> None:
    now = [1000.0]
    s = MemoryState(clock=lambda: now[0])
    assert [s.acquire("k", 3, 1.0).allowed for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    refused = s.acquire("k", 3, 1.0)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
    now[0] += 0.5  # the first three leave the window exactly one window after they entered
    assert s.acquire("k", 3, 1.0).allowed
    assert s.acquire("big", 10, 1.0, amount=25).allowed  # larger than the limit: admitted alone
    assert not s.acquire("big", 10, 1.0, amount=1).allowed


def test_open_state_follows_settings(redis_server: RedisServer, monkeypatch) -> None:
    assert isinstance(open_state(parse({})), MemoryState)
    settings = parse({"redis": {"url_env": "AR_TEST_REDIS_URL", "key_prefix": "t"}})
    monkeypatch.delenv("AR_TEST_REDIS_URL", raising=False)
    with pytest.raises(SharedStateError, match="AR_TEST_REDIS_URL, which is not set"):
        open_state(settings)
    monkeypatch.setenv("AR_TEST_REDIS_URL", redis_server.url)
    st = open_state(settings)
    assert isinstance(st, RedisState) and st.acquire("k", 1, 5).shared
    st.close()


def test_settings_reject_a_url_where_an_env_name_belongs() -> None:
    from agent_router.errors import SettingsError

    with pytest.raises(SettingsError) as e:
        parse({"redis": {"url_env": "redis://:hunter2@10.0.0.5:6379/0"}})
    assert "$.redis.url_env" in str(e.value) and "hunter2" not in str(e.value)
    with pytest.raises(SettingsError) as e:
        parse({"ledger": {"backend": "postgresql", "dsn_env": "postgresql://u:hunter2@db/x"}})
    assert "$.ledger.dsn_env" in str(e.value) and "hunter2" not in str(e.value)
    with pytest.raises(SettingsError, match="needs `dsn_env`"):
        parse({"ledger": {"backend": "postgresql"}})


# --- the providers' client on shared state --------------------------------------------------------------
def test_provider_clients_in_4_processes_share_one_rpm_limit(redis_server, llm) -> None:
    from .providers_fixtures import GOOD_KEYS

    key = sorted(GOOD_KEYS)[0]
    rpm = 12
    results = run_workers(4, "client_worker", lambda i: (llm.url, redis_server.url, key, rpm, 8))
    # 32 calls wanted within one minute; exactly `rpm` reached the server, whichever process made them.
    assert sum(r["ok"] for r in results) == rpm
    assert llm.count("shared-model") == rpm
    assert sum(r["refused"] for r in results) == 4 * 8 - rpm


def test_provider_clients_share_cooldown_and_key_rotation(redis_server, llm, monkeypatch) -> None:
    from agent_router.providers import ProviderClient, ProviderError

    from .providers_fixtures import GOOD_KEYS
    from .scale_workers import provider_settings

    monkeypatch.setenv("AR_TEST_REDIS_URL", redis_server.url)
    k1, k2 = sorted(GOOD_KEYS)
    s = provider_settings(llm.url, api_key_env=["K1", "K2"])
    # Two clients with their own Redis connections: two agents on two machines.
    a = ProviderClient(s, env={"K1": k1, "K2": k2})
    b = ProviderClient(s, env={"K1": k1, "K2": k2})
    assert isinstance(a.state, RedisState) and a.state is not b.state
    for c in (a, b, a, b):
        c.complete("m", [{"role": "user", "content": "hi"}])
    used = [r["headers"]["Authorization"][7:] for r in llm.requests]
    assert used in ([k1, k2, k1, k2], [k2, k1, k2, k1])  # one rotation for both agents
    llm.fault("shared-model", "500", "500")
    for _ in range(2):  # two failures seen by agent a trip the breaker (failure_threshold 2)
        with pytest.raises(ProviderError):
            a.complete("m", [{"role": "user", "content": "hi"}])
    before = llm.count("shared-model")
    with pytest.raises(ProviderError, match="cooling down"):
        b.complete("m", [{"role": "user", "content": "hi"}])  # agent b skips it without calling
    assert llm.count("shared-model") == before
    a.close()
    b.close()


def test_provider_client_keeps_working_when_redis_is_unreachable(llm, monkeypatch, caplog) -> None:
    from agent_router.providers import ProviderClient, ProviderError

    from .providers_fixtures import GOOD_KEYS
    from .scale_workers import provider_settings

    monkeypatch.setenv("AR_TEST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    caplog.set_level(logging.WARNING, logger="agent_router.providers.state")
    c = ProviderClient(provider_settings(llm.url, rpm=3), env={"TEST_KEY": sorted(GOOD_KEYS)[0]})
    ok = 0
    for _ in range(5):
        try:
            ok += bool(c.complete("m", [{"role": "user", "content": "hi"}]).text)
        except ProviderError as e:
            assert e.kind == "rate_limit"
    assert ok == 3 and llm.count("shared-model") == 3  # the limit still holds, per process
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1
    c.close()


def test_redis_refusing_writes_falls_back_and_recovers(redis_server, caplog) -> None:
    import redis

    admin = redis.Redis.from_url(redis_server.url)
    s = RedisState(redis_server.url, retry_after_s=0.05)
    caplog.set_level(logging.WARNING, logger="agent_router.providers.state")
    assert s.acquire("m", 2, 10.0).shared
    admin.config_set("min-replicas-to-write", 1)  # the server now answers writes with NOREPLICAS
    got = [s.acquire("m", 2, 10.0) for _ in range(3)]
    assert [a.allowed for a in got] == [True, True, False] and not any(a.shared for a in got)
    admin.config_set("min-replicas-to-write", 0)
    time.sleep(0.06)
    back = s.acquire("m", 2, 10.0)
    assert back.shared and back.allowed and back.used == 2  # Redis's own count resumed: 1 before + this one
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in msgs) == 1 and sum("answers again" in m for m in msgs) == 1
    s.close()
    admin.close()
