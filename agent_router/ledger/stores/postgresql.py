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
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import LedgerBusy, LedgerError
from ..migrations import sqlite as migrations
from ..migrations.postgresql import PG_MIGRATIONS
from .sqlite import CALL_COLUMNS, GROUPS, spend_keys

T = TypeVar("T")

# pg_advisory_xact_lock keys (any 64-bit numbers, fixed so every agent agrees): budgets, migrations.
BUDGET_LOCK = 0x6167_726F_7574_0001
MIGRATE_LOCK = 0x6167_726F_7574_0002
SPEND_SHARDS = 16  # running-spend rows per key, so concurrent writers rarely wait on one another

_INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('%s' for _ in CALL_COLUMNS)})"
    " ON CONFLICT (uid) DO NOTHING"
)


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


class PostgresStore:
    """A ledger in a PostgreSQL database. Thread-safe: one connection guarded by a lock."""

    backend = "postgresql"

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

    def _budget_lock(self) -> None:
        if self._in_tx and not self._locked:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
            self._locked = True

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
                              "version in agent_router/ledger/pg_migrations.py")

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
        if got is None:  # uid already present (a replayed spool line, a retried transaction): counted once
            got = self.conn.execute("SELECT id FROM calls WHERE uid = %s", (row["uid"],)).fetchone()
        return int(got["id"]) if got else None

    def insert_calls(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows with fresh uids (record_many) and return their ids, in order; a replay of rows that
        may already be present goes through insert_call instead."""
        with self.conn.cursor() as cur:
            cur.executemany(_INSERT_CALL, [[r.get(c) for c in CALL_COLUMNS] for r in rows])
            n = cur.rowcount
        if n != len(rows):
            raise LedgerError(f"{self.where}: {len(rows) - n} row(s) of a batch had duplicate uids")
        sums: dict[str, float] = {}
        for r in rows:
            for k, v in spend_keys(r):
                sums[k] = sums.get(k, 0.0) + v
        self._add_spend(list(sums.items()))
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

    def ids_for(self, uids: list[str]) -> dict[str, int]:
        rows = self.conn.execute("SELECT uid, id FROM calls WHERE uid = ANY(%s)", (list(uids),)).fetchall()
        return {r["uid"]: int(r["id"]) for r in rows}

    def add_reservation(self, rid: str, conversation_id: str | None, amount: float, created: str,
                        expires: str, holder: tuple[str, int, str] | None = None) -> None:
        self._budget_lock()
        host, pid, start = holder or (None, None, None)
        self.conn.execute(
            "INSERT INTO reservations (id, conversation_id, amount_usd, created, expires, host, pid, proc_start)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (rid, conversation_id, amount, created, expires, host, pid, start),
        )

    def holders_on(self, host: str) -> list[tuple[int, str]]:
        """Distinct (pid, proc_start) of the processes of `host` that hold reservations."""
        sql = "SELECT DISTINCT pid, proc_start FROM reservations WHERE host = %s AND pid IS NOT NULL"
        if self._in_tx:
            self._budget_lock()
            rows = self.conn.execute(sql, (host,)).fetchall()
        else:
            rows = self.read(sql, (host,))
        return [(int(r["pid"]), r["proc_start"] or "") for r in rows]

    def release_holder(self, host: str, pid: int, proc_start: str) -> None:
        self._budget_lock()
        self.conn.execute(
            "DELETE FROM reservations WHERE host = %s AND pid = %s AND COALESCE(proc_start, '') = %s",
            (host, pid, proc_start),
        )

    def delete_reservations(self, rids: Iterable[str]) -> None:
        self._budget_lock()
        self.conn.execute("DELETE FROM reservations WHERE id = ANY(%s)", (list(rids),))

    def purge_expired(self, now: str) -> None:
        self._budget_lock()
        self.conn.execute("DELETE FROM reservations WHERE expires <= %s", (now,))

    def mark_alert(self, key: str, budget: str, period: str, threshold: float, spent: float, limit: float,
                   now: str) -> bool:
        self._budget_lock()
        cur = self.conn.execute(
            "INSERT INTO budget_alerts (key, budget, period, threshold, spent_usd, limit_usd, time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            (key, budget, period, threshold, spent, limit, now),
        )
        return cur.rowcount == 1

    def add_feedback(self, call_id: int, verdict: str, source: str, signal: str | None, now: str) -> int:
        if self.conn.execute("SELECT 1 FROM calls WHERE id = %s", (call_id,)).fetchone() is None:
            raise LedgerError(f"feedback: no call with id {call_id} in {self.where}")
        got = self.conn.execute(
            "INSERT INTO feedback (call_id, verdict, source, signal, time) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id",
            (call_id, verdict, source, signal, now),
        ).fetchone()
        return int(got["id"])

    # -- sums (inside write() for atomic budget checks, or alone) -------------------------------------------
    def _one(self, sql: str, params: Iterable[Any]) -> Any:
        if self._in_tx:
            self._budget_lock()
            return self.conn.execute(sql, tuple(params)).fetchone()
        rows = self.read(sql, params)
        return rows[0] if rows else None

    def spent(self, key: str) -> float:
        """Running spend for a key of `spend_keys` (day:..., month:..., conversation:...): its shard rows,
        plus the unsharded row that migration m005's backfill writes."""
        got = self._one("SELECT COALESCE(SUM(usd), 0) AS usd FROM spend WHERE key = ANY(%s)",
                        ([key, *(f"{key}#{i}" for i in range(SPEND_SHARDS))],))
        return float(got["usd"]) if got else 0.0

    def reserved(self, now: str, since: str | None = None, conversation_id: str | None = None) -> float:
        q = "SELECT COALESCE(SUM(amount_usd), 0) AS v FROM reservations WHERE expires > %s"
        p: list[Any] = [now]
        if conversation_id is not None:
            q += " AND conversation_id = %s"
            p.append(conversation_id)
        elif since is not None:
            q += " AND created >= %s"
            p.append(since)
        return float(self._one(q, p)["v"])

    # -- reports -------------------------------------------------------------------------------------------
    def totals(self, by: str | None, since: str | None) -> list[dict[str, Any]]:
        # Casts keep Python types as SQLite gives them (SUM of BIGINT is NUMERIC -> Decimal otherwise).
        key = GROUPS[by] if by else "'all'"
        where, params = ("WHERE time >= %s", [since]) if since else ("", [])
        group = f"GROUP BY {GROUPS[by]}" if by else "HAVING COUNT(*) > 0"
        return self.read(
            f"""SELECT {key} AS key, COUNT(*) AS calls,
                COALESCE(SUM(input_tokens), 0)::bigint AS input_tokens,
                COALESCE(SUM(cached_input_tokens), 0)::bigint AS cached_input_tokens,
                COALESCE(SUM(cache_write_tokens), 0)::bigint AS cache_write_tokens,
                COALESCE(SUM(output_tokens), 0)::bigint AS output_tokens,
                COALESCE(SUM(reasoning_tokens), 0)::bigint AS reasoning_tokens,
                COALESCE(SUM(cost_usd), 0)::float8 AS cost_usd,
                SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END)::bigint AS errors,
                AVG(latency_ms)::float8 AS mean_latency_ms,
                COALESCE(SUM(tokens_saved), 0)::bigint AS tokens_saved,
                COALESCE(SUM(saved_usd), 0)::float8 AS saved_usd,
                SUM(CASE WHEN escalated_from IS NULL THEN 0 ELSE 1 END)::bigint AS escalations,
                COALESCE(SUM(shadow_cost_usd), 0)::float8 AS shadow_cost_usd,
                COALESCE(SUM(CASE WHEN shadow_cost_usd IS NULL THEN 0 ELSE estimated_cost_usd END), 0)::float8
                    AS shadowed_estimate_usd
            FROM calls {where} {group} ORDER BY cost_usd DESC, key NULLS FIRST""",
            params,
        )

    def verdicts_by_arm(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE c.time >= %s", [since]) if since else ("", [])
        return self.read(
            f"""SELECT c.arm AS key, SUM(CASE WHEN f.verdict = 'good' THEN 1 ELSE 0 END)::bigint AS good,
                SUM(CASE WHEN f.verdict = 'bad' THEN 1 ELSE 0 END)::bigint AS bad
            FROM feedback f JOIN calls c ON c.id = f.call_id {where} GROUP BY c.arm""",
            params,
        )

    def outcomes(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE f.time >= %s", [since]) if since else ("", [])
        return self.read(
            f"""SELECT f.call_id AS call_id, c.task_type AS task_type,
                COALESCE(c.requested_model, c.model) AS model, c.tier AS tier, f.verdict AS verdict,
                f.source AS source, f.signal AS signal, f.time AS time, c.route_sketch AS sketch,
                c.cost_usd AS cost_usd
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
            "SELECT tier, COALESCE(SUM(cost_usd), 0)::float8 AS usd, "
            "COALESCE(SUM(input_tokens + output_tokens), 0)::bigint AS tokens FROM calls "
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
