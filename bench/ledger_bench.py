"""Ledger throughput and budget-check latency on one core.

    python bench/ledger_bench.py [--rows 5000] [--batch 50000]

Prints rows/s for single-row commits through `Ledger.record` (each its own transaction: pricing, hooks and
all), batched inserts through `Ledger.record_many`, and a baseline of bare sqlite3 INSERT+COMMIT in the same
run on the same disk (so the ledger's overhead reads as a ratio), then p50/p99 of `Ledger.check` with daily,
monthly and per-conversation budgets over a ledger already holding the rows written above.
Goals: >= 2,000 single-row commits/s, >= 50,000 batched rows/s.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pluggy  # noqa: E402

from agent_router import hookspecs  # noqa: E402
from agent_router.ledger import Ledger  # noqa: E402
from agent_router.settings import Settings  # noqa: E402
from agent_router.usage import Usage  # noqa: E402


def _pm() -> pluggy.PluginManager:
    # No plugins registered: measures the ledger, not whatever plugins happen to be installed.
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class Timer:
    """Wall and CPU seconds: on a shared machine CPU time is the figure that means 'on one core'."""

    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = max(1e-9, time.process_time() - self.c0)

    def rates(self, n: int) -> str:
        return f"{n / self.wall:>9,.0f} wall, {n / self.cpu:>9,.0f} per CPU-second"


def bare_sqlite(path: Path, n: int) -> Timer:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)")
    with Timer() as t:
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", ("x", i, 0.5))
            conn.execute("COMMIT")
    conn.close()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000, help="single-row commits")
    ap.add_argument("--batch", type=int, default=50000, help="rows inserted by record_many")
    ap.add_argument("--checks", type=int, default=2000, help="budget checks timed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base = bare_sqlite(Path(d) / "bare.db", args.rows)
        led = Ledger(Path(d) / "ledger.db", Settings(), pm=_pm())
        led.record("gpt-4.1-mini", Usage(input=1, output=1))  # warm the price cache out of the timing
        u = Usage(input=1200, output=300, cached_input=200)
        with Timer() as single:
            for i in range(args.rows):
                led.record(
                    "gpt-4.1-mini", u, conversation_id=f"c{i % 50}", latency_ms=420.0, task_type="chat"
                )

        rows = [
            dict(model="gpt-4.1-nano", usage=u, conversation_id=f"c{i % 50}", latency_ms=300.0)
            for i in range(args.batch)
        ]
        with Timer() as batched:
            for i in range(0, len(rows), 10000):
                led.record_many(rows[i : i + 10000])
        total = led.store.count()
        # The same batches already built (as a spool replay or an import has them): the SQLite share.
        built = [led.build_row(**r) for r in rows[:10000]]
        n_store = (args.batch // 10000) * 10000
        with Timer() as store_batched:
            for _ in range(args.batch // 10000):
                for r in built:
                    r["uid"] = f"{time.perf_counter_ns():016x}{id(r):016x}"
                led.store.write(lambda s: s.insert_calls(built))
        total = led.store.count()
        led.close()

        budgets = Settings.model_validate(
            {"budgets": {"daily_usd": 1e6, "monthly_usd": 1e7, "per_conversation_usd": 1e5}}
        )
        led = Ledger(Path(d) / "ledger.db", budgets, pm=_pm())
        times = []
        for i in range(args.checks):
            t0 = time.perf_counter()
            chk = led.check(0.002, f"c{i % 50}")
            times.append(time.perf_counter() - t0)
            led.release(chk.reservation_id)  # keep the reservations table as a live system has it: small
        times.sort()
        p50 = statistics.median(times) * 1e3
        p99 = times[int(0.99 * (len(times) - 1))] * 1e3
        led.close()

    print(f"ledger rows in file: {total:,}")
    print(
        f"bare sqlite3 single-row commits/s:  {base.rates(args.rows)}  (baseline: 3-column table, same disk)"
    )
    print(f"Ledger.record single-row commits/s: {single.rates(args.rows)}  (goal >= 2,000)")
    print(f"Ledger.record_many rows/s:          {batched.rates(args.batch)}  (goal >= 50,000)")
    print(
        f"store.insert_calls rows/s:          {store_batched.rates(n_store)}  (rows prebuilt: SQLite share)"
    )
    print(f"Ledger.check p50 / p99 ms:          {p50:.3f} / {p99:.3f}  (3 budgets, reserve + commit)")
    print(f"record vs bare commit: {single.cpu / base.cpu:.1f}x the CPU per row")


if __name__ == "__main__":
    main()
