"""SQLiteStore: the ledger in a SQLite file. The queries and writes both backends share are in `base.Store`;
here is what SQLite does its own way: the connection (WAL), transactions (BEGIN IMMEDIATE with jittered
retries while the file is busy), sqlite3 errors named for the file, migrations through sqlite_utils, and the
call inserts (ids from the rowid, running spend in one row per key).

Everything else in the ledger calls these methods, never the connection.
"""

from __future__ import annotations

import contextlib
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
from .base import CALL_COLUMNS as CALL_COLUMNS
from .base import GROUPS as GROUPS
from .base import INSERT_CALL, Store, batch_spend, row_values
from .base import spend_keys as spend_keys

T = TypeVar("T")

def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def while_busy(fn: Callable[[], T], seconds: float) -> T:
    """fn(), run again while SQLite says the database is locked or busy, for up to `seconds` (then its error).
    Processes opening one file at once race to switch it to WAL mode and create its tables: SQLite tells the
    loser at once, without waiting out the busy timeout, so the opening itself has to be retried."""
    end = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _is_busy(e) or time.monotonic() >= end:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)


class SQLiteStore(Store):
    """A SQLite ledger file in WAL mode. Thread-safe: one connection guarded by a lock."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], busy_timeout_ms: int = 5000, retries: int = 8):
        self.path = Path(path)
        self.where = str(self.path)
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
            while_busy(self._pragma_wal, busy_timeout_ms / 1000)
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
            with contextlib.suppress(sqlite3.Error):
                conn.close()

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

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cols, rows = self._run(sql, params)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def _value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self._run(sql, params)[1]  # tuples: no dict per budget sum
        return rows[0][0] if rows else None

    # -- writes (call inside write()) ----------------------------------------------------------------------
    def insert_call(self, row: dict[str, Any]) -> int | None:
        cur = self.conn.execute(INSERT_CALL, [row.get(c) for c in CALL_COLUMNS])
        if cur.rowcount == 0:  # uid already present (a replayed spool line): counted once already
            return self._id_of(row["uid"])
        self._add_spend(spend_keys(row))
        return int(cur.lastrowid) if cur.lastrowid is not None else None

    def insert_calls(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows with fresh uids (record_many) and return their ids, in order.

        Inside write()'s transaction nobody else inserts, and a rowid table without AUTOINCREMENT gives each
        new row max(id) + 1, so the batch's ids are the consecutive run ending at last_insert_rowid().
        A replay of rows that may already be present goes through insert_call instead.
        """
        cur = self.conn.executemany(INSERT_CALL, map(row_values, rows))
        if cur.rowcount != len(rows):
            raise LedgerError(f"{self.path}: {len(rows) - cur.rowcount} row(s) of a batch had duplicate uids")
        last = int(self.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        self._add_spend(batch_spend(rows))
        return list(range(last - len(rows) + 1, last + 1))

    def _add_spend(self, items: list[tuple[str, float]]) -> None:
        self.conn.executemany(
            "INSERT INTO spend (key, usd) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET usd = spend.usd + excluded.usd",
            items,
        )
