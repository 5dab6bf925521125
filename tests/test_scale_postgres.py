"""The ledger on a real PostgreSQL server: same schema, same reports and records as SQLite; many processes
writing and spending one budget; migrate, copy, and what happens when a server goes away."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from .ledger_fixtures import ANTHROPIC_RESPONSE, OPENAI_RESPONSE, Recorder, plugin_manager
from .scale_fixtures import (
    free_port,
    run_workers,
)

# Skipped without psycopg, found without importing it: the other workers' collection does not pay for its import.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("psycopg") is None,
                                reason="psycopg not installed: pip install -e '.[postgres]'")


def connect(dsn: str, **kwargs):
    import psycopg

    return psycopg.connect(dsn, **kwargs)


from agent_router.cli import cli  # noqa: E402
from agent_router.ledger import BY_CHOICES, Ledger, LedgerError, costs  # noqa: E402
from agent_router.ledger.migrations.sqlite import MIGRATIONS  # noqa: E402
from agent_router.ledger.stores.postgresql import PostgresStore  # noqa: E402
from agent_router.settings import parse  # noqa: E402

ENV = "AR_TEST_PG_DSN"


def pg_settings(monkeypatch, dsn: str, **extra):
    monkeypatch.setenv(ENV, dsn)
    return parse({"ledger": {"backend": "postgresql", "dsn_env": ENV}, **extra})


def settings_file(tmp_path: Path, data: dict) -> str:
    p = tmp_path / "settings.json"
    p.write_text(json.dumps(data))
    return str(p)


# --- same schema, same records, same reports ----------------------------------------------------------------
def _norm_type(t: str) -> str:
    t = t.lower()
    return {"integer": "int", "bigint": "int", "text": "text", "real": "float",
            "double precision": "float"}[t]


def _norm_default(d: str | None) -> str | None:
    if d is None:
        return None
    return d.split("::")[0].strip("'")


def test_postgres_schema_matches_sqlite_migration_for_migration(pg_dsn, tmp_path) -> None:
    lite = sqlite3.connect(tmp_path / "l.db")
    Ledger(tmp_path / "l.db", parse({}), pm=plugin_manager()).close()
    store = PostgresStore(pg_dsn)
    names = [fn.__name__ for fn in MIGRATIONS]
    assert store.applied() == names and store.pending() == []
    assert [r[0] for r in lite.execute("SELECT name FROM _migrations ORDER BY rowid")] == names
    for table in ("calls", "feedback", "reservations", "budget_alerts"):
        want = [(r[1], _norm_type(r[2]), bool(r[3]) or bool(r[5]), _norm_default(r[4]))
                for r in lite.execute(f"PRAGMA table_info({table})")]
        got = [(r["column_name"], _norm_type(r["data_type"]), r["is_nullable"] == "NO",
                _norm_default(r["column_default"]))
               for r in store.read("SELECT column_name, data_type, is_nullable, column_default"
                                   " FROM information_schema.columns WHERE table_name = %s"
                                   " ORDER BY ordinal_position", [table])]
        assert got == want, table
        lite_idx = {r[1] for r in lite.execute(f"PRAGMA index_list({table})")
                    if not r[1].startswith("sqlite_")}
        pg_idx = {r["indexname"] for r in store.read("SELECT indexname FROM pg_indexes WHERE tablename = %s",
                                                     [table]) if not r["indexname"].endswith("_pkey")}
        assert pg_idx == lite_idx, table
    store.close()


def _record_sample(led: Ledger) -> None:
    """The same calls, at fixed times, into any ledger."""
    a = led.record("gpt-4.1-mini-2025-04-14", OPENAI_RESPONSE, provider="openai", conversation_id="c1",
                   agent_id="0", latency_ms=812.5, task_type="code", time="2026-11-20T10:00:00+00:00")
    led.record("claude-sonnet-4-5", ANTHROPIC_RESPONSE, kind="summary", conversation_id="c1", fallback_of=a,
               outcome="ok", time="2026-11-21T11:00:00+00:00", tokens_saved=500, saved_usd=0.001)
    led.record("gpt-4.1-nano", {"prompt_tokens": 300, "completion_tokens": 0}, provider="openai",
               outcome="timeout", latency_ms=30000, tool="search", time="2026-11-21T12:00:00+00:00")
    led.add_feedback(a, True, "explicit", "cli")
    batch = [dict(model="gpt-4.1-nano", usage={"prompt_tokens": 10 * i, "completion_tokens": i},
                  provider="openai", conversation_id="c2", time=f"2026-11-21T13:00:0{i}+00:00")
             for i in range(3)]
    assert led.record_many(batch) == [a + 3, a + 4, a + 5]


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("id", "uid")}


def test_same_on_usage_records_and_reports_on_both_backends(pg_dsn, tmp_path, monkeypatch) -> None:
    lite_rec, pg_rec = Recorder(), Recorder()
    lite = Ledger(tmp_path / "l.db", parse({}), pm=plugin_manager(lite_rec))
    pg = Ledger.from_settings(pg_settings(monkeypatch, pg_dsn), pm=plugin_manager(pg_rec))
    assert isinstance(pg.store, PostgresStore)
    _record_sample(lite)
    _record_sample(pg)
    assert [_strip(r) for r in pg_rec.usage] == [_strip(r) for r in lite_rec.usage]
    assert [r["id"] for r in pg_rec.usage] == [r["id"] for r in lite_rec.usage] == [1, 2, 3, 4, 5, 6]
    for by in (*BY_CHOICES, None):
        assert costs(pg, by) == costs(lite, by), by
    assert costs(pg, "model", since="2026-11-21") == costs(lite, "model", since="2026-11-21")
    def no_time(rows):
        return [{k: v for k, v in r.items() if k != "time"} for r in rows]

    assert no_time(pg.outcomes()) == no_time(lite.outcomes())
    lite.close()
    pg.close()


def test_cli_migrate_costs_report_and_copy(pg_server, tmp_path, monkeypatch) -> None:
    dsn = pg_server.create_database("cli_copy")
    monkeypatch.setenv(ENV, dsn)
    s = settings_file(tmp_path, {"ledger": {"backend": "postgresql", "dsn_env": ENV}})
    r = CliRunner()
    out = r.invoke(cli, ["migrate", "--settings", s, "--status"])
    assert out.exit_code == 0 and "0 applied; pending: m001_calls" in out.output
    out = r.invoke(cli, ["migrate", "--settings", s])
    assert out.exit_code == 0 and "applied m001_calls" in out.output and "postgres@127.0.0.1" in out.output
    out = r.invoke(cli, ["migrate", "--settings", s])
    assert f"up to date ({len(MIGRATIONS)} migrations)" in out.output
    out = r.invoke(cli, ["ledger", "path", "--settings", s])
    assert out.output.strip() == f"postgresql://postgres@127.0.0.1:{pg_server.port}/cli_copy"
    out = r.invoke(cli, ["ledger", "schema", "--settings", s])
    assert out.exit_code == 0 and "## spend" in out.output and "| uid | TEXT |" in out.output
    # An SQLite ledger with history, copied into the (empty) server: ids kept, then nothing twice.
    lite_path = tmp_path / "old.db"
    lite = Ledger(lite_path, parse({"budgets": {"per_conversation_usd": 0.001}}), pm=plugin_manager())
    _record_sample(lite)
    lite.close()
    out = r.invoke(cli, ["ledger", "copy", "--from", f"sqlite:{lite_path}", "--to", "postgresql",
                         "--settings", s, "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert (got["calls_copied"], got["feedback_copied"], got["ids"]) == (6, 1, "kept")
    assert got["alerts_copied"] >= 1 and "hunter" not in out.output
    again = json.loads(r.invoke(cli, ["ledger", "copy", "--from", f"sqlite:{lite_path}", "--settings", s,
                                      "--json"]).output)
    assert (again["calls_copied"], again["calls_already_there"], again["feedback_copied"]) == (0, 6, 0)
    lite_costs = r.invoke(cli, ["costs", "--by", "day", "--json", "--db", str(lite_path)]).output
    pg_costs = r.invoke(cli, ["costs", "--by", "day", "--json", "--settings", s])
    assert pg_costs.exit_code == 0 and json.loads(pg_costs.output) == json.loads(lite_costs)
    html = tmp_path / "r.html"
    out = r.invoke(cli, ["report", "--html", str(html), "--settings", s])
    assert out.exit_code == 0 and "claude-sonnet-4-5" in html.read_text()
    # New calls after a copy that kept ids get fresh ids, and feedback on a copied call works.
    pg = Ledger.from_settings(parse({"ledger": {"backend": "postgresql", "dsn_env": ENV}}),
                              pm=plugin_manager())
    assert pg.record("gpt-4.1-nano", {"prompt_tokens": 1, "completion_tokens": 1}, provider="openai") == 7
    pg.close()
    out = r.invoke(cli, ["feedback", "2", "bad", "--settings", s])
    assert out.exit_code == 0, out.output
    # A second machine's ledger goes into the now non-empty server: renumbered, fallback_of follows.
    other = tmp_path / "other.db"
    led = Ledger(other, parse({}), pm=plugin_manager())
    _record_sample(led)
    led.close()
    got = json.loads(r.invoke(cli, ["ledger", "copy", "--from", f"sqlite:{other}", "--settings", s,
                                    "--json"]).output)
    assert (got["calls_copied"], got["ids"]) == (6, "renumbered")
    pg = Ledger.from_settings(parse({"ledger": {"backend": "postgresql", "dsn_env": ENV},
                                     "budgets": {"per_conversation_usd": 1.0}}), pm=plugin_manager())
    lite = Ledger(other, parse({"budgets": {"per_conversation_usd": 1.0}}), pm=plugin_manager())
    # Copied calls count against the shared budgets: c1's spend from both copied ledgers.
    assert 1.0 - pg.remaining("c1") == pytest.approx(2 * (1.0 - lite.remaining("c1")))
    pg.close()
    lite.close()
    with connect(dsn) as c:
        rows = c.execute("SELECT id, fallback_of FROM calls WHERE id > 7 ORDER BY id").fetchall()
        fb = c.execute("SELECT call_id FROM feedback ORDER BY id").fetchall()
    assert rows == [(8, None), (9, 8), *((i, None) for i in range(10, 14))]
    assert [f[0] for f in fb] == [1, 2, 8]
    out = r.invoke(cli, ["ledger", "copy", "--from", f"sqlite:{tmp_path / 'missing.db'}", "--settings", s])
    assert out.exit_code == 2 and "no SQLite ledger there" in out.output


def test_sqlite_migrate_command(tmp_path) -> None:
    s = settings_file(tmp_path, {"ledger": {"path": str(tmp_path / "l.db")}})
    r = CliRunner()
    assert "applied m001_calls" in r.invoke(cli, ["migrate", "--settings", s]).output
    assert "up to date" in r.invoke(cli, ["migrate", "--settings", s]).output


def test_missing_dsn_variable_and_unreachable_server_are_clear_and_secret_free(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    s = parse({"ledger": {"backend": "postgresql", "dsn_env": ENV}})
    with pytest.raises(LedgerError, match=f"{ENV}, which is not set"):
        Ledger.from_settings(s)
    monkeypatch.setenv(ENV, f"postgresql://agent:hunter2-secret@127.0.0.1:{free_port()}/ledger")
    with pytest.raises(LedgerError) as e:
        Ledger.from_settings(s)
    assert "postgresql://agent@127.0.0.1:" in str(e.value) and "hunter2" not in str(e.value)
    monkeypatch.setenv(ENV, "host=db password=hunter2-secret garbage")
    with pytest.raises(LedgerError, match="not a valid connection string") as e:
        Ledger.from_settings(s)
    assert "hunter2" not in str(e.value)


# --- many processes ----------------------------------------------------------------------------------------
def test_8_processes_x_500_writes_give_exactly_4000_rows(pg_dsn) -> None:
    results = run_workers(8, "write_worker", lambda i: (pg_dsn, i, 500), timeout=120)
    assert results == [500] * 8
    with connect(pg_dsn) as c:
        n, uids, convs = c.execute("SELECT COUNT(*), COUNT(DISTINCT uid), COUNT(DISTINCT conversation_id)"
                                   " FROM calls").fetchone()
        per = c.execute("SELECT conversation_id, COUNT(*), SUM(input_tokens) FROM calls"
                        " GROUP BY 1").fetchall()
        spend = dict(c.execute("SELECT split_part(key, '#', 1), SUM(usd) FROM spend"  # summed over shards
                               " WHERE key LIKE 'conversation:%' GROUP BY 1").fetchall())
        sums = dict(c.execute("SELECT 'conversation:' || conversation_id, SUM(cost_usd) FROM calls"
                              " GROUP BY 1").fetchall())
    assert (n, uids, convs) == (4000, 4000, 8)
    assert all(cnt == 500 and tok == sum(100 + i for i in range(500)) for _, cnt, tok in per)
    # The running spend the budgets read kept up with every concurrent writer.
    assert spend.keys() == sums.keys() and all(spend[k] == pytest.approx(sums[k]) for k in sums)


def test_shared_budget_across_8_processes_is_not_overspent(pg_dsn) -> None:
    limit, estimate = 0.5, 0.01
    # Exact estimates first: the budget is never exceeded at all.
    results = run_workers(8, "budget_worker", lambda i: (pg_dsn, limit, estimate, 1.0, i), timeout=120)
    with connect(pg_dsn) as c:
        total = c.execute("SELECT SUM(cost_usd) FROM calls").fetchone()[0]
        for table in ("calls", "spend", "budget_alerts"):  # a fresh start for the second round
            c.execute(f"DELETE FROM {table}")
        c.commit()
    assert total <= limit + 1e-9
    assert total >= limit - estimate - 1e-9  # and it was spent, not blocked early
    assert sum(1 for r in results if r["calls"]) >= 4  # every process drew on the one budget
    # Real costs up to 50% above the estimate: overspend at most one call per process.
    results = run_workers(8, "budget_worker", lambda i: (pg_dsn, limit, estimate, 1.5, 100 + i), timeout=120)
    with connect(pg_dsn) as c:
        total = c.execute("SELECT SUM(cost_usd) FROM calls").fetchone()[0]
        open_res = c.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
    assert total <= limit + 8 * results[0]["max_cost"]
    assert total == pytest.approx(sum(r["spent"] for r in results))
    assert open_res == 0  # every reservation was settled by its record


def test_reservation_of_a_crashed_agent_is_released_and_a_foreign_one_expires(pg_dsn, monkeypatch) -> None:
    ttl = 1.5
    assert run_workers(1, "crash_worker", lambda i: (pg_dsn, 0.7, ttl), collect=False) == [0]
    budgets = {"daily_usd": 1.0, "on_exceed": "block", "reservation_ttl_s": ttl}
    led = Ledger.from_settings(pg_settings(monkeypatch, pg_dsn, budgets=budgets), pm=plugin_manager())
    # The agent that reserved 0.7 exited without recording: its process is gone from this host, so its hold
    # is released at once, not after the TTL.
    assert led.remaining() == pytest.approx(1.0)
    assert led.check(0.5).allowed
    # A hold made on another machine cannot be judged from here: it lasts until it expires.
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    led.store.write(lambda s: s.add_reservation("elsewhere", None, 0.4, now, "2999-01-01T00:00:00.000000+00:00",
                                                ("other-host/pid:[1]", 1, "boot:1")))
    assert led.check(0.2).action == "block"  # 0.5 (ours, alive) + 0.4 (the other host's) held of 1.0
    assert led.store.count("reservations") == 2
    led.close()


def test_servers_stopped_mid_run_local_limits_no_crash_no_lost_rows(pg_server, redis_server, tmp_path,
                                                                     caplog) -> None:
    dsn = pg_server.create_database("chaos")
    spool_dir = str(tmp_path)
    timeline: list[threading.Thread] = []

    def chaos() -> None:
        time.sleep(0.3)
        redis_server.stop()  # Redis away: limits become per process
        time.sleep(0.6)
        redis_server.start()
        time.sleep(0.3)
        pg_server.stop()  # PostgreSQL away: rows spool beside ledger.path
        time.sleep(0.6)
        pg_server.start()

    def on_start() -> None:
        timeline.append(threading.Thread(target=chaos))
        timeline[0].start()

    try:
        results = run_workers(4, "limited_writer", lambda i: (dsn, redis_server.url, i, 3.0, spool_dir),
                              on_start=on_start, timeout=120)
    finally:
        for t in timeline:
            t.join()
    for r in results:
        assert r["local"] > 0 and r["shared"] > 0
        assert sum("Redis" in m and "unavailable" in m for m in r["warnings"]) == 1, r["warnings"]
    spooled = any("kept in" in m for r in results for m in r["warnings"])
    total = sum(r["calls"] for r in results)
    with connect(dsn) as c:
        before = c.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    if not any(r["pending"] for r in results):
        # Each agent wrote what it had spooled once PostgreSQL answered again, without a restart.
        assert before == total
    os.environ[ENV] = dsn
    caplog.set_level(logging.INFO)
    settings = parse({"ledger": {"backend": "postgresql", "dsn_env": ENV,
                                 "path": os.path.join(spool_dir, "ledger")}})
    led = Ledger.from_settings(settings, pm=plugin_manager())
    with connect(dsn) as c:
        n_rows, n_uids = c.execute("SELECT COUNT(*), COUNT(DISTINCT conversation_id) FROM calls").fetchone()
    led.close()
    assert (n_rows, n_uids) == (total, total)
    assert spooled  # the outage really hit writes, and opening the ledger replayed them


def test_server_away_spools_fast_then_writes_everything_when_back(pg_server, tmp_path, monkeypatch,
                                                                    caplog) -> None:
    dsn = pg_server.create_database("away")
    s = pg_settings(monkeypatch, dsn, ledger={"backend": "postgresql", "dsn_env": ENV,
                                              "path": str(tmp_path / "ledger")})
    led = Ledger.from_settings(s, pm=plugin_manager())
    usage = {"prompt_tokens": 10, "completion_tokens": 1}
    assert led.record("gpt-4.1-nano", usage, provider="openai") == 1
    pg_server.stop()
    try:
        t0 = time.monotonic()
        got = [led.record("gpt-4.1-nano", usage, provider="openai", conversation_id=f"x{i}")
               for i in range(20)]
        spent = time.monotonic() - t0
    finally:
        pg_server.start()
    assert got == [None] * 20  # not written yet: spooled
    assert spent < 3.0  # one failed reconnect, then straight to the spool: the agent is not held up
    assert len((tmp_path / "ledger.spool.jsonl").read_text().splitlines()) == 20
    led.store._down_until = 0.0  # as if `down_s` had passed
    assert led.record("gpt-4.1-nano", usage, provider="openai") == 2  # back: this row, then the spool
    assert led.store.count() == 22 and (tmp_path / "ledger.spool.jsonl").read_text() == ""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "PostgreSQL unreachable" in errors[0].getMessage()  # once per outage
    assert "wrote 20 spooled row(s)" in caplog.text
    led.close()


def test_agents_without_ddl_rights_use_a_migrated_ledger(pg_server, monkeypatch) -> None:
    dsn = pg_server.create_database("rights")
    PostgresStore(dsn).close()  # an operator migrates as the owner (agent-router migrate)
    with connect(dsn, autocommit=True) as c:
        c.execute("CREATE ROLE agent_rw LOGIN")
        c.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        c.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO agent_rw")
        c.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO agent_rw")
    agent_dsn = f"postgresql://agent_rw@127.0.0.1:{pg_server.port}/rights"
    led = Ledger.from_settings(pg_settings(monkeypatch, agent_dsn, budgets={"daily_usd": 1.0}),
                               pm=plugin_manager())
    chk = led.check(0.1)
    assert chk.allowed and led.record("gpt-4.1-nano", None, provider="openai", cost_usd=0.1,
                                      reservation_id=chk.reservation_id) == 1
    assert led.remaining() == pytest.approx(0.9)
    led.close()


def test_a_ledger_inherited_through_fork_gets_its_own_connection(pg_dsn, monkeypatch, tmp_path) -> None:
    # Servers that preload the app, then fork workers, hand each worker the parent's Ledger object.
    import multiprocessing

    from . import scale_workers

    led = Ledger.from_settings(pg_settings(monkeypatch, pg_dsn, ledger={"backend": "postgresql", "dsn_env": ENV,
                                                                        "path": str(tmp_path / "l")}),
                               pm=plugin_manager())
    led.record("gpt-4.1-nano", None, provider="openai")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=scale_workers._forked_child, args=(led, 300, q))
    child.start()
    mine = scale_workers.forked_writes(led, "parent", 300)
    theirs = q.get(timeout=60)
    child.join(30)
    assert child.exitcode == 0
    assert None not in mine and None not in theirs  # nothing spooled: both wrote straight through
    assert led.store.count() == 601 and len(set(mine) | set(theirs)) == 600
    led.close()
