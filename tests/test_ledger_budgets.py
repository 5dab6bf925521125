"""Budgets enforced from the ledger: atomic checks, reservations, alerts, and the router working with them."""

from __future__ import annotations

import logging
import multiprocessing
import random
import time

import pytest

from agent_router.ledger import Ledger
from agent_router.router import BudgetBlocked, Router
from agent_router.usage import Usage

from .ledger_fixtures import Recorder, ledger, plugin_manager, settings

HARD = (
    "Design a distributed consensus algorithm, prove its safety step by step, analyze the trade-offs against "
    "Raft and Paxos, then implement it in Python with unit tests and explain edge cases in a detailed report."
)


def _spend(led: Ledger, usd: float, conversation_id: str | None = None) -> int | None:
    return led.record("gpt-4.1", Usage(input=10, output=10), cost_usd=usd, conversation_id=conversation_id)


def test_no_budget_allows_without_reserving(tmp_path):
    led = ledger(tmp_path / "l.db")
    chk = led.check(5.0, "c1")
    assert chk.action == "allow" and chk.remaining_usd is None and chk.reservation_id is None
    assert led.remaining("c1") is None


def test_check_reserves_and_record_settles(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=1.0, on_exceed="block")
    _spend(led, 0.5)
    a = led.check(0.3, "c1")
    assert a.action == "allow" and a.remaining_usd == pytest.approx(0.5) and a.reservation_id
    assert led.remaining() == pytest.approx(0.2)  # the reservation counts as spent
    b = led.check(0.3, "c2")
    assert b.action == "block" and "daily budget" in b.reasons[0] and b.reservation_id is None
    led.record("gpt-4.1", Usage(input=1, output=1), cost_usd=0.1, reservation_id=a.reservation_id)
    assert led.store.count("reservations") == 0
    assert led.remaining() == pytest.approx(0.4)  # settled by the real cost, not the estimate


def test_downgrade_vs_block_and_per_request(tmp_path):
    led = ledger(tmp_path / "l.db", per_conversation_usd=0.2, per_request_usd=0.05)
    _spend(led, 0.18, "c1")
    chk = led.check(0.04, "c1")
    assert chk.action == "downgrade" and chk.remaining_usd == pytest.approx(0.02)
    assert led.check(0.04, "c2").action == "allow"  # another conversation has its own budget
    big = led.check(0.06, "c2")
    assert big.action == "downgrade" and "per-request" in big.reasons[0]
    blk = ledger(tmp_path / "b.db", per_request_usd=0.05, on_exceed="block")
    assert blk.check(0.06).action == "block"


def test_unsettled_reservation_expires(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=1.0, reservation_ttl_s=0.2)
    assert led.check(0.9).allowed
    assert led.remaining() == pytest.approx(0.1)
    time.sleep(0.3)
    assert led.remaining() == pytest.approx(1.0)
    assert led.check(0.9).allowed  # the expired hold no longer blocks


def test_release_returns_the_headroom(tmp_path):
    led = ledger(tmp_path / "l.db", monthly_usd=1.0)
    chk = led.check(0.7)
    led.release(chk.reservation_id)
    assert led.remaining() == pytest.approx(1.0)


def test_alerts_fire_once_per_threshold_through_hook_and_log(tmp_path, caplog):
    rec = Recorder()
    led = ledger(tmp_path / "l.db", pm=plugin_manager(rec), daily_usd=1.0, per_conversation_usd=10.0)
    caplog.set_level(logging.WARNING, logger="agent_router.ledger")
    _spend(led, 0.5, "c1")
    assert rec.alerts == []
    _spend(led, 0.35, "c1")  # 85%: crosses 80%
    _spend(led, 0.05, "c1")  # 90%: nothing new
    assert [(a["budget"], a["threshold"]) for a in rec.alerts] == [("daily", 0.8)]
    _spend(led, 0.2, "c1")  # 110%: crosses 100%
    assert [(a["budget"], a["threshold"]) for a in rec.alerts] == [("daily", 0.8), ("daily", 1.0)]
    assert rec.alerts[1]["spent_usd"] == pytest.approx(1.1) and rec.alerts[1]["limit_usd"] == 1.0
    assert caplog.text.count("budget alert: daily budget") == 2
    # A second process opening the same ledger does not fire them again.
    rec2 = Recorder()
    again = ledger(tmp_path / "l.db", pm=plugin_manager(rec2), daily_usd=1.0, per_conversation_usd=10.0)
    _spend(again, 0.01, "c1")
    assert rec2.alerts == []


def _agent(path: str, seed: int, out) -> None:
    rnd = random.Random(seed)
    led = Ledger(path, settings(daily_usd=0.5, on_exceed="block"), pm=plugin_manager())
    spent = 0.0
    while True:
        chk = led.check(0.01, f"agent{seed}")
        if not chk.allowed:
            break
        cost = rnd.uniform(0.005, 0.015)  # the real cost misses the estimate either way
        time.sleep(rnd.uniform(0.001, 0.005))  # the call itself
        led.record("gpt-4.1", Usage(input=1, output=1), cost_usd=cost, reservation_id=chk.reservation_id)
        spent += cost
    out.put(spent)
    led.close()


def test_budget_shared_by_eight_concurrent_agents_holds(tmp_path):
    path = str(tmp_path / "l.db")
    ledger(tmp_path / "l.db").close()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_agent, args=(path, s, q)) for s in range(8)]
    for p in procs:
        p.start()
    spent = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    led = ledger(tmp_path / "l.db")
    total = led.store.read("SELECT SUM(cost_usd) AS s FROM calls")[0]["s"]
    assert total == pytest.approx(sum(spent))
    # Never over by more than one call's cost per agent; with reservations, only by each in-flight call's
    # miss of its estimate (at most 0.015 - 0.01). Checking without reserving overshoots that tighter bound.
    assert total <= 0.5 + 8 * (0.015 - 0.01)
    assert total >= 0.5 - 8 * 0.015  # and the budget was really used, not refused early
    assert led.store.count("reservations") == 0


def test_router_downgrades_then_blocks_as_the_budget_runs_out(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=0.10)
    router = Router(led.settings)
    msgs = [{"role": "user", "content": HARD}]
    premium = {"override": {"tier": "premium", "reason": "test"}}
    d, chk = led.route(router, msgs, premium)
    assert d.tier == "premium" and chk.allowed
    led.release(chk.reservation_id)
    _spend(led, 0.095)  # $0.005 left: premium (~$0.03) no longer fits
    d, chk = led.route(router, msgs, {**premium, "conversation_id": "c1"})
    assert d.tier != "premium" and any("budget" in r and "downgraded" in r for r in d.reasons)
    assert d.estimated_cost_usd <= 0.005 and chk.allowed
    led.record(
        d.model_name,
        Usage(input=d.estimated_input_tokens, output=d.estimated_output_tokens),
        decision=d,
        reservation_id=chk.reservation_id,
        conversation_id="c1",
    )
    _spend(led, max(0.0, (led.remaining() or 0) - 0.0001))  # leave a hundredth of a cent
    with pytest.raises(BudgetBlocked):
        led.route(router, msgs, {"conversation_id": "c1"})
    blocking = ledger(tmp_path / "b.db", daily_usd=0.10, on_exceed="block")
    _spend(blocking, 0.095)
    with pytest.raises(BudgetBlocked, match="exceeds the remaining budget"):
        blocking.route(Router(blocking.settings), msgs, premium)
    ctx = blocking.budget_context("c9")
    assert ctx["budget_remaining_usd"] == pytest.approx(0.005) and ctx["on_exceed"] == "block"


def test_running_spend_matches_the_calls_it_sums(tmp_path):
    from datetime import UTC, datetime, timedelta

    led = ledger(tmp_path / "l.db")
    start = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)  # the batch straddles a day and a month boundary
    led.record_many(
        [
            {
                "model": "gpt-4.1",
                "usage": Usage(input=1000 * h, output=10),
                "time": start + timedelta(hours=h),
                "conversation_id": ("a", "b", None)[h % 3],
            }
            for h in range(6)
        ]
    )
    led.record("gpt-4.1-mini", Usage(input=5000, output=100), conversation_id="a", time=start)
    led.record("gpt-4.1-mini", Usage(input=5000, output=100))
    expected: dict[str, float] = {}
    for r in led.store.read("SELECT time, conversation_id, cost_usd FROM calls"):
        keys = [f"day:{r['time'][:10]}", f"month:{r['time'][:7]}"]
        keys += [f"conversation:{r['conversation_id']}"] if r["conversation_id"] else []
        for k in keys:
            expected[k] = expected.get(k, 0.0) + r["cost_usd"]
    got = {r["key"]: r["usd"] for r in led.store.read("SELECT key, usd FROM spend")}
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(v) for k, v in expected.items())
    assert {"day:2026-10-31", "day:2026-11-01", "month:2026-10", "month:2026-11"} <= got.keys()
