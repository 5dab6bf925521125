"""What both ledger stores share: the table columns, the report groupings, and every query and write whose
logic is the same on SQLite and PostgreSQL, written once with `?` placeholders.

A store (SQLiteStore, PostgresStore) brings its connection, its transactions (`write()`), `read()`, its
migrations and its call inserts, plus the few dialect pieces below: `sql()` (placeholders), `_fetch()` (rows
inside a write), `_select()` (a read that, inside a write, takes the budget lock where the backend needs one),
`_value()` (the one value such a read gives), `_budget_lock()`, `_any()` (a column matching a list),
`_insert_id()` (the id of an inserted row), `_add_spend()` (the running-spend upsert), `_spend_rows()` (the
rows one running-spend key is kept in), and the casts and grouping text of the reports.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from ..errors import LedgerError

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
row_values = operator.itemgetter(*CALL_COLUMNS)


def insert_calls_sql(columns: Iterable[str]) -> str:
    """INSERT of one call given these columns; a uid already present is left alone (counted once)."""
    cols = list(columns)
    return f"INSERT INTO calls ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) ON CONFLICT (uid) DO NOTHING"


INSERT_CALL = insert_calls_sql(CALL_COLUMNS)
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
TABLES = ("calls", "feedback", "spend", "reservations", "budget_alerts")


def spend_keys(row: dict[str, Any]) -> list[tuple[str, float]]:
    """The running-spend keys a call adds its cost to."""
    cost = float(row.get("cost_usd") or 0.0)
    t = row["time"]
    keys = [(f"day:{t[:10]}", cost), (f"month:{t[:7]}", cost)]
    if row.get("conversation_id") is not None:
        keys.append((f"conversation:{row['conversation_id']}", cost))
    return keys


def batch_spend(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """`spend_keys` of many built rows, summed per key (per day and conversation first: one key string per
    group, not per row)."""
    days: dict[str, float] = {}
    convs: dict[str, float] = {}
    for r in rows:
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
    return list(sums.items())


class Store(ABC):
    """The ledger's SQL, once. Subclasses set `conn`, `path` and `where` and implement `write()`/`read()`."""

    backend = ""
    placeholder = "?"
    conn: Any
    path: Any
    where: str
    # Report text that differs by dialect: casts that keep SQLite's Python types (PostgreSQL's SUM of a
    # BIGINT is NUMERIC), the clause that makes an ungrouped total return no row over no calls, NULL order.
    INT = ""
    FLOAT = ""
    GROUP_ALL = "GROUP BY 'all'"
    NULLS_FIRST = ""
    # A reservation id already present: SQLite names the clash (one transaction, never replayed); PostgreSQL
    # retries a transaction whose commit it may not have seen, and the replay must not fail.
    ON_RESERVED = ""

    # -- dialect pieces ------------------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        """`text`, written with `?` placeholders, in this backend's placeholder style."""
        return text

    @abstractmethod
    def read(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only statement (in this dialect), as dicts."""

    def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a statement run on write()'s transaction (errors left to write() to retry or name)."""
        return self.read(sql, params)

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows a budget decision reads: inside write() under the budget lock, so they see every writer
        that held it before; outside, a plain read."""
        return self.read(sql, params)

    def _value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row `_select` gives (None without rows): budget checks' sums."""
        rows = self._select(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def _budget_lock(self) -> None:
        """Serialise budget statements across writers (SQLite's BEGIN IMMEDIATE already does)."""
        return None

    def _any(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        """A condition `column` is one of `values`, and its parameters."""
        if len(values) == 1:
            return f"{column} = ?", list(values)
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def _insert_id(self, sql: str, params: Iterable[Any]) -> int:
        """Run an INSERT (in this dialect) and return the new row's id."""
        return int(self.conn.execute(sql, tuple(params)).lastrowid or 0)

    @abstractmethod
    def _add_spend(self, items: list[tuple[str, float]]) -> None:
        """Add (spend key, USD) amounts to the running spend (an upsert in this dialect)."""

    def _spend_rows(self, key: str) -> list[str]:
        """The `spend` rows whose sum is the running spend of `key`."""
        return [key]

    # -- writes (call inside write()) ----------------------------------------------------------------------
    def _id_of(self, uid: str) -> int | None:
        """The id of the call with this uid: a replayed spool line or a retried transaction, counted once."""
        found = self._fetch(self.sql("SELECT id FROM calls WHERE uid = ?"), (uid,))
        return int(found[0]["id"]) if found else None

    def ids_for(self, uids: list[str]) -> dict[str, int]:
        """uid -> id of the calls with these uids."""
        cond, params = self._any("uid", uids)
        rows = self._fetch(self.sql(f"SELECT uid, id FROM calls WHERE {cond}"), params)
        return {r["uid"]: int(r["id"]) for r in rows}

    def add_reservation(
        self,
        rid: str,
        conversation_id: str | None,
        amount: float,
        created: str,
        expires: str,
        holder: tuple[str, int, str] | None = None,
    ) -> None:
        self._budget_lock()
        host, pid, start = holder or (None, None, None)
        self.conn.execute(
            self.sql(
                "INSERT INTO reservations (id, conversation_id, amount_usd, created, expires, host, pid, proc_start)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?){self.ON_RESERVED}"
            ),
            (rid, conversation_id, amount, created, expires, host, pid, start),
        )

    def holders_on(self, host: str) -> list[tuple[int, str]]:
        """Distinct (pid, proc_start) of the processes of `host` that hold reservations."""
        rows = self._select(
            self.sql("SELECT DISTINCT pid, proc_start FROM reservations WHERE host = ? AND pid IS NOT NULL"), (host,)
        )
        return [(int(r["pid"]), r["proc_start"] or "") for r in rows]

    def release_holder(self, host: str, pid: int, proc_start: str) -> None:
        self._budget_lock()
        self.conn.execute(
            self.sql("DELETE FROM reservations WHERE host = ? AND pid = ? AND COALESCE(proc_start, '') = ?"),
            (host, pid, proc_start),
        )

    def delete_reservations(self, rids: Iterable[str]) -> None:
        rids = list(rids)
        if rids:
            self._budget_lock()
            cond, params = self._any("id", rids)
            self.conn.execute(self.sql(f"DELETE FROM reservations WHERE {cond}"), params)

    def purge_expired(self, now: str) -> None:
        self._budget_lock()
        self.conn.execute(self.sql("DELETE FROM reservations WHERE expires <= ?"), (now,))

    def mark_alert(
        self, key: str, budget: str, period: str, threshold: float, spent: float, limit: float, now: str
    ) -> bool:
        """Record that an alert fired; False when it had already fired (fire once per key)."""
        self._budget_lock()
        cur = self.conn.execute(
            self.sql(
                "INSERT INTO budget_alerts (key, budget, period, threshold, spent_usd, limit_usd, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
            ),
            (key, budget, period, threshold, spent, limit, now),
        )
        return cur.rowcount == 1

    def add_feedback(self, call_id: int, verdict: str, source: str, signal: str | None, now: str) -> int:
        if not self._fetch(self.sql("SELECT 1 AS x FROM calls WHERE id = ?"), (call_id,)):
            raise LedgerError(f"feedback: no call with id {call_id} in {self.where}")
        return self._insert_id(
            self.sql("INSERT INTO feedback (call_id, verdict, source, signal, time) VALUES (?, ?, ?, ?, ?)"),
            (call_id, verdict, source, signal, now),
        )

    # -- sums (inside write() for atomic budget checks, or alone) -------------------------------------------
    def spent(self, key: str) -> float:
        """Running spend for a key of `spend_keys` (day:..., month:..., conversation:...)."""
        cond, params = self._any("key", self._spend_rows(key))
        return float(self._value(self.sql(f"SELECT COALESCE(SUM(usd), 0) AS usd FROM spend WHERE {cond}"), params))

    def reserved(self, now: str, since: str | None = None, conversation_id: str | None = None) -> float:
        q = "SELECT COALESCE(SUM(amount_usd), 0) AS v FROM reservations WHERE expires > ?"
        p: list[Any] = [now]
        if conversation_id is not None:
            q += " AND conversation_id = ?"
            p.append(conversation_id)
        elif since is not None:
            q += " AND created >= ?"
            p.append(since)
        return float(self._value(self.sql(q), p))

    # -- reports -------------------------------------------------------------------------------------------
    def totals(self, by: str | None, since: str | None) -> list[dict[str, Any]]:
        key = GROUPS[by] if by else "'all'"
        where, params = ("WHERE time >= ?", [since]) if since else ("", [])
        group = f"GROUP BY {key}" if by else self.GROUP_ALL
        i, f = self.INT, self.FLOAT
        return self.read(
            self.sql(
                f"""SELECT {key} AS key, COUNT(*) AS calls,
                COALESCE(SUM(input_tokens), 0){i} AS input_tokens,
                COALESCE(SUM(cached_input_tokens), 0){i} AS cached_input_tokens,
                COALESCE(SUM(cache_write_tokens), 0){i} AS cache_write_tokens,
                COALESCE(SUM(output_tokens), 0){i} AS output_tokens,
                COALESCE(SUM(reasoning_tokens), 0){i} AS reasoning_tokens,
                COALESCE(SUM(cost_usd), 0){f} AS cost_usd,
                SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END){i} AS errors,
                AVG(latency_ms){f} AS mean_latency_ms,
                COALESCE(SUM(tokens_saved), 0){i} AS tokens_saved,
                COALESCE(SUM(saved_usd), 0){f} AS saved_usd,
                SUM(CASE WHEN escalated_from IS NULL THEN 0 ELSE 1 END){i} AS escalations,
                COALESCE(SUM(shadow_cost_usd), 0){f} AS shadow_cost_usd,
                COALESCE(SUM(CASE WHEN shadow_cost_usd IS NULL THEN 0 ELSE estimated_cost_usd END), 0){f}
                    AS shadowed_estimate_usd
            FROM calls {where} {group} ORDER BY cost_usd DESC, key{self.NULLS_FIRST}"""
            ),
            params,
        )

    def verdicts_by_arm(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE c.time >= ?", [since]) if since else ("", [])
        return self.read(
            self.sql(
                f"""SELECT c.arm AS key, SUM(CASE WHEN f.verdict = 'good' THEN 1 ELSE 0 END){self.INT} AS good,
                SUM(CASE WHEN f.verdict = 'bad' THEN 1 ELSE 0 END){self.INT} AS bad
            FROM feedback f JOIN calls c ON c.id = f.call_id {where} GROUP BY c.arm"""
            ),
            params,
        )

    def outcomes(self, since: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE f.time >= ?", [since]) if since else ("", [])
        return self.read(
            self.sql(
                f"""SELECT f.call_id AS call_id, c.task_type AS task_type,
                COALESCE(c.requested_model, c.model) AS model,
                c.tier AS tier, f.verdict AS verdict, f.source AS source, f.signal AS signal, f.time AS time,
                c.route_sketch AS sketch, c.cost_usd AS cost_usd
            FROM feedback f JOIN calls c ON c.id = f.call_id {where} ORDER BY f.id"""
            ),
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
            f"SELECT tier, COALESCE(SUM(cost_usd), 0){self.FLOAT} AS usd, "
            f"COALESCE(SUM(input_tokens + output_tokens), 0){self.INT} AS tokens FROM calls "
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
        if table not in TABLES:
            raise ValueError(table)
        return int(self.read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
