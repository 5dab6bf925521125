"""The ledger: schema and migrations, recording, safety (locks, spool, secrets), hooks and feedback."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time

import pytest
import sqlite_utils

from agent_router import hookspecs
from agent_router.ledger import Ledger, LedgerError
from agent_router.ledger.migrations import sqlite as mig
from agent_router.router import Router
from agent_router.usage import Usage

from .ledger_fixtures import (
    ANTHROPIC_RESPONSE,
    GEMINI_RESPONSE,
    OPENAI_RESPONSE,
    Recorder,
    ledger,
    list_cost,
    plugin_manager,
    settings,
)

# -- schema and migrations ----------------------------------------------------------------------------------


def test_blank_database_gets_every_migration_and_wal(tmp_path):
    led = ledger(tmp_path / "l.db")
    db = led.store.db
    assert {"calls", "feedback", "spend", "reservations", "budget_alerts", "_migrations"} <= set(
        db.table_names()
    )
    assert mig.applied(db) == {fn.__name__ for fn in mig.MIGRATIONS}
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {c.name for c in db["calls"].columns}
    for c in (
        "conversation_id",
        "agent_id",
        "kind",
        "tool",
        "task_type",
        "tier",
        "requested_model",
        "model",
        "provider",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "token_source",
        "cost_usd",
        "price_source",
        "latency_ms",
        "outcome",
        "fallback_of",
        "reasons",
        "tokens_saved",
        "saved_usd",
    ):
        assert c in cols
    assert {"calls_uid", "calls_time", "calls_conversation"} <= {i.name for i in db["calls"].indexes}


def test_older_database_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    mig.migrate(db, upto="m002_report_indexes")  # a ledger written before savings, feedback and budgets
    db["calls"].insert(
        {
            "uid": "u1",
            "time": "2026-01-02T03:04:05.000000+00:00",
            "kind": "chat",
            "model": "gpt-4.1-mini",
            "input_tokens": 10,
            "output_tokens": 5,
            "cost_usd": 0.25,
            "outcome": "ok",
        }
    )
    db.close()
    led = ledger(path)
    assert mig.pending(led.store.db) == []
    assert led.store.spent("day:2026-01-02") == 0.25  # budgets see the spend recorded before the upgrade
    rows = led.store.read("SELECT uid, cost_usd, tokens_saved, saved_usd FROM calls")
    assert rows == [{"uid": "u1", "cost_usd": 0.25, "tokens_saved": 0, "saved_usd": 0.0}]
    assert led.add_feedback(1, False, "implicit", "retry") == 1
    assert [o["good"] for o in led.outcomes()] == [False]


def test_schema_is_documented_from_the_migrations(tmp_path):
    led = ledger(tmp_path / "l.db")
    doc = mig.schema_markdown(led.store.db)
    for table in ("calls", "feedback", "reservations", "budget_alerts"):
        for col in led.store.db[table].columns:
            line = next(ln for ln in doc.splitlines() if ln.startswith(f"| {col.name} |"))
            assert not line.endswith("|  |"), f"{table}.{col.name} has no description"
    for fn in mig.MIGRATIONS:
        assert fn.__name__ in doc and fn.__doc__


def test_corrupt_or_unusable_paths_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=r"bad\.db: the ledger file is corrupt"):
        Ledger(bad)
    assert bad.read_bytes().startswith(b"this is not sqlite")  # nothing overwritten
    with pytest.raises(LedgerError, match="is a directory"):
        Ledger(tmp_path)


# -- recording ----------------------------------------------------------------------------------------------


def test_record_from_router_decision_and_provider_payloads(tmp_path):
    rec = Recorder()
    led = ledger(tmp_path / "l.db", pm=plugin_manager(rec))
    d = Router(led.settings).route([{"role": "user", "content": "hi there"}])
    a = led.record(
        "gpt-4.1-mini-2025-04-14",
        OPENAI_RESPONSE,
        provider="openai",
        decision=d,
        conversation_id="c1",
        agent_id="0",
        latency_ms=812.5,
    )
    b = led.record(
        "claude-sonnet-4-5",
        ANTHROPIC_RESPONSE,
        kind="summary",
        conversation_id="c1",
        fallback_of=a,
        outcome="ok",
    )
    c = led.record("gemini-2.5-flash", GEMINI_RESPONSE, kind="tool", tool="search", conversation_id="c2")
    assert (a, b, c) == (1, 2, 3)
    rows = {r["id"]: r for r in led.store.read("SELECT * FROM calls")}
    assert rows[1]["requested_model"] == d.model and rows[1]["tier"] == d.tier
    assert json.loads(rows[1]["reasons"]) == d.reasons
    assert rows[1]["cost_usd"] == pytest.approx(list_cost("gpt-4.1-mini", 4000, 8000, 0, 900), rel=0.01)
    assert rows[2]["cost_usd"] == pytest.approx(
        list_cost("claude-sonnet-4-5", 1500, 20000, 4000, 700), rel=0.01
    )
    assert rows[2]["fallback_of"] == 1 and rows[2]["tier"] == "premium" and rows[2]["provider"] == "anthropic"
    assert rows[3]["cost_usd"] == pytest.approx(list_cost("gemini-2.5-flash", 4000, 6000, 0, 1500), rel=0.01)
    assert rows[3]["reasoning_tokens"] == 1100 and rows[3]["tool"] == "search"
    assert [r["id"] for r in rec.usage] == [1, 2, 3]
    assert rec.usage[2]["cost_usd"] == rows[3]["cost_usd"]


def test_counted_usage_and_errors_are_recorded(tmp_path):
    led = ledger(tmp_path / "l.db")
    i = led.record(
        "gpt-4.1-nano", Usage(input=300, output=0, source="counted"), outcome="timeout", latency_ms=30000
    )
    row = led.store.read("SELECT token_source, outcome, cost_usd FROM calls WHERE id = ?", [i])[0]
    assert row == {
        "token_source": "counted",
        "outcome": "timeout",
        "cost_usd": pytest.approx(300 * 0.10 / 1e6),
    }
    with pytest.raises(LedgerError, match="kind must be one of"):
        led.record("gpt-4.1-nano", kind="chatty")
    with pytest.raises(LedgerError, match="prompt_tokens"):
        led.record("gpt-4.1-nano", {"usage": {"prompt_tokens": -3}})
    assert led.store.count() == 1


def test_prompts_and_keys_never_stored_by_default(tmp_path, monkeypatch):
    key = "sk-proj-abcdefghijklmnop1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    path = tmp_path / "l.db"
    led = ledger(path)
    msgs = [{"role": "user", "content": "my secret plan"}]
    led.record(
        "gpt-4.1-nano",
        Usage(input=5, output=5),
        prompt=msgs,
        outcome=f"auth: bad key {key}",
        reasons=[f"Authorization: Bearer {key}"],
    )
    row = led.store.read("SELECT prompt, outcome, reasons FROM calls")[0]
    assert row["prompt"] is None and key not in row["outcome"] and key not in row["reasons"]
    led.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert key.encode() not in stored and b"my secret plan" not in stored
    s = settings()
    s.ledger.store_prompts = True
    led2 = Ledger(tmp_path / "p.db", s, pm=plugin_manager())
    led2.record("gpt-4.1-nano", Usage(input=5, output=5), prompt=[{"role": "user", "content": f"x {key}"}])
    assert led2.store.read("SELECT prompt FROM calls")[0]["prompt"] == json.dumps(
        [{"role": "user", "content": "x [redacted]"}]
    )


# -- concurrency and safety ---------------------------------------------------------------------------------


def _writer(path: str, n: int, worker: int) -> None:
    led = Ledger(path, settings(), pm=plugin_manager())
    for i in range(n):
        assert (
            led.record("gpt-4.1-nano", Usage(input=100 + i, output=10), conversation_id=f"w{worker}")
            is not None
        )
    led.close()


def test_eight_processes_times_500_writes_lose_nothing(tmp_path):
    path = str(tmp_path / "l.db")  # a fresh file: the processes also race to migrate it
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 500, w)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    led = ledger(tmp_path / "l.db")
    assert led.store.count() == 4000
    per = led.store.read("SELECT conversation_id, COUNT(*) AS n FROM calls GROUP BY conversation_id")
    assert sorted(r["n"] for r in per) == [500] * 8
    assert not led.spool_path.exists() or led.spool_path.stat().st_size == 0


def test_threads_share_one_ledger(tmp_path):
    led = ledger(tmp_path / "l.db")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(150):
                led.record("gpt-4.1-nano", Usage(input=10, output=1))
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and led.store.count() == 1200


def _lock_db(path, seconds: float, ready: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    ready.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_busy_database_is_retried_not_dropped(tmp_path):
    path = tmp_path / "l.db"
    led = Ledger(path, settings(), pm=plugin_manager(), busy_timeout_ms=20, retries=12)
    ready = threading.Event()
    t = threading.Thread(target=_lock_db, args=(path, 0.3, ready))
    t.start()
    ready.wait()
    i = led.record("gpt-4.1-nano", Usage(input=1, output=1))
    t.join()
    assert i == 1 and led.store.count() == 1


def test_write_that_finally_fails_is_spooled_and_replayed(tmp_path, caplog):
    path = tmp_path / "l.db"
    led = Ledger(path, settings(), pm=plugin_manager(), busy_timeout_ms=10, retries=1)
    ready = threading.Event()
    t = threading.Thread(target=_lock_db, args=(path, 1.0, ready))
    t.start()
    ready.wait()
    assert led.record("gpt-4.1-nano", Usage(input=7, output=3), conversation_id="spooled") is None
    t.join()
    assert "kept in" in caplog.text and led.spool_path.exists()
    assert len(led.spool_path.read_text().splitlines()) == 1
    led.close()
    again = ledger(path)  # the next open replays the spool, once
    assert again.store.read("SELECT conversation_id, input_tokens FROM calls") == [
        {"conversation_id": "spooled", "input_tokens": 7}
    ]
    assert again.spool_path.stat().st_size == 0
    assert ledger(path).store.count() == 1


# -- feedback -----------------------------------------------------------------------------------------------


def test_feedback_and_outcomes(tmp_path):
    led = ledger(tmp_path / "l.db")
    d = Router(led.settings).route([{"role": "user", "content": "write a python function to parse csv"}])
    a = led.record(d.model_name, Usage(input=100, output=50), decision=d)
    b = led.record("gpt-4.1", Usage(input=100, output=50), tier="premium", task_type="math")
    led.add_feedback(a, False, "implicit", "switch_model")
    led.add_feedback(b, True)
    out = list(led.outcomes())
    assert out[0] | {} == out[0]
    assert [(o["call_id"], o["task_type"], o["model"], o["tier"], o["good"]) for o in out] == [
        (a, d.analysis.task_type, d.model, d.tier, False),
        (b, "math", "gpt-4.1", "premium", True),
    ]
    assert out[0]["signal"] == "switch_model" and out[1]["source"] == "explicit"
    assert list(led.outcomes(since="2999-01-01")) == []
    with pytest.raises(LedgerError, match="no call with id 42"):
        led.add_feedback(42, True)
    with pytest.raises(LedgerError, match="source must be"):
        led.add_feedback(a, True, "telepathy")


def test_from_settings_default_path_and_ledger_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(tmp_path / "home"))
    led = Ledger.from_settings(settings(), pm=plugin_manager())
    assert led.path == tmp_path / "home" / "ledger.db" and led.path.exists()
    s = settings()
    s.ledger.path = str(tmp_path / "elsewhere" / "costs.db")
    assert Ledger.from_settings(s, pm=plugin_manager()).path == tmp_path / "elsewhere" / "costs.db"


def test_hook_failure_loses_nothing(tmp_path, caplog):
    class Broken:
        @hookspecs.hookimpl
        def on_usage(self, record):
            raise RuntimeError("exporter down")

    led = ledger(tmp_path / "l.db", pm=plugin_manager(Broken()))
    assert led.record("gpt-4.1-nano", Usage(input=1, output=1)) == 1
    assert led.store.count() == 1 and "on_usage failed" in caplog.text


def test_record_many_returns_the_ids_of_its_rows_in_order(tmp_path):
    led = ledger(tmp_path / "l.db")
    led.record("gpt-4.1-nano", Usage(input=1, output=1))
    ids = led.record_many(
        [
            {"model": "gpt-4.1-nano", "usage": Usage(input=i, output=1), "conversation_id": f"b{i}"}
            for i in range(5)
        ]
    )
    got = {r["id"]: r["conversation_id"] for r in led.store.read("SELECT id, conversation_id FROM calls")}
    assert [got[i] for i in ids] == [f"b{i}" for i in range(5)]
