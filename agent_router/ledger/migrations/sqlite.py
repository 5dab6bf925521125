"""Ledger schema as an ordered list of migration functions, as simonw/llm does in its migrations.py.

Each function takes a sqlite-utils `Database` and moves the schema one step; `_migrations` records the names
applied. Never edit or reorder a released migration: add a new one. `DESCRIPTIONS` documents every column,
and `schema_markdown()` renders the documentation from the migrated schema itself, so the docs cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


def applied(db: sqlite_utils.Database) -> set[str]:
    if "_migrations" not in db.table_names():
        return set()
    return {r[0] for r in db.execute("SELECT name FROM _migrations").fetchall()}


def pending(db: sqlite_utils.Database) -> list[str]:
    done = applied(db)
    return [fn.__name__ for fn in MIGRATIONS if fn.__name__ not in done]


def migrate(db: sqlite_utils.Database, upto: str | None = None) -> list[str]:
    """Apply pending migrations in order (stop after `upto` if given); return the names applied.

    The caller holds the write lock (BEGIN IMMEDIATE), so two processes opening a new file do not race.
    """
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = applied(db)
    ran = []
    for fn in MIGRATIONS:
        if fn.__name__ not in done:
            fn(db)
            db["_migrations"].insert({"name": fn.__name__, "applied_at": datetime.now(UTC).isoformat()})
            ran.append(fn.__name__)
        if fn.__name__ == upto:
            break
    return ran


@migration
def m001_calls(db: sqlite_utils.Database) -> None:
    """One row per model call: who, what, which model, tokens, cost, latency, outcome."""
    db["calls"].create(
        {
            "id": int,
            "uid": str,
            "time": str,
            "conversation_id": str,
            "agent_id": str,
            "kind": str,
            "tool": str,
            "task_type": str,
            "tier": str,
            "requested_model": str,
            "model": str,
            "provider": str,
            "input_tokens": int,
            "cached_input_tokens": int,
            "cache_write_tokens": int,
            "output_tokens": int,
            "reasoning_tokens": int,
            "token_source": str,
            "cost_usd": float,
            "estimated_cost_usd": float,
            "price_source": str,
            "latency_ms": float,
            "outcome": str,
            "fallback_of": int,
            "reasons": str,
            "prompt": str,
        },
        pk="id",
        not_null=["uid", "time", "kind", "outcome"],
        defaults={
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": 0.0,
            "outcome": "ok",
        },
    )
    # uid makes replays from the spool idempotent.
    db["calls"].create_index(["uid"], index_name="calls_uid", unique=True)


@migration
def m002_report_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for `costs --since` / `report --since` (time) and for reading one conversation."""
    # Only these two: GROUP BY model / tier / task type / tool reads the whole time range anyway, and every
    # extra index is one more B-tree page written per commit (it halved single-row commit speed when tried).
    db["calls"].create_index(["time"], index_name="calls_time")
    db["calls"].create_index(["conversation_id"], index_name="calls_conversation")


@migration
def m003_compression_savings(db: sqlite_utils.Database) -> None:
    """Tokens and USD that history compression saved on the call."""
    db["calls"].add_column("tokens_saved", int, not_null_default=0)
    db["calls"].add_column("saved_usd", float, not_null_default=0.0)


@migration
def m004_feedback(db: sqlite_utils.Database) -> None:
    """Verdicts on calls (explicit from a user, implicit from signals), for learned routing."""
    db["feedback"].create(
        {"id": int, "call_id": int, "verdict": str, "source": str, "signal": str, "time": str},
        pk="id",
        not_null=["call_id", "verdict", "source", "time"],
        foreign_keys=[("call_id", "calls", "id")],
    )
    db["feedback"].create_index(["call_id"], index_name="feedback_call")


@migration
def m005_budgets(db: sqlite_utils.Database) -> None:
    """Running spend per day, month and conversation; budget reservations; alerts already fired."""
    # `spend` keeps budget checks O(1) however large the ledger grows; it is backfilled from older rows.
    db["spend"].create({"key": str, "usd": float}, pk="key", not_null=["usd"])
    db.execute(
        """INSERT INTO spend (key, usd)
        SELECT k, SUM(c) FROM (
            SELECT 'day:' || substr(time, 1, 10) AS k, cost_usd AS c FROM calls
            UNION ALL SELECT 'month:' || substr(time, 1, 7), cost_usd FROM calls
            UNION ALL SELECT 'conversation:' || conversation_id, cost_usd FROM calls
                WHERE conversation_id IS NOT NULL
        ) AS all_keys GROUP BY k"""
    )
    db["reservations"].create(
        {"id": str, "conversation_id": str, "amount_usd": float, "created": str, "expires": str},
        pk="id",
        not_null=["amount_usd", "created", "expires"],
    )
    db["reservations"].create_index(["expires"], index_name="reservations_expires")
    db["budget_alerts"].create(
        {
            "key": str,
            "budget": str,
            "period": str,
            "threshold": float,
            "spent_usd": float,
            "limit_usd": float,
            "time": str,
        },
        pk="key",
        not_null=["budget", "threshold", "time"],
    )


@migration
def m006_route_sketch(db: sqlite_utils.Database) -> None:
    """The learned router's sketch of each routed request, for per-request adaptive routing."""
    db["calls"].add_column("route_sketch", str)


@migration
def m007_reservation_holder(db: sqlite_utils.Database) -> None:
    """Which process holds each reservation, so one left by a crashed agent is released at once."""
    db["reservations"].add_column("host", str)
    db["reservations"].add_column("pid", int)
    db["reservations"].add_column("proc_start", str)
    db["reservations"].create_index(["host"], index_name="reservations_host")


@migration
def m008_escalation_experiments(db: sqlite_utils.Database) -> None:
    """Escalations (the call whose failed answer this one re-asked) and routing experiments (arm, shadow)."""
    db["calls"].add_column("escalated_from", int)
    db["calls"].add_column("arm", str)
    db["calls"].add_column("shadow", str)
    db["calls"].add_column("shadow_cost_usd", float)


@migration
def m009_gateway_keys(db: sqlite_utils.Database) -> None:
    """The gateway's virtual keys (hashed), each with its budget, spend, rate limit and highest tier."""
    db["gateway_keys"].create(
        {
            "id": int,
            "name": str,
            "key_hash": str,
            "prefix": str,
            "budget_usd": float,
            "spent_usd": float,
            "rpm": int,
            "max_tier": str,
            "admin": int,
            "created": str,
            "revoked": str,
        },
        pk="id",
        not_null=["name", "key_hash", "spent_usd", "admin", "created"],
        defaults={"spent_usd": 0.0, "admin": 0},
    )
    db["gateway_keys"].create_index(["key_hash"], index_name="gateway_keys_hash", unique=True)
    db["gateway_keys"].create_index(["name"], index_name="gateway_keys_name", unique=True)


DESCRIPTIONS: dict[str, dict[str, str]] = {
    "calls": {
        "id": "Row id; the CALL_ID of `agent-router feedback`.",
        "uid": "Unique id made by the writer; makes spool replays idempotent.",
        "time": "UTC time the call finished, ISO 8601 with microseconds.",
        "conversation_id": "The host's conversation (context) id.",
        "agent_id": "The host's agent id (e.g. Agent Zero's agent number).",
        "kind": "chat | utility | summary | tool.",
        "tool": "Name of the tool that made the call (kind 'tool').",
        "task_type": "Task type from the analyzer (chat, code, math, ...).",
        "tier": "Tier of the chosen model: utility | chat | premium.",
        "requested_model": "The model alias the router chose or the caller asked for.",
        "model": "The model that answered (provider's id when it reported one).",
        "provider": "openai, anthropic, gemini, or an OpenAI-compatible name.",
        "input_tokens": "Prompt tokens, cached reads and cache writes included.",
        "cached_input_tokens": "Prompt tokens read from the provider's cache (priced as cached).",
        "cache_write_tokens": "Prompt tokens written to the provider's cache (priced as cache writes).",
        "output_tokens": "Generated tokens, reasoning included.",
        "reasoning_tokens": "Reasoning / thinking tokens (part of output_tokens).",
        "token_source": "provider (reported) | counted (our tokenizer) | estimated.",
        "cost_usd": "Cost in USD at list price.",
        "estimated_cost_usd": "The router's estimate before the call, if known.",
        "price_source": "Where the price came from: settings, genai-prices <version>, or unknown.",
        "latency_ms": "Wall time of the call in milliseconds.",
        "outcome": "ok, or the error kind (timeout, rate_limit, auth, server, ...).",
        "fallback_of": "id of the failed call this one replaced.",
        "reasons": "JSON list: the router's reasons for the decision.",
        "prompt": "Message contents; only when ledger.store_prompts is on, else empty.",
        "tokens_saved": "Prompt tokens removed by compression before the call.",
        "saved_usd": "USD those removed tokens would have cost.",
        "route_sketch": "JSON: the learned router's structure features and head probabilities for the request "
        "(no text), so outcomes can teach adaptive routing per request.",
        "escalated_from": "id of the call whose answer failed the answer checks; this call re-asked it one tier "
        "up (the reasons say which checks failed).",
        "arm": "Routing experiment arm: <experiment>:live (shadow), <experiment>:control or :challenger (A/B).",
        "shadow": "JSON: the shadow challenger's decision for this call (experiment, tier, model); never called.",
        "shadow_cost_usd": "The shadow challenger's estimated cost for this call.",
    },
    "feedback": {
        "id": "Row id.",
        "call_id": "calls.id the verdict is about.",
        "verdict": "good | bad.",
        "source": "explicit (a person said so) | implicit (inferred from a signal).",
        "signal": "What implied it: switch_model, retry, tool_error, cli, ...",
        "time": "UTC time, ISO 8601.",
    },
    "spend": {
        "key": "day:YYYY-MM-DD, month:YYYY-MM or conversation:<id>.",
        "usd": "Sum of calls.cost_usd for that key, kept up to date in the transaction that writes the call.",
    },
    "reservations": {
        "id": "Reservation id returned by a budget check.",
        "conversation_id": "Conversation the reserved call belongs to.",
        "amount_usd": "Estimated cost held against the budgets until the call is recorded.",
        "created": "UTC time of the check.",
        "expires": "UTC time after which an unsettled reservation no longer counts.",
        "host": "Host name and PID namespace of the process that reserved.",
        "pid": "Its process id; when that process is gone from this host, the next check releases the hold.",
        "proc_start": "Boot id and start time of that process, so a reused pid is not mistaken for it.",
    },
    "budget_alerts": {
        "key": "budget|period|threshold|limit: an alert fires once per key (a new limit fires anew).",
        "budget": "daily | monthly | conversation.",
        "period": "The day, the month, or the conversation id.",
        "threshold": "Fraction of the limit crossed (0.8, 1.0, ...).",
        "spent_usd": "Spend when the alert fired.",
        "limit_usd": "The budget's limit.",
        "time": "UTC time the alert fired.",
    },
    "gateway_keys": {
        "id": "Row id.",
        "name": "The key's name: what ledger rows (agent_id), reports and logs show instead of the key.",
        "key_hash": "SHA-256 of the key (hex); the key itself is never stored.",
        "prefix": "The key's first characters, to tell keys apart in listings.",
        "budget_usd": "Spend limit of the key in USD (empty: none).",
        "spent_usd": "What calls made with the key cost so far.",
        "rpm": "Requests per minute the key may make (empty: no limit).",
        "max_tier": "Highest tier the key may reach: utility | chat | premium (empty: any).",
        "admin": "1: the key may use the management API (/api/keys and feedback).",
        "created": "UTC time the key was made.",
        "revoked": "UTC time the key was revoked (empty: active).",
    },
    "_migrations": {"name": "Migration function applied.", "applied_at": "When."},
}


def schema_markdown(db: sqlite_utils.Database) -> str:
    """Markdown documentation of the tables as the migrations built them."""
    out = ["# agent-router ledger schema", ""]
    out.append(
        "Migrations, in order: "
        + ", ".join(f"`{fn.__name__}` ({(fn.__doc__ or '').strip()})" for fn in MIGRATIONS)
    )
    for table in ("calls", "feedback", "spend", "reservations", "budget_alerts", "gateway_keys", "_migrations"):
        if table not in db.table_names():
            continue
        out += ["", f"## {table}", "", "| column | type | description |", "| --- | --- | --- |"]
        docs = DESCRIPTIONS.get(table, {})
        for col in db[table].columns:
            desc = docs.get(col.name, "").replace("|", "\\|")
            out.append(f"| {col.name} | {col.type} | {desc} |")
        idx = [i.name for i in db[table].indexes if not i.name.startswith("sqlite_")]
        if idx:
            out += ["", "Indexes: " + ", ".join(idx)]
    return "\n".join(out) + "\n"
