"""Copy an SQLite ledger into the PostgreSQL ledger (`agent-router ledger copy`).

Calls, feedback and fired budget alerts are copied in one PostgreSQL transaction: all or nothing. Copying
is idempotent (calls are matched by their unique `uid`, feedback by all its fields, alerts by key), so a
copy can be re-run, and several machines' SQLite ledgers can be gathered into one server. Into an empty
ledger the call ids are kept (so CALL_IDs people noted still work); into one that already holds calls they
are renumbered, and feedback and `fallback_of` follow the new ids. Open reservations are not copied: they
belong to calls in flight on the old ledger.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import LedgerError
from .stores.base import CALL_COLUMNS, batch_spend, insert_calls_sql
from .stores.postgresql import PostgresStore, dsn_from_settings
from .stores.sqlite import SQLiteStore

BATCH = 1000


def target_dsn(to: str, settings_path: str | os.PathLike[str] | None = None) -> str:
    """The DSN of the PostgreSQL ledger named by `to`: "postgresql" (ledger.dsn_env of the settings at
    `settings_path`, read only then) or "postgresql:ENV_VAR" (the DSN in that environment variable). Errors
    never show a DSN."""
    kind, _, env = to.partition(":")
    if kind != "postgresql":
        raise LedgerError(f"--to: expected 'postgresql' or 'postgresql:ENV_VAR', got {kind!r}")
    if env:
        if not env.replace("_", "").isalnum():
            raise LedgerError("--to postgresql:ENV_VAR: give the name of an environment variable holding "
                              "the DSN, not the DSN itself (value not shown)")
        dsn = os.environ.get(env)
        if not dsn:
            raise LedgerError(f"--to: environment variable {env} is not set")
        return dsn
    from ..settings import load

    settings = load(settings_path)
    if not settings.ledger.dsn_env:
        raise LedgerError("--to postgresql: the settings have no ledger.dsn_env; set it (and ledger.backend "
                          "'postgresql'), or pass --to postgresql:ENV_VAR")
    return dsn_from_settings(settings)


def copy_sqlite_to_postgres(src_path: str | Path, dst: PostgresStore) -> dict[str, Any]:
    """Copy the ledger file at `src_path` into `dst`; return counts of what was copied and skipped."""
    p = Path(src_path).expanduser()
    if not p.is_file():
        raise LedgerError(f"{p}: no SQLite ledger there (--from sqlite:PATH must name an existing file)")
    src = SQLiteStore(p)  # also brings an older ledger file up to the current schema first
    try:
        return dst.write(lambda d: _copy(src, d))
    finally:
        src.close()


def _copy(src: SQLiteStore, d: PostgresStore) -> dict[str, Any]:
    keep_ids = d.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM calls) AS empty").fetchone()["empty"]
    id_map: dict[int, int] = {}
    inserted = present = 0
    cols = ("id", *CALL_COLUMNS) if keep_ids else CALL_COLUMNS
    sql = d.sql(insert_calls_sql(cols))
    last = 0
    while True:
        rows = src.read("SELECT * FROM calls WHERE id > ? ORDER BY id LIMIT ?", (last, BATCH))
        if not rows:
            break
        last = rows[-1]["id"]
        # Uids already there keep their rows; leaving them out also spares the id sequence (an insert that
        # hits ON CONFLICT still draws a number).
        there = d.ids_for([r["uid"] for r in rows])
        new = [r for r in rows if r["uid"] not in there]
        if new:
            with d.conn.cursor() as cur:
                cur.executemany(sql, [[r.get(c) for c in cols] for r in new])
            d._add_spend(batch_spend(new))  # the copied calls count against the shared budgets from now on
        inserted += len(new)
        present += len(rows) - len(new)
        found = {**there, **d.ids_for([r["uid"] for r in new])}
        for r in rows:
            id_map[r["id"]] = found[r["uid"]]
        moved = [(id_map[r["fallback_of"]], r["uid"]) for r in new
                 if not keep_ids and r.get("fallback_of") in id_map]
        if moved:  # fallback_of named the failed call by its old id
            with d.conn.cursor() as cur:
                cur.executemany("UPDATE calls SET fallback_of = %s WHERE uid = %s", moved)
    if keep_ids:
        # Ids were given explicitly: move the identity past them so new calls do not collide.
        d.conn.execute("SELECT setval(pg_get_serial_sequence('calls', 'id'),"
                       " GREATEST((SELECT MAX(id) FROM calls), 1))")
    feedback = 0
    for f in src.read("SELECT * FROM feedback ORDER BY id"):
        call_id = id_map.get(f["call_id"])
        if call_id is None:
            continue
        exists = d.conn.execute(
            "SELECT 1 FROM feedback WHERE call_id = %s AND verdict = %s AND source = %s"
            " AND signal IS NOT DISTINCT FROM %s AND time = %s",
            (call_id, f["verdict"], f["source"], f["signal"], f["time"]),
        ).fetchone()
        if exists is None:
            d.add_feedback(call_id, f["verdict"], f["source"], f["signal"], f["time"])
            feedback += 1
    alerts = 0
    for a in src.read("SELECT * FROM budget_alerts"):
        alerts += d.mark_alert(a["key"], a["budget"], a["period"], a["threshold"], a["spent_usd"], a["limit_usd"],
                               a["time"])
    return {"calls_copied": inserted, "calls_already_there": present, "feedback_copied": feedback,
            "alerts_copied": alerts, "ids": "kept" if keep_ids else "renumbered"}
