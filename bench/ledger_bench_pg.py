"""The ledger on SQLite and on PostgreSQL, side by side: throughput and budget-check latency.

    python bench/ledger_bench_pg.py [--rows 3000] [--batch 20000] [--checks 1000] [--procs 4]

PostgreSQL: the server in $AGENT_ROUTER_BENCH_PG_DSN if set, else a throwaway one started on 127.0.0.1
from the Debian package (as the tests do; fsync off, so it measures the ledger and the protocol, not a
disk). Both columns run the same workloads in the same run:
  - Ledger.record single-row commits/s (each its own transaction), one process;
  - the same from --procs processes at once (rows/s across all of them);
  - Ledger.record_many rows/s (batches of 5,000);
  - Ledger.check p50 / p99 ms with daily, monthly and per-conversation budgets (reserve + commit),
    alone and while --procs other processes record calls.
The ratio column is PostgreSQL / SQLite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pluggy  # noqa: E402

from agent_router import hookspecs  # noqa: E402
from agent_router.ledger import Ledger  # noqa: E402
from agent_router.settings import Settings  # noqa: E402
from agent_router.usage import Usage  # noqa: E402

DSN_ENV = "AGENT_ROUTER_BENCH_PG_DSN"
BUDGETS = {"daily_usd": 1e6, "monthly_usd": 1e7, "per_conversation_usd": 1e5}
U = Usage(input=1200, output=300, cached_input=200)


def _pm() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)  # no plugins: measure the ledger itself
    pm.add_hookspecs(hookspecs)
    return pm


def open_ledger(backend: str, where: str, budgets: bool = False) -> Ledger:
    data: dict[str, Any] = {"budgets": BUDGETS} if budgets else {}
    if backend == "postgresql":
        os.environ[DSN_ENV] = where
        data["ledger"] = {"backend": "postgresql", "dsn_env": DSN_ENV}
        return Ledger.from_settings(Settings.model_validate(data), pm=_pm())
    return Ledger(Path(where), Settings.model_validate(data), pm=_pm())


def _writer(backend: str, where: str, n: int, start: Any, out: Any) -> None:
    led = open_ledger(backend, where)
    led.record("gpt-4.1-mini", U)  # warm the price cache
    start.wait()
    t0 = time.perf_counter()
    for i in range(n):
        led.record("gpt-4.1-mini", U, conversation_id=f"p{os.getpid()}-{i % 20}", latency_ms=420.0)
    out.put(time.perf_counter() - t0)
    led.close()


def _background(backend: str, where: str, stop: Any) -> None:
    led = open_ledger(backend, where)
    while not stop.is_set():
        led.record("gpt-4.1-mini", U, conversation_id=f"bg{os.getpid()}", latency_ms=420.0)
    led.close()


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def checks(led: Ledger, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        chk = led.check(0.002, f"c{i % 50}")
        times.append(time.perf_counter() - t0)
        if chk.reservation_id:
            led.release(chk.reservation_id)  # keep the reservations table as a live system has it
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.99 * (len(times) - 1))] * 1e3


def run(backend: str, where: str, args: argparse.Namespace) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    out: dict[str, float] = {}
    led = open_ledger(backend, where)
    led.record("gpt-4.1-mini", U)
    wall = timed(lambda: [led.record("gpt-4.1-mini", U, conversation_id=f"c{i % 50}", latency_ms=420.0)
                          for i in range(args.rows)])
    out["single"] = args.rows / wall
    rows = [dict(model="gpt-4.1-nano", usage=U, conversation_id=f"c{i % 50}", latency_ms=300.0)
            for i in range(args.batch)]
    wall = timed(lambda: [led.record_many(rows[i: i + 5000]) for i in range(0, len(rows), 5000)])
    out["batch"] = args.batch / wall
    led.close()

    start, q = ctx.Event(), ctx.Queue()
    per = max(1, args.rows // args.procs)
    procs = [ctx.Process(target=_writer, args=(backend, where, per, start, q)) for _ in range(args.procs)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let them connect and warm up
    t0 = time.perf_counter()
    start.set()
    for _ in procs:
        q.get(timeout=600)
    out["multi"] = per * args.procs / (time.perf_counter() - t0)
    for p in procs:
        p.join()

    led = open_ledger(backend, where, budgets=True)
    out["check_p50"], out["check_p99"] = checks(led, args.checks)
    stop = ctx.Event()
    bg = [ctx.Process(target=_background, args=(backend, where, stop)) for _ in range(args.procs)]
    for p in bg:
        p.start()
    time.sleep(1.0)
    out["busy_p50"], out["busy_p99"] = checks(led, args.checks)
    stop.set()
    for p in bg:
        p.join()
    led.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000, help="single-row commits (also split across --procs)")
    ap.add_argument("--batch", type=int, default=20000, help="rows inserted by record_many")
    ap.add_argument("--checks", type=int, default=1000, help="budget checks timed (each scenario)")
    ap.add_argument("--procs", type=int, default=4, help="concurrent writer processes")
    args = ap.parse_args()

    server = None
    dsn = os.environ.get(DSN_ENV)
    with tempfile.TemporaryDirectory() as d:
        if not dsn:
            sys.path.insert(0, str(ROOT / "tests"))
            from scale_fixtures import PostgresServer

            server = PostgresServer().start()
            dsn = server.create_database("bench")
        try:
            lite = run("sqlite", str(Path(d) / "ledger.db"), args)
            pg = run("postgresql", dsn, args)
        finally:
            if server is not None:
                server.cleanup()

    print(f"{'':40} {'SQLite':>12} {'PostgreSQL':>12} {'PG/SQLite':>10}")
    lines = [
        ("Ledger.record single-row commits/s", "single", "{:,.0f}"),
        (f"  from {args.procs} processes at once, rows/s", "multi", "{:,.0f}"),
        ("Ledger.record_many rows/s", "batch", "{:,.0f}"),
        ("Ledger.check p50 ms", "check_p50", "{:.3f}"),
        ("Ledger.check p99 ms", "check_p99", "{:.3f}"),
        (f"  p50 ms while {args.procs} processes write", "busy_p50", "{:.3f}"),
        (f"  p99 ms while {args.procs} processes write", "busy_p99", "{:.3f}"),
    ]
    for label, key, fmt in lines:
        a, b = fmt.format(lite[key]), fmt.format(pg[key])
        print(f"{label:40} {a:>12} {b:>12} {pg[key] / lite[key]:>9.2f}x")
    print(f"(PostgreSQL: {'throwaway local server, fsync off' if server else 'server from $' + DSN_ENV}; "
          f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
