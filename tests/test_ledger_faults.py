"""The ledger when its storage fails or an agent crashes, against real files: a small tmpfs filled up (full disk),
a read-only mount and an immutable file (read-only, even for root), pages overwritten with garbage (corrupt),
and a real agent process killed with SIGKILL while it holds a budget reservation."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.ledger import Ledger, LedgerError, LedgerWriteError, holders
from agent_router.router import Router
from agent_router.usage import Usage

from .ledger_fixtures import Recorder, ledger, plugin_manager, settings

PAID = Usage(input=1000, output=200, source="provider")


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture
def disk(tmp_path):
    """A 512 KB tmpfs, unmounted (and its immutable flags cleared) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can fill up) needs root")
    d = tmp_path / "disk"
    d.mkdir()
    r = _run("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(d))
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    _run("mount", "-o", "remount,rw", str(d))
    _run("chattr", "-R", "-i", str(d))
    _run("umount", "-l", str(d))


def fill(folder: Path) -> Path:
    """Write a filler file until the disk says it is full."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == 28, e  # ENOSPC
    finally:
        os.close(fd)
    return filler


def calls(path: Path) -> list[tuple[str | None, int]]:
    """(conversation_id, input_tokens) of every row, read with plain sqlite3."""
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT conversation_id, input_tokens FROM calls ORDER BY id").fetchall()
    finally:
        con.close()


# -- full disk ----------------------------------------------------------------------------------------------
def test_full_disk_names_the_disk_keeps_the_call_elsewhere_and_writes_it_when_space_returns(disk):
    path = disk / "l.db"
    led = ledger(path)
    assert led.record("gpt-4.1-mini", PAID, conversation_id="before") == 1
    filler = fill(disk)
    with pytest.raises(LedgerWriteError) as ei:
        led.record("gpt-4.1-mini", PAID, conversation_id="paid-1")
    e = ei.value
    msg = str(e)
    assert msg.startswith(f"{path}: the disk holding {disk} is full"), msg
    assert "not a usable SQLite ledger" not in msg and "The call was not recorded" in msg
    assert e.reason == "disk-full" and e.rows == 1
    # The folder is the problem, so the row waits on another path (here the agent-router home).
    assert e.kept_in is not None and disk not in e.kept_in.parents and str(e.kept_in) in msg
    with pytest.raises(LedgerWriteError):
        led.record("gpt-4.1-mini", PAID, conversation_id="paid-2")
    assert [json.loads(line)["conversation_id"] for line in e.kept_in.read_text().splitlines()] == [
        "paid-1",
        "paid-2",
    ]
    filler.unlink()  # space again: the next write also writes what waited
    led.record("gpt-4.1-mini", PAID, conversation_id="after")
    led.close()
    assert sorted(c for c, _ in calls(path)) == ["after", "before", "paid-1", "paid-2"]
    assert e.kept_in.read_text() == ""


def test_full_disk_everywhere_keeps_rows_in_memory_loudly_and_close_says_they_are_lost(disk, monkeypatch, caplog):
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(disk / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(disk / "tmp"))
    (disk / "tmp").mkdir()
    led = ledger(disk / "l.db")
    filler = fill(disk)
    with pytest.raises(LedgerWriteError, match="ONLY IN MEMORY") as ei:
        led.record("gpt-4.1-mini", PAID, conversation_id="held")
    assert ei.value.kept_in is None and ei.value.reason == "disk-full"
    assert any(r.levelno == logging.CRITICAL and "LOST if this process exits" in r.getMessage() for r in caplog.records)
    filler.unlink()
    led.record("gpt-4.1-mini", PAID, conversation_id="next")  # writes the held row first
    assert sorted(c for c, _ in calls(disk / "l.db")) == ["held", "next"]
    filler = fill(disk)
    with pytest.raises(LedgerWriteError):
        led.record("gpt-4.1-mini", PAID, conversation_id="never")
    with pytest.raises(LedgerError, match=r"1 call row\(s\) could not be written .* lost now"):
        led.close()


def test_cli_ask_on_a_full_disk_prints_the_answer_then_one_line_and_exits_2(disk, tmp_path, monkeypatch):
    from .providers_fixtures import GOOD_KEYS, FakeLLM

    monkeypatch.setenv("TEST_KEY", sorted(GOOD_KEYS)[0])
    ledger_path = disk / "ledger.db"
    with FakeLLM() as llm:
        cfg = {
            "models": {"u": {"provider": "openai", "name": "cli-util", "base_url": llm.url + "/v1",
                             "api_key_env": "TEST_KEY", "price": {"input": 1.0, "output": 2.0}}},
            "tiers": {"utility": ["u"], "chat": ["u"], "premium": ["u"]},
            "ledger": {"path": str(ledger_path)},
        }
        settings_path = tmp_path / "settings.json"
        settings_path.write_text(json.dumps(cfg))
        Ledger(ledger_path, pm=plugin_manager()).close()
        # The disk fills while the provider is answering: the call is paid, its row cannot be written.
        llm.fault("cli-util", "delay:0.5")

        def fill_when_asked() -> None:
            while not llm.requests:
                threading.Event().wait(0.01)
            fill(disk)

        t = threading.Thread(target=fill_when_asked)
        t.start()
        r = CliRunner().invoke(cli, ["ask", "hi", "--settings", str(settings_path), "--tier", "utility"])
        t.join()
    assert r.exit_code == 2, r.output
    assert r.stdout.splitlines()[0] == "Hello from cli-util"
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.output and len([x for x in err if "is full" in x]) == 1
    assert f"{ledger_path}: the disk holding {disk} is full" in r.stderr and "kept in" in r.stderr
    (disk / "filler").unlink()
    Ledger(ledger_path, pm=plugin_manager()).close()  # the next open writes the waiting row
    assert len(calls(ledger_path)) == 1


# -- read-only ----------------------------------------------------------------------------------------------
def test_read_only_mount_and_immutable_file_are_named_as_such(disk):
    path = disk / "l.db"
    led = ledger(path)
    led.record("gpt-4.1-mini", PAID)
    led.close()
    r = _run("mount", "-o", "remount,ro", str(disk))
    if r.returncode:
        pytest.skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")
    with pytest.raises(LedgerError, match=rf"{path}: the folder {disk} is read-only \(Read-only file system\)"):
        Ledger(path)
    res = CliRunner().invoke(cli, ["feedback", "1", "good", "--db", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].endswith("make it writable or set ledger.path to a writable folder")
    assert _run("mount", "-o", "remount,rw", str(disk)).returncode == 0
    # The file itself read-only (immutable: root's writes fail too), its folder writable.
    r = _run("chattr", "+i", str(path))
    if r.returncode:
        pytest.skip(f"chattr +i is not supported here: {r.stderr.strip()}")
    with pytest.raises(LedgerError, match=rf"{path}: the file {path} is read-only"):
        Ledger(path).record("gpt-4.1-mini", PAID)


# -- corruption ---------------------------------------------------------------------------------------------
def _corrupt(path: Path) -> None:
    """Overwrite every page after the first (the header and schema) with random bytes."""
    page = int.from_bytes(path.read_bytes()[16:18], "big")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(page)
        f.write(random.Random(7).randbytes(size - page))


def test_corrupt_pages_are_named_and_the_call_waits_beside_until_the_file_is_moved_aside(tmp_path):
    path = tmp_path / "l.db"
    led = ledger(path)
    led.record_many([dict(model="gpt-4.1-mini", usage=PAID, reasons=["x" * 200]) for _ in range(200)])
    led.close()
    led = ledger(path)
    _corrupt(path)
    with pytest.raises(LedgerWriteError) as ei:
        led.record("gpt-4.1-mini", PAID, conversation_id="paid")
    assert str(ei.value).startswith(f"{path}: the ledger file is corrupt") and ei.value.reason == "corrupt"
    assert ei.value.kept_in == led.spool_path  # the folder is fine: the spool beside the file takes it
    with pytest.raises(LedgerError, match="the ledger file is corrupt"):  # reads too: a LedgerError, named
        led.store.read("SELECT COUNT(*), SUM(input_tokens) FROM calls")
    led.close()
    r = CliRunner().invoke(cli, ["costs", "--db", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.output and "l.db: the ledger file is corrupt" in r.output
    path.rename(tmp_path / "l.db.corrupt")  # as the message says: move it aside
    with ledger(path) as fresh:
        assert fresh.store.read("SELECT conversation_id FROM calls") == [{"conversation_id": "paid"}]


def test_replay_is_idempotent_by_uid_even_when_a_line_is_spooled_twice(tmp_path):
    path = tmp_path / "l.db"
    led = ledger(path)
    row = led.build_row("gpt-4.1-mini", PAID, conversation_id="twice")
    led.close()
    spool_file = led.spool_paths()[1]  # a fallback path, as a full disk would leave it
    spool_file.parent.mkdir(parents=True, exist_ok=True)
    spool_file.write_text((json.dumps(row) + "\n") * 2)
    led.spool_path.write_text(json.dumps(row) + "\n")
    with ledger(path) as again:
        assert again.store.count() == 1 and again.store.spent(f"day:{row['time'][:10]}") > 0
        spent = again.store.spent(f"day:{row['time'][:10]}")
    assert spool_file.read_text() == "" and led.spool_path.read_text() == ""
    spool_file.write_text(json.dumps(row) + "\n")
    with ledger(path) as third:
        assert third.store.count() == 1 and third.store.spent(f"day:{row['time'][:10]}") == spent


def test_integrity_errors_become_ledger_errors_naming_the_file(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=1.0)
    now = datetime.now(UTC).isoformat()
    led.store.write(lambda s: s.add_reservation("r1", None, 0.1, now, now))
    with pytest.raises(LedgerError, match=rf"{tmp_path / 'l.db'}: the ledger refused a row \(UNIQUE"):
        led.store.write(lambda s: s.add_reservation("r1", None, 0.1, now, now))
    led.close()


# -- a crashed agent's reservation --------------------------------------------------------------------------
AGENT = textwrap.dedent(
    """
    import sys, time
    from agent_router.ledger import Ledger
    from agent_router.settings import Settings
    s = Settings.model_validate({"budgets": {"daily_usd": 1.0, "on_exceed": "block", "reservation_ttl_s": 3600}})
    led = Ledger(sys.argv[1], s)
    chk = led.check(0.7)
    assert chk.allowed and chk.reservation_id
    print("reserved", flush=True)
    time.sleep(120)
    """
)


def test_reservation_of_a_sigkilled_agent_is_released_at_once_not_after_the_ttl(tmp_path):
    path = tmp_path / "l.db"
    led = ledger(path, daily_usd=1.0, on_exceed="block", reservation_ttl_s=3600)
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout.readline().strip() == "reserved"
        assert led.remaining() == pytest.approx(0.3)  # alive: its hold counts
        assert led.check(0.5).action == "block"
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert led.remaining() == pytest.approx(1.0)  # gone from this host: released, though the TTL is an hour
    chk = led.check(0.5)
    assert chk.allowed and led.store.count("reservations") == 1
    led.close()


def test_a_reused_pid_does_not_keep_a_dead_agents_hold_and_other_hosts_holds_stay(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=1.0, on_exceed="block", reservation_ttl_s=3600)
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    later = "2999-01-01T00:00:00.000000+00:00"
    host, pid, _ = holders.me()
    # This pid is alive, but it is not the process that reserved (another start time): released.
    led.store.write(lambda s: s.add_reservation("reused", None, 0.6, now, later, (host, pid, "boot:123")))
    led.store.write(lambda s: s.add_reservation("remote", None, 0.3, now, later, ("elsewhere/pid:[9]", 1, "x")))
    assert led.remaining() == pytest.approx(0.7)
    assert [r["id"] for r in led.store.read("SELECT id FROM reservations")] == ["remote"]
    led.close()


# -- alerts, routing, feedback ------------------------------------------------------------------------------
def test_alerts_of_two_settings_with_different_limits_on_one_ledger_both_fire(tmp_path):
    path = tmp_path / "l.db"
    small, big = Recorder(), Recorder()
    a = Ledger(path, settings(daily_usd=1.0, alert_thresholds=[0.8]), pm=plugin_manager(small))
    b = Ledger(path, settings(daily_usd=2.0, alert_thresholds=[0.8]), pm=plugin_manager(big))
    a.record("gpt-4.1", PAID, cost_usd=0.9)
    assert [x["limit_usd"] for x in small.alerts] == [1.0]
    b.record("gpt-4.1", PAID, cost_usd=0.8)  # 1.7 of 2.0: crosses b's 80% too
    assert [x["limit_usd"] for x in big.alerts] == [2.0]
    a.record("gpt-4.1", PAID, cost_usd=0.01)
    b.record("gpt-4.1", PAID, cost_usd=0.01)
    assert len(small.alerts) == 1 and len(big.alerts) == 1  # still once per limit
    a.close()
    b.close()


def test_ledger_route_reserves_and_honours_the_per_request_budget(tmp_path):
    msgs = [{"role": "user", "content": "Prove rigorously, step by step, that there are infinitely many primes. " * 20}]
    led = ledger(tmp_path / "a.db", daily_usd=1.0)
    d, chk = led.route(Router(led.settings), msgs, {"conversation_id": "c"})
    assert chk.allowed and chk.reservation_id and led.store.count("reservations") == 1
    led.record(d.model_name, PAID, decision=d, reservation_id=chk.reservation_id)
    assert led.store.count("reservations") == 0
    led.close()
    unlimited = Router(settings()).route(msgs)
    cap = unlimited.estimated_cost_usd / 2
    led = ledger(tmp_path / "b.db", per_request_usd=cap, on_exceed="downgrade")
    d, chk = led.route(Router(led.settings), msgs)
    assert chk.allowed and d.estimated_cost_usd <= cap and d.tier != unlimited.tier
    led.close()


def test_a_nan_estimate_or_cost_is_refused_instead_of_switching_the_budget_off(tmp_path):
    led = ledger(tmp_path / "l.db", daily_usd=1.0, on_exceed="block")
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(LedgerError, match="estimated_cost must be a finite number >= 0"):
            led.check(bad)
        with pytest.raises(LedgerError, match="cost_usd must be a finite number >= 0"):
            led.record("gpt-4.1", PAID, cost_usd=bad)
    led.record("gpt-4.1", PAID, cost_usd=0.95)
    assert led.check(0.1).action == "block" and led.store.count("reservations") == 0
    led.close()


@pytest.mark.parametrize("call_id", ["99999999999999999999", "0", "9223372036854775808"])
def test_cli_feedback_with_an_out_of_range_id_is_one_line_exit_2(tmp_path, call_id):
    path = tmp_path / "l.db"
    with ledger(path) as led:
        led.record("gpt-4.1-mini", PAID)
    r = CliRunner().invoke(cli, ["feedback", call_id, "good", "--db", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines() == [f"error: feedback: no call with id {call_id} in {path}"]
