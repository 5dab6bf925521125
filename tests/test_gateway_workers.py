"""`agent-router serve --workers 2` without Redis shares per-key rates, key budgets and provider health between
its workers (a SQLite state file beside the ledger, the ledger itself for budgets). Requests are pinned to a
known worker: each test connection's server side is found among the workers' open sockets (/proc), so a test
that sends to both workers knows it did. Also `SqliteState` itself: two processes on one file."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent_router.providers.state import SharedStateError, SqliteState, open_state, state_path
from agent_router.settings import Settings

from .gateway_fixtures import Gateway, rows, settings_for

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

MASTER = "sk-master-workers-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(gw_upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwworkers")
    s = settings_for(gw_upstream.url, tmp,
                     providers={"failure_threshold": 1, "cooldown_s": 300, "max_retry_wait_s": 0.5})
    s["models"]["p"]["rate_limits"] = {"rpm": 2}  # the provider's limit: beyond it, fail over to `c`
    g = Gateway(s, tmp, env={"AGENT_ROUTER_MASTER_KEY": MASTER}, args=("--workers", "2"))
    yield g
    g.stop()


# --- pinning a connection to a worker ---------------------------------------------------------------------
def _workers(pid: int) -> list[int]:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(kids) == 2:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"expected 2 workers under {pid}, found {kids}")


def _inode(server_port: int, client_port: int) -> str:
    """The inode of the server side of the loopback connection client_port -> server_port."""
    want_local, want_remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want_local and f[2] == want_remote:
            return f[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def _owner(workers: list[int], inode: str) -> int:
    target = f"socket:[{inode}]"
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds {target}")


class Pinned:
    """A keep-alive HTTP connection to the gateway and the worker serving it."""

    def __init__(self, gw: Gateway, workers: list[int]):
        host, port = gw.url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.lock = threading.Lock()
        status, _ = self.call("GET", "/health")
        assert status == 200
        self.worker = _owner(workers, _inode(int(port), self.conn.sock.getsockname()[1]))

    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": "application/json", **(headers or {})}
        if key:
            h["Authorization"] = f"Bearer {key}"
        with self.lock:
            self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
            r = self.conn.getresponse()
            data = r.read()
        return r.status, json.loads(data) if data else None

    def chat(self, key: str, model: str = "utility", conv: str = "w") -> tuple[int, Any]:
        return self.call("POST", "/v1/chat/completions", {"model": model, "messages": HI}, key,
                         {"X-Conversation-Id": conv})


def pinned(gw: Gateway, each: int = 1) -> dict[int, list[Pinned]]:
    """`each` connections to each of the two workers."""
    workers = _workers(gw.proc.pid)
    got: dict[int, list[Pinned]] = {w: [] for w in workers}
    for _ in range(400):
        p = Pinned(gw, workers)
        if len(got[p.worker]) < each:
            got[p.worker].append(p)
        else:
            p.conn.close()
        if all(len(v) >= each for v in got.values()):
            return got
    raise AssertionError(f"connections did not reach both workers: {[len(v) for v in got.values()]}")


def make_key(conn: Pinned, **body: Any) -> str:
    status, out = conn.call("POST", "/api/keys", body, MASTER)
    assert status == 201, out
    return out["key"]


# --- the gateway with two workers -------------------------------------------------------------------------
def test_two_workers_share_the_state_file_beside_the_ledger(gw):
    assert f"workers=2 (limits and health shared through {gw.db}.state)" in gw.output()
    assert Path(f"{gw.db}.state").exists()


def test_key_rpm_is_one_limit_across_both_workers(gw):
    a, b = pinned(gw).values()
    key = make_key(a[0], name="rpm4", rpm=4)
    served: dict[int, list[int]] = {}
    for i in range(8):  # alternating workers: each would admit 4 of its own if they counted apart
        conn = (a if i % 2 == 0 else b)[0]
        status, body = conn.chat(key, conv=f"rpm-{i}")
        served.setdefault(status, []).append(conn.worker)
        if status == 429:
            assert body["error"]["code"] == "rate_limit_exceeded"
    assert len(served.get(200, [])) == 4 and len(served.get(429, [])) == 4, served
    assert set(served[200]) == {a[0].worker, b[0].worker}  # admitted by both, counted as one
    assert len(rows(gw.db, 4, where="agent_id = 'rpm4'")) == 4


def test_provider_rpm_is_one_limit_across_both_workers(gw):
    a, b = pinned(gw).values()
    answered = []
    for i in range(6):
        conn = (a if i % 2 == 0 else b)[0]
        status, body = conn.chat(MASTER, model="premium", conv=f"prpm-{i}")
        assert status == 200
        answered.append((body["model"], conn.worker))
    assert [m for m, _ in answered] == ["p", "p", "c", "c", "c", "c"], answered  # 2 a minute, not 2 per worker
    assert {w for m, w in answered if m == "p"} == {a[0].worker, b[0].worker}


def test_concurrent_requests_on_a_key_with_budget_for_one_admit_one(gw, gw_upstream):
    conns = pinned(gw, each=3)
    first = next(iter(conns.values()))[0]
    with first.lock:  # the estimate of the same request, from its response header
        first.conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "utility", "messages": HI}),
                           headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
        r = first.conn.getresponse()
        r.read()
    assert r.status == 200
    est = float(r.getheader("X-Agent-Router-Estimated-Cost-Usd"))
    assert est > 0
    # budget for one call of the cheapest model: nothing is left to downgrade to for a second one
    key = make_key(first, name="one-call", budget_usd=est * 1.5)
    gw_upstream.fault("small-model", *["delay:1.5"] * 6)  # the admitted call is still running while the others ask
    try:
        results: list[tuple[int, Any, int]] = []
        go = threading.Barrier(6)

        def send(conn: Pinned, i: int) -> None:
            go.wait()
            status, body = conn.chat(key, conv=f"budget-{i}")
            results.append((status, body, conn.worker))

        threads = [threading.Thread(target=send, args=(c, i))
                   for i, c in enumerate(c for cs in conns.values() for c in cs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        gw_upstream.faults.clear()
    statuses = sorted(s for s, _, _ in results)
    assert statuses == [200, 429, 429, 429, 429, 429], json.dumps(results, indent=1)
    assert all(b["error"]["code"] == "budget_exceeded" for s, b, _ in results if s == 429)
    assert {w for _, _, w in results} == set(conns)  # both workers were asked
    (row,) = rows(gw.db, 1, where="agent_id = 'one-call'")
    time.sleep(0.5)  # the writer's window: any second row would be there by now
    assert len(rows(gw.db, 1, where="agent_id = 'one-call'")) == 1
    # the reservation gave way to the real cost once the row was written
    end = time.monotonic() + 10
    while True:
        _, listed = first.call("GET", "/api/keys", key=MASTER)
        spent = next(k["spent_usd"] for k in listed["keys"] if k["name"] == "one-call")
        if spent == pytest.approx(row["cost_usd"], rel=1e-6) or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert spent == pytest.approx(row["cost_usd"], rel=1e-6)


def test_provider_marked_down_by_one_worker_is_seen_by_the_other(gw, gw_upstream):
    a, b = pinned(gw).values()
    status, health = b[0].call("GET", "/api/health", key=MASTER)
    assert status == 200 and {m["alias"]: m["health"] for m in health["models"]}["u"] == "ok"
    gw_upstream.fault("small-model", "500")
    try:
        status, _ = a[0].chat(MASTER, model="utility", conv="down")  # fails over to `c`; `u` trips (threshold 1)
    finally:
        gw_upstream.faults.clear()
    assert status == 200
    _, health = b[0].call("GET", "/api/health", key=MASTER)
    u = next(m for m in health["models"] if m["alias"] == "u")
    assert u["health"] == "cooling down" and u["cooling_until"] > time.time() + 200
    _, models = b[0].call("GET", "/api/models", key=MASTER)
    assert next(m for m in models["models"] if m["alias"] == "u")["health"] == "cooling down"


def test_a_worker_that_dies_is_named_in_the_log_and_replaced(gw):
    """Last of the tests on `gw`: one worker is killed; serve says which and how, and starts another in its
    place, which serves with the same shared state (the key made through the old worker works on it)."""
    dead, alive = _workers(gw.proc.pid)
    before = {w: p for w, (p,) in pinned(gw).items()}
    key = make_key(before[alive], name="survivor")
    os.kill(dead, 9)
    end = time.monotonic() + 20
    while (m := re.search(rf"gateway worker {dead} was killed by signal 9; worker (\d+) started in its place",
                          gw.output())) is None:
        assert time.monotonic() < end, gw.output()[-2000:]
        time.sleep(0.05)
    new = int(m.group(1))
    assert sorted(_workers(gw.proc.pid)) == sorted([alive, new])
    conns = pinned(gw)
    for w in (alive, new):
        status, out = conns[w][0].chat(key)
        assert status == 200 and out["choices"][0]["message"]["content"], (w, out)


def test_a_bad_state_file_stops_serve_with_one_line(gw_upstream, tmp_path):
    bad = tmp_path / "not-a-db.state"
    bad.write_text("x" * 5000)
    s = settings_for(gw_upstream.url, tmp_path, state={"path": str(bad)})
    f = tmp_path / "s.json"
    f.write_text(json.dumps(s))
    r = subprocess.run([sys.executable, "-m", "agent_router", "serve", "--settings", str(f), "--port", "0",
                        "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert f"shared state file {bad}: cannot open (file is not a database)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_workers_that_cannot_start_stop_serve_with_an_error_not_a_restart_loop(gw_upstream, tmp_path):
    """The ledger path is a folder: the state file beside it opens (in serve's own process) but each worker's
    ledger does not. Each worker says why in one line, is not restarted, and serve exits with an error."""
    (tmp_path / "ledger.db").mkdir()
    f = tmp_path / "s.json"
    f.write_text(json.dumps(settings_for(gw_upstream.url, tmp_path)))
    r = subprocess.run([sys.executable, "-m", "agent_router", "serve", "--settings", str(f), "--port", "0",
                        "--workers", "2"], capture_output=True, text=True, timeout=60)
    err = r.stdout + r.stderr
    assert r.returncode != 0, err
    assert err.count(f"gateway worker failed: {tmp_path / 'ledger.db'}: is a directory") == 2, err
    assert err.count("stopped on the error above") == 2 and "started in its place" not in err, err
    assert "every gateway worker died (2 started)" in err and "Traceback" not in err, err


# --- SqliteState on a file --------------------------------------------------------------------------------
_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from agent_router.providers.state import SqliteState
    path, go, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    s = SqliteState(path, timeout_s=10)
    while not go.exists():
        time.sleep(0.001)
    last = 0.0
    admitted = 0
    for _ in range(n):
        last = s.incr("hits", 1, ttl_s=600)
        admitted += s.acquire("quota", 150, 600).allowed
    print(last, admitted, s.shared)
""")


def test_two_processes_incrementing_and_admitting_on_one_file(tmp_path):
    path, go = tmp_path / "shared.state", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(go), "200"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [out.split() for out, _ in outs]
    assert all(r[2] == "True" for r in results)  # no fallback to per-process state happened
    assert SqliteState(path).get("hits") == 400.0  # no increment lost
    assert sum(int(r[1]) for r in results) == 150  # one limit for both: exactly 150 admitted of 400 asked
    assert max(float(r[0]) for r in results) == 400.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def _open_at_once(path: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        SqliteState(path, timeout_s=10).close()
        out.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test, which names it
        out.put(f"{type(e).__name__}: {e}")


def test_eight_processes_opening_one_new_state_file_at_once_all_open_it(tmp_path):
    """Processes sharing limits through one new file (`state.backend: sqlite`) all open it. Switching a new file
    to WAL mode is a race whose loser SQLite fails at once rather than waiting: the opening is retried. Forked
    processes released by one barrier, on five new files."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    got = []
    for trial in range(5):
        barrier, out = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(str(tmp_path / f"{trial}.state"), barrier, out))
                 for _ in range(8)]
        for p in procs:
            p.start()
        got += [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
    assert got == ["ok"] * 40, [g for g in got if g != "ok"]


def test_sqlite_state_expires_purges_and_admits_like_memory(tmp_path):
    clock = Clock()
    s = SqliteState(tmp_path / "s.state", clock=clock)
    assert s.shared and s.get("a") is None
    assert s.incr("a", 2, ttl_s=10) == 2 and s.incr("a", 1, ttl_s=99) == 3  # the ttl applies when new
    s.set("b", 7.5)
    clock.t += 10
    assert s.get("a") is None and s.get("b") == 7.5 and s.incr("a", 1, ttl_s=5) == 1  # expired: new again
    s.delete("b")
    assert s.get("b") is None
    got = [s.acquire("k", 3, 60, 1) for _ in range(4)]
    assert [a.allowed for a in got] == [True, True, True, False] and got[3].used == 3
    assert got[3].retry_after_s == pytest.approx(60)
    clock.t += 30
    assert not s.acquire("k", 3, 60, 1).allowed
    clock.t += 30.001
    assert s.acquire("k", 3, 60, 2).allowed  # the first three left the window
    assert s.acquire("big", 5, 60, 9).allowed and not s.acquire("big", 5, 60, 1).allowed  # alone, as memory does
    for i in range(500):  # per-minute counters with a time to live, as the limiter writes them
        s.incr(f"rl:m:rpm:{i}", 1, ttl_s=150)
        s.acquire(f"w{i}", 10, 60)
    clock.t += 200
    s.set("c", 1)  # any write after the purge interval drops what expired
    db = sqlite3.connect(tmp_path / "s.state")
    counts = [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("kv", "admissions", "sums")]
    db.close()
    assert counts == [1, 0, 0]  # only `c` is left: the file holds what is live


def test_a_locked_file_falls_back_to_process_state_with_one_warning(tmp_path, caplog):
    path = tmp_path / "locked.state"
    s = SqliteState(path, timeout_s=0.05, retry_after_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.WARNING, logger="agent_router.providers.state"):
        assert s.acquire("k", 1, 60).allowed and not s.shared  # decided by this process alone
        assert not s.acquire("k", 1, 60).allowed  # the fallback counts too
        s.incr("n", 1)
        other.execute("ROLLBACK")
        other.close()
        time.sleep(0.25)
        assert s.acquire("k2", 1, 60).allowed and s.shared
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m and str(path) in m and "locked" in m for m in msgs) == 1, msgs
    assert sum("answers again" in m for m in msgs) == 1


def test_open_state_chooses_the_file_the_settings_ask_for(tmp_path):
    base = {"ledger": {"path": str(tmp_path / "l.db")}}
    assert not open_state(Settings.model_validate(base)).shared  # auto, one process: memory
    st = open_state(Settings.model_validate({**base, "state": {"backend": "sqlite"}}))
    assert isinstance(st, SqliteState) and st.where == str(tmp_path / "l.db.state")
    st.close()
    own = Settings.model_validate({**base, "state": {"backend": "sqlite", "path": str(tmp_path / "x" / "s.db")}})
    assert state_path(own) == tmp_path / "x" / "s.db"
    with pytest.raises(SharedStateError, match=r"shared state file .*: cannot open"):
        SqliteState(tmp_path / "l.db.state" / "nested")  # a file where a folder should be
