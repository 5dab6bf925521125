"""PostgresStore: the same ledger (tables, migrations, methods) as SQLiteStore, on a shared PostgreSQL server,
so many agents on many machines write one ledger and draw on one budget. Needs the [postgres] extra
(psycopg 3).

Budget decisions must see every other agent's spend and reservations. SQLite gets that from BEGIN IMMEDIATE
(one writer at a time); here the budget statements of a transaction first take one transaction-scoped
advisory lock, so checks, reservations and settlements run one after another across all machines, while
plain inserts (most writes) run in parallel. Under READ COMMITTED each statement after the lock sees every
transaction that held it before.

A connection lost mid-write is reopened and the transaction retried (inserts are idempotent by `uid`,
reservations by id); when the server stays away the write raises LedgerBusy and the Ledger spools the rows.

The queries both backends share are in `base.Store` (written with `?`, translated here by `sql()`); this
module holds what PostgreSQL does its own way: connection and reconnects, transactions and retries, the
advisory budget lock, migrations, sharded running spend and the one-round-trip call insert.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import LedgerBusy, LedgerError
from ..migrations import sqlite as migrations
from ..migrations.postgresql import PG_MIGRATIONS
from .base import CALL_COLUMNS, INSERT_CALL, Store, batch_spend, spend_keys

T = TypeVar("T")

# pg_advisory_xact_lock keys (any 64-bit numbers, fixed so every agent agrees): budgets, migrations.
BUDGET_LOCK = 0x6167_726F_7574_0001
MIGRATE_LOCK = 0x6167_726F_7574_0002
SPEND_SHARDS = 16  # running-spend rows per key, so concurrent writers rarely wait on one another



@functools.lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    """SQL written with `?` placeholders in psycopg's style: `%s`, and a literal `%` doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


_INSERT_CALL = to_pg(INSERT_CALL)


def _upsert_spend(n: int, only_if: str | None = None) -> str:
    """Add n (key, usd) pairs to the running spend in one statement. Rows are locked in key order, the
    same for every writer, so concurrent writers never deadlock. `only_if`: a query that must return a row."""
    values = ", ".join("(%s, %s::float8)" for _ in range(n))
    cond = f" WHERE EXISTS ({only_if})" if only_if else ""
    return (f"INSERT INTO spend (key, usd) SELECT k, v FROM (VALUES {values}) AS t (k, v){cond} ORDER BY k"
            " ON CONFLICT (key) DO UPDATE SET usd = spend.usd + excluded.usd")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise LedgerError(
            "ledger.backend is 'postgresql' but psycopg is not installed; install the [postgres] extra: "
            "pip install 'agent-router[postgres]'") from None
    return psycopg


def safe_dsn(dsn: str) -> str:
    """postgresql://user@host:port/db for messages: never the password."""
    psycopg = _psycopg()
    try:
        d = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable DSN>"
    user = f"{d['user']}@" if d.get("user") else ""
    host, port, db = d.get("host") or "localhost", d.get("port") or 5432, d.get("dbname") or ""
    return f"postgresql://{user}{host}:{port}/{db}"


def dsn_from_settings(settings: Any) -> str:
    """The DSN from the environment variable named by `ledger.dsn_env` (the settings never hold it)."""
    env = settings.ledger.dsn_env
    dsn = os.environ.get(env or "")
    if not dsn:
        raise LedgerError(f"settings ledger.dsn_env names the environment variable {env}, which is not set; "
                          "set it to the PostgreSQL connection string (postgresql://user:password@host:port/db)")
    return dsn


class PostgresStore(Store):
    """A ledger in a PostgreSQL database. Thread-safe: one connection guarded by a lock."""

    backend = "postgresql"
    placeholder = "%s"
    INT = "::bigint"
    FLOAT = "::float8"
    GROUP_ALL = "HAVING COUNT(*) > 0"  # PostgreSQL refuses GROUP BY a constant
    NULLS_FIRST = " NULLS FIRST"  # SQLite's order for NULL keys
    ON_RESERVED = " ON CONFLICT (id) DO NOTHING"

    def __init__(self, dsn: str, *, retries: int = 6, connect_timeout_s: float = 3.0, migrate: bool = True):
        self._pg = _psycopg()
        self.dsn = dsn
        self.where = safe_dsn(dsn)
        self.path = self.where  # what messages and reports show as "the ledger"
        self.retries = retries
        self.connect_timeout_s = connect_timeout_s
        try:
            self._password = self._pg.conninfo.conninfo_to_dict(dsn).get("password") or None
        except self._pg.ProgrammingError:  # psycopg's message quotes the string: it may hold a password
            raise LedgerError("the PostgreSQL DSN is not a valid connection string (expected "
                              "postgresql://user:password@host:port/db; value not shown)") from None
        self._lock = threading.RLock()
        self._shard = random.randrange(SPEND_SHARDS)
        self.down_s = 2.0  # after a failed reconnect, spool without trying the server for this long
        self._down_until = 0.0
        self._in_tx = False
        self._locked = False
        self._pid = os.getpid()
        try:
            self.conn = self._connect()
        except self._pg.Error as e:
            raise LedgerError(f"{self.where}: cannot open the PostgreSQL ledger ({self._clean(e)})") from None
        if migrate:
            self.migrate()

    def _connect(self) -> Any:
        from psycopg.rows import dict_row

        return self._pg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                                connect_timeout=max(1, int(self.connect_timeout_s)))

    def _clean(self, e: BaseException) -> str:
        text = " ".join(str(e).split())
        return text.replace(self._password, "***") if self._password else text

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- transactions --------------------------------------------------------------------------------------
    def write(self, fn: Callable[[PostgresStore], T], retries: int | None = None) -> T:
        """Run fn(self) in one transaction; retry on a deadlock, a serialization failure or a connection
        lost mid-transaction. LedgerBusy (the Ledger then spools the rows) when the server cannot be
        reached: at once if reconnecting fails, and for `down_s` after that without trying again, so an
        agent never waits on a dead server call after call."""
        attempts = self.retries if retries is None else retries
        delay = 0.01
        last: BaseException | None = None
        for attempt in range(attempts + 1):
            self._after_fork()  # before taking the lock: a parent's thread may have held it at fork time
            with self._lock:
                if self.conn.closed or self.conn.broken:
                    if time.monotonic() < self._down_until:
                        raise LedgerBusy(f"{self.where}: PostgreSQL unreachable (retrying in under "
                                         f"{self.down_s:g}s)")
                    try:
                        self.conn = self._connect()
                    except self._pg.Error as e:
                        self._down_until = time.monotonic() + self.down_s
                        raise LedgerBusy(f"{self.where}: PostgreSQL unreachable ({self._clean(e)})") from None
                try:
                    with self.conn.transaction():
                        self._in_tx, self._locked = True, False
                        try:
                            return fn(self)
                        finally:
                            self._in_tx = False
                except (self._pg.OperationalError, self._pg.InterfaceError) as e:
                    last = e
                    if not isinstance(e, self._pg.errors.TransactionRollback):
                        with contextlib.suppress(self._pg.Error):
                            self.conn.close()
                except self._pg.Error as e:  # integrity, permissions, data: not retried, named for the ledger
                    raise LedgerError(f"{self.where}: the ledger refused the write ({self._clean(e)})") from None
            if attempt < attempts:
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
        raise LedgerBusy(f"{self.where}: PostgreSQL failed {attempts + 1} attempts "
                         f"({self._clean(last) if last else 'unknown error'})")

    def _after_fork(self) -> None:
        # A forked worker that inherited this store must not talk on its parent's socket (the two would
        # interleave protocol messages). psycopg only closes a connection in the process that opened it,
        # so dropping the inherited one here leaves the parent's session alone.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self.conn = self._connect()

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> Any:
        self._after_fork()
        with self._lock:
            if not self._in_tx and (self.conn.closed or self.conn.broken):
                self.conn = self._connect()
            return self.conn.execute(sql, tuple(params))

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query written with %s placeholders."""
        try:
            return list(self._exec(sql, params).fetchall())
        except (self._pg.OperationalError, self._pg.InterfaceError) as e:
            raise LedgerBusy(f"{self.where}: PostgreSQL unreachable ({self._clean(e)})") from None

    def sql(self, text: str) -> str:
        return to_pg(text)

    def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        if self._in_tx:
            self._budget_lock()
            return self._fetch(sql, params)
        return self.read(sql, params)

    def _budget_lock(self) -> None:
        if self._in_tx and not self._locked:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
            self._locked = True

    def _any(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def _insert_id(self, sql: str, params: Iterable[Any]) -> int:
        return int(self.conn.execute(sql + " RETURNING id", tuple(params)).fetchone()["id"])

    def _spend_rows(self, key: str) -> list[str]:
        """Its shard rows, plus the unsharded row that migration m005's backfill writes."""
        return [key, *(f"{key}#{i}" for i in range(SPEND_SHARDS))]

    # -- migrations ----------------------------------------------------------------------------------------
    def applied(self) -> list[str]:
        if self.read("SELECT to_regclass('_migrations') AS t")[0]["t"] is None:
            return []
        return [r["name"] for r in self.read("SELECT name FROM _migrations ORDER BY applied_at, name")]

    def pending(self) -> list[str]:
        done = set(self.applied())
        return [fn.__name__ for fn in migrations.MIGRATIONS if fn.__name__ not in done]

    def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction under an advisory lock; return the names applied."""
        missing = [fn.__name__ for fn in migrations.MIGRATIONS if fn.__name__ not in PG_MIGRATIONS]
        if missing:
            raise LedgerError(f"{self.where}: ledger migration(s) {', '.join(missing)} have no PostgreSQL "
                              "version in agent_router/ledger/migrations/postgresql.py")

        if not self.pending():  # read-only check first: agents may run as a user without DDL rights
            return []

        def tx(s: PostgresStore) -> list[str]:
            s.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            s.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
            done = {r["name"] for r in s.conn.execute("SELECT name FROM _migrations").fetchall()}
            ran = []
            for fn in migrations.MIGRATIONS:
                if fn.__name__ in done:
                    continue
                for stmt in PG_MIGRATIONS[fn.__name__]:
                    s.conn.execute(stmt)
                s.conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (%s, %s)",
                               (fn.__name__, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())))
                ran.append(fn.__name__)
            return ran

        try:
            return self.write(tx, retries=2)
        except LedgerBusy:
            raise
        except LedgerError as e:
            raise LedgerError(f"{self.where}: migration failed ({e})") from None

    # -- writes (call inside write()) ----------------------------------------------------------------------
    def insert_call(self, row: dict[str, Any]) -> int | None:
        # One statement, one round trip: the call, and (only if it was new) its running spend.
        spend = self._sharded(spend_keys(row))
        got = self.conn.execute(
            f"WITH c AS ({_INSERT_CALL} RETURNING id), s AS ({_upsert_spend(len(spend), 'SELECT 1 FROM c')})"
            " SELECT id FROM c",
            [*(row.get(c) for c in CALL_COLUMNS), *(x for kv in spend for x in kv)],
        ).fetchone()
        # None: uid already present (a replayed spool line, a retried transaction), counted once already
        return int(got["id"]) if got else self._id_of(row["uid"])

    def insert_calls(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows with fresh uids (record_many) and return their ids, in order; a replay of rows that
        may already be present goes through insert_call instead."""
        with self.conn.cursor() as cur:
            cur.executemany(_INSERT_CALL, [[r.get(c) for c in CALL_COLUMNS] for r in rows])
            n = cur.rowcount
        if n != len(rows):
            raise LedgerError(f"{self.where}: {len(rows) - n} row(s) of a batch had duplicate uids")
        self._add_spend(batch_spend(rows))
        found = self.ids_for([r["uid"] for r in rows])
        return [found[r["uid"]] for r in rows]

    def _sharded(self, items: list[tuple[str, float]]) -> list[tuple[str, float]]:
        # Each connection adds to its own shard row (key#0..key#15): with one row per day, every writer on
        # every machine would queue on that row's lock until the writer before it commits.
        return [(f"{k}#{self._shard}", v) for k, v in items]

    def _add_spend(self, items: list[tuple[str, float]]) -> None:
        spend = self._sharded(items)
        if spend:
            self.conn.execute(_upsert_spend(len(spend)), [x for kv in spend for x in kv])
