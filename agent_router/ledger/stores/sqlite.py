"""The one class that speaks SQL to the ledger database (SQLite here; a PostgreSQL store can mirror it).

Everything else in the ledger calls these methods, never the connection. The SQL is plain (no SQLite-only
functions beyond `substr`, `COALESCE`, `INSERT ... ON CONFLICT DO NOTHING`), so another backend can reuse it
with its own placeholders and locking (`write()` maps to a transaction holding the write lock).
"""

from __future__ import annotations

import operator
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from ..diagnose import error_for
from ..errors import LedgerBusy, LedgerError
from ..migrations import sqlite as migrations

T = TypeVar("T")

CALL_COLUMNS: tuple[str, ...] = (
    "uid",
    "time",
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
    "estimated_cost_usd",
    "price_source",
    "latency_ms",
    "outcome",
    "fallback_of",
    "reasons",
    "prompt",
    "tokens_saved",
    "saved_usd",
    "route_sketch",
    "escalated_from",
    "arm",
    "shadow",
    "shadow_cost_usd",
)
# A built row (Ledger.build_row) has every column; itemgetter reads them in C, which batches notice.
_row_values = operator.itemgetter(*CALL_COLUMNS)
_INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
    " ON CONFLICT (uid) DO NOTHING"
)
# Report groupings: name -> SQL expression over `calls`. Only these strings ever reach SQL.
GROUPS: dict[str, str] = {
    "model": "COALESCE(model, requested_model)",
    "tier": "tier",
    "task_type": "task_type",
    "conversation": "conversation_id",
    "day": "substr(time, 1, 10)",
    "tool": "tool",
    "kind": "kind",
    "arm": "arm",
    "agent": "agent_id",  # the gateway records the virtual key's name here
}


def spend_keys(row: dict[str, Any]) -> list[tuple[str, float]]:
    """The running-spend keys a call adds its cost to."""
    cost = float(row.get("cost_usd") or 0.0)
    t = row["time"]
    keys = [(f"day:{t[:10]}", cost), (f"month:{t[:7]}", cost)]
    if row.get("conversation_id") is not None:
        keys.append((f"conversation:{row['conversation_id']}", cost))
    return keys


def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class SQLiteStore:
    """A SQLite ledger file in WAL mode. Thread-safe: one connection guarded by a lock."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_ms: int = 5000, retries: int = 8):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.retries = retries
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise LedgerError(f"{self.path}: is a directory; ledger.path must name a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create its folder ({e.strerror})") from None
        try:
            # isolation_level=None: every transaction here is explicit (BEGIN IMMEDIATE ... COMMIT).
            self.conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._pragma_wal()
            self.conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no committed row
            self.db = sqlite_utils.Database(self.conn, execute_plugins=False)
            self.write(lambda s: migrations.migrate(s.db) if migrations.pending(s.db) else [])
        except LedgerError:
            self._close_quietly()
            raise
        except sqlite3.Error as e:
            self._close_quietly()
            if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                raise LedgerBusy(f"{self.path}: database stayed locked while opening ({e})") from None
            raise error_for(self.path, e) from None

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _pragma_wal(self) -> None:
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(
                f"{self.path}: cannot switch to WAL mode (got {mode!r}); is it on a network drive?"
            )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- transactions --------------------------------------------------------------------------------------
    @contextmanager
    def _immediate(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def write(self, fn: Callable[[SQLiteStore], T], retries: int | None = None) -> T:
        """Run fn(self) in one transaction holding the write lock; retry while the database is busy.

        busy_timeout already waits inside SQLite; the retries add jittered back-off on top of it, because
        a BEGIN IMMEDIATE that loses a race in WAL mode can fail at once with SQLITE_BUSY.
        """
        attempts = self.retries if retries is None else retries
        delay = 0.005
        for attempt in range(attempts + 1):
            try:
                with self._lock, self._immediate():
                    return fn(self)
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise error_for(self.path, e) from None
                if attempt == attempts:
                    raise LedgerBusy(f"{self.path}: still locked after {attempts + 1} attempts ({e})") from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
            except sqlite3.Error as e:  # corrupt page, integrity: named for the file, never a bare sqlite3 error
                raise error_for(self.path, e) from None
        raise AssertionError("unreachable")

    def _run(self, sql: str, params: Iterable[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query; a sqlite3 error becomes a LedgerError naming the file."""
        try:
            with self._lock:
                cur = self.conn.execute(sql, tuple(params))
                return [d[0] for d in cur.description or ()], cur.fetchall()
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise LedgerBusy(f"{self.path}: database stayed locked while reading ({e})") from None
            raise error_for(self.path, e) from None
        except sqlite3.Error as e:
            raise error_for(self.path, e) from None

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(sql, params)[1]

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cols, rows = self._run(sql, params)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    # -- writes (call inside write()) ----------------------------------------------------------------------
    def insert_call(self, row: dict[str, Any]) -> int | None:
        cur = self.conn.execute(_INSERT_CALL, [row.get(c) for c in CALL_COLUMNS])
        if cur.rowcount == 0:  # uid already present (a replayed spool line): counted once already
            found = self.conn.execute("SELECT id FROM calls WHERE uid = ?", (row["uid"],)).fetchone()
            return int(found[0]) if found else None
        self._add_spend(spend_keys(row))
        return int(cur.lastrowid) if cur.lastrowid is not None else None

    def insert_calls(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows with fresh uids (record_many) and return their ids, in order.

        Inside write()'s transaction nobody else inserts, and a rowid table without AUTOINCREMENT gives each
        new row max(id) + 1, so the batch's ids are the consecutive run ending at last_insert_rowid().
        A replay of rows that may already be present goes through insert_call instead.
        """
        cur = self.conn.executemany(_INSERT_CALL, map(_row_values, rows))
        if cur.rowcount != len(rows):
            raise LedgerError(f"{self.path}: {len(rows) - cur.rowcount} row(s) of a batch had duplicate uids")
        last = int(self.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        days: dict[str, float] = {}
        convs: dict[str, float] = {}
        for r in rows:  # sum per day and conversation first: one key string per group, not per row
            c = r["cost_usd"] or 0.0
            d = r["time"][:10]
            days[d] = days.get(d, 0.0) + c
            if r["conversation_id"] is not None:
                convs[r["conversation_id"]] = convs.get(r["conversation_id"], 0.0) + c
        sums: dict[str, float] = {}
        for d, c in days.items():
            sums[f"day:{d}"] = c
            sums[f"month:{d[:7]}"] = sums.get(f"month:{d[:7]}", 0.0) + c
        sums.update({f"conversation:{k}": c for k, c in convs.items()})
        self._add_spend(list(sums.items()))
        return list(range(last - len(rows) + 1, last + 1))

    def _add_spend(self, items: list[tuple[str, float]]) -> None:
        self.conn.executemany(
            "INSERT INTO spend (key, usd) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET usd = spend.usd + excluded.usd",
            items,
        )

    def add_reservation(
        self,
        rid: str,
        conversation_id: str | None,
        amount: float,
        created: str,
        expires: str,
        holder: tuple[str, int, str] | None = None,
    ) -> None:
        host, pid, start = holder or (None, None, None)
        self.conn.execute(
            "INSERT INTO reservations (id, conversation_id, amount_usd, created, expires, host, pid, proc_start)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, conversation_id, amount, created, expires, host, pid, start),
        )

    def holders_on(self, host: str) -> list[tuple[int, str]]:
        """Distinct (pid, proc_start) of the processes of `host` that hold reservations."""
        return [
            (int(r[0]), r[1] or "")
            for r in self._query(
                "SELECT DISTINCT pid, proc_start FROM reservations WHERE host = ? AND pid IS NOT NULL", (host,)
            )
        ]

    def release_holder(self, host: str, pid: int, proc_start: str) -> None:
        self.conn.execute(
            "DELETE FROM reservations WHERE host = ? AND pid = ? AND COALESCE(proc_start, '') = ?",
            (host, pid, proc_start),
        )

    def delete_reservations(self, rids: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM reservations WHERE id = ?", ((r,) for r in rids))

    def purge_expired(self, now: str) -> None:
        self.conn.execute("DELETE FROM reservations WHERE expires <= ?", (now,))

    def mark_alert(
        self, key: str, budget: str, period: str, threshold: float, spent: float, limit: float, now: str
    ) -> bool:
        """Record that an alert fired; False when it had already fired (fire once per key)."""
        cur = self.conn.execute(
            "INSERT INTO budget_alerts (key, budget, period, threshold, spent_usd, limit_usd, time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, budget, period, threshold, spent, limit, now),
        )
        return cur.rowcount == 1

    def add_feedback(self, call_id: int, verdict: str, source: str, signal: str | None, now: str) -> int:
        if self.conn.execute("SELECT 1 FROM calls WHERE id = ?", (call_id,)).fetchone() is None:
            raise LedgerError(f"feedback: no call with id {call_id} in {self.path}")
        cur = self.conn.execute(
            "INSERT INTO feedback (call_id, verdict, source, signal, time) VALUES (?, ?, ?, ?, ?)",
            (call_id, verdict, source, signal, now),
        )
        return int(cur.lastrowid or 0)

    # -- sums (inside write() for atomic budget checks, or alone) -------------------------------------------
    def spent(self, key: str) -> float:
        """Running spend for a key of `spend_keys` (day:..., month:..., conversation:...)."""
        found = self._query("SELECT usd FROM spend WHERE key = ?", (key,))  # also outside write(), any thread
        return float(found[0][0]) if found else 0.0

    def reserved(self, now: str, since: str | None = None, conversation_id: str | None = None) -> float:
        q = "SELECT COALESCE(SUM(amount_usd), 0) FROM reservations WHERE expires > ?"
        p: list[Any] = [now]
        if conversation_id is not None:
            q += " AND conversation_id = ?"
            p.append(conversation_id)
        elif since is not None:
            q += " AND created >= ?"
            p.append(since)
        return float(self._query(q, p)[0][0])

    # -- reports -------------------------------------------------------------------------------------------
    def totals(self, by: str | None, since: str | None) -> list[dict[str, Any]]:
        key = GROUPS[by] if by else "'all'"
        where, params = ("WHERE time >= ?", [since]) if since else ("", [])
        return self.read(
            f"""SELECT {key} AS key, COUNT(*) AS calls,
                COALESCE(SUM(input_tokens), 0) AS input_tokens,
                COALESCE(SUM(cached_input_tokens), 0) AS cached_input_tokens,
                COALESCE(SUM(cache_write_tokens), 0) AS cache_write_tokens,
                COALESCE(SUM(output_tokens), 0) AS output_tokens,
                COALESCE(SUM(reasoning_tokens), 0) AS reasoning_tokens,
                COALESCE(SUM(cost_usd), 0) AS cost_usd,
                SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END) AS errors,
                AVG(latency_ms) AS mean_latency_ms,
                COALESCE(SUM(tokens_saved), 0) AS tokens_saved,
                COALESCE(SUM(saved_usd), 0) AS saved_usd,
                SUM(CASE WHEN escalated_from IS NULL THEN 0 ELSE 1 END) AS escalations,
                COALESCE(SUM(shadow_cost_usd), 0) AS shadow_cost_usd,
                COALESCE(SUM(CASE WHEN shadow_cost_usd IS NULL THEN 0 ELSE estimated_cost_usd END), 0)
                    AS shadowed_estimate_usd
            FROM calls {where} GROUP BY {key} ORDER BY cost_usd DESC, key""",
            params,
        )

    def verdicts_by_arm(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE c.time >= ?", [since]) if since else ("", [])
        return self.read(
            f"""SELECT c.arm AS key, SUM(CASE WHEN f.verdict = 'good' THEN 1 ELSE 0 END) AS good,
                SUM(CASE WHEN f.verdict = 'bad' THEN 1 ELSE 0 END) AS bad
            FROM feedback f JOIN calls c ON c.id = f.call_id {where} GROUP BY c.arm""",
            params,
        )

    def outcomes(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE f.time >= ?", [since]) if since else ("", [])
        return self.read(
            f"""SELECT f.call_id AS call_id, c.task_type AS task_type,
                COALESCE(c.requested_model, c.model) AS model,
                c.tier AS tier, f.verdict AS verdict, f.source AS source, f.signal AS signal, f.time AS time,
                c.route_sketch AS sketch, c.cost_usd AS cost_usd
            FROM feedback f JOIN calls c ON c.id = f.call_id {where} ORDER BY f.id""",
            params,
        )

    # -- training rows for the learned router (agent_router.learned.ledger_rows) ---------------------------
    def prompted_calls(self) -> int:
        """Model calls (not tool rows) whose prompt was stored."""
        return int(self.read(
            "SELECT COUNT(*) AS n FROM calls WHERE prompt IS NOT NULL AND prompt != '' AND kind != 'tool'"
        )[0]["n"])

    def spend_by_tier(self) -> list[dict[str, Any]]:
        """Per tier over model calls: dollars spent (`usd`) and tokens in + out (`tokens`)."""
        return self.read(
            "SELECT tier, COALESCE(SUM(cost_usd), 0) AS usd, "
            "COALESCE(SUM(input_tokens + output_tokens), 0) AS tokens FROM calls "
            "WHERE kind != 'tool' GROUP BY tier"
        )

    def judged_calls(self) -> list[dict[str, Any]]:
        """Model calls with a stored prompt joined with each of their verdicts, ordered per call so that the
        verdict that counts comes last (implicit before explicit, then in the order given)."""
        return self.read(
            """SELECT c.id AS id, c.tier AS tier, c.prompt AS prompt, c.cost_usd AS cost_usd,
                      c.input_tokens AS input_tokens, c.output_tokens AS output_tokens, f.verdict AS verdict,
                      f.source AS source, f.signal AS signal
               FROM calls c JOIN feedback f ON f.call_id = c.id
               WHERE c.prompt IS NOT NULL AND c.prompt != '' AND c.kind != 'tool'
               ORDER BY c.id, CASE WHEN f.source = 'explicit' THEN 1 ELSE 0 END, f.id"""
        )

    def count(self, table: str = "calls") -> int:
        if table not in ("calls", "feedback", "spend", "reservations", "budget_alerts"):
            raise ValueError(table)
        return int(self.read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
