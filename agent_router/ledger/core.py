"""The Ledger: records each model call as one row, prices it, enforces budgets, fires hooks.

Writes are retried while the database is busy; a write that still fails goes to a JSONL spool (next to the
database, else a fallback on another path, else memory) and is replayed when the ledger can be written again.
A busy database only spools (record returns None); a full disk, a read-only folder or file, or a corrupt file
spools and raises LedgerWriteError naming the real cause and where the row waits. Message contents are stored only when
`ledger.store_prompts` is on, and anything that looks like an API key is masked before it is stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from time import time_ns
from typing import Any

from .. import secrets
from ..catalog import Catalog, ModelPrice, price_for
from ..home import ledger_path as default_path
from ..settings import TIERS, BudgetSettings, ModelConfig, Settings, default_home
from ..usage import Usage, UsageError, normalize
from . import budgets, spool
from .budgets import BudgetCheck, iso
from .errors import LedgerBusy, LedgerError, LedgerUnwritable, LedgerWriteError
from .stores.sqlite import SQLiteStore

log = logging.getLogger("agent_router.ledger")

KINDS: tuple[str, ...] = ("chat", "utility", "summary", "tool")


# Texts up to this long (reasons, outcomes) are scrubbed once and remembered, at most this many of them.
SCRUB_MEMO_CHARS = 500
SCRUB_MEMO_SIZE = 4096


def _uid() -> str:
    # Time-ordered (ns clock, then randomness), so the unique index grows at its end instead of at random.
    return f"{time_ns():016x}{os.urandom(8).hex()}"


def pg_spool_path(settings: Settings) -> Path:
    """Where rows wait while the PostgreSQL ledger is unreachable: beside ledger.path, else in the home."""
    path = settings.ledger.path
    base = Path(path).expanduser() if path else default_home() / "ledger-postgresql"
    return spool.spool_path(base)


class Ledger:
    """`Ledger(path | settings)`; `record(...)` returns the new row's id."""

    def __init__(
        self,
        path: str | os.PathLike[str] | Settings | None = None,
        settings: Settings | None = None,
        *,
        pm: Any = None,
        busy_timeout_ms: int = 5000,
        retries: int = 8,
    ):
        if isinstance(path, Settings):
            settings, path = path, None
        self.settings = settings or Settings()
        self.catalog = Catalog(self.settings)
        self._pm = pm
        if path is None and self.settings.ledger.backend == "postgresql":
            # A shared server: same tables, methods and reports; rows that cannot reach it spool locally.
            from .stores.postgresql import PostgresStore, dsn_from_settings

            self.store: Any = PostgresStore(dsn_from_settings(self.settings), retries=retries)
            self.path: Any = self.store.where  # a display DSN without password, not a file
            self.spool_path = pg_spool_path(self.settings)
        else:
            self.path = Path(path) if path is not None else default_path(self.settings)
            self.store = SQLiteStore(self.path, busy_timeout_ms=busy_timeout_ms, retries=retries)
            self.spool_path = spool.spool_path(self.path)
        secrets.remember_settings(self.settings)  # the configured keys' values, masked wherever they appear
        self._spooled = False  # this Ledger spooled rows since its last successful write
        self._held: list[dict[str, Any]] = []  # rows no spool path could take: retried, never dropped silently
        self._unreported: LedgerWriteError | None = None  # a write failure no caller has been told of yet
        self._iso_cache: tuple[datetime | None, str] = (None, "")
        # redact() of short texts already scrubbed (a decision's reasons repeat): valid while the set of
        # remembered secrets is the same tuple; reset when a secret is added.
        self._scrubbed: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        self._resolved: dict[
            tuple[str | None, str | None, str | None], tuple[ModelPrice, str | None, str | None]
        ] = {}
        self.replay_spool()

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> Ledger:
        """The ledger the settings name: SQLite at its path, or the PostgreSQL server of `ledger.dsn_env`."""
        if settings.ledger.backend == "postgresql":
            return cls(None, settings, **kw)
        return cls(default_path(settings), settings, **kw)

    def close(self) -> None:
        """Close the database. Raises LedgerWriteError when a call of this Ledger's life was not written to it
        and no caller was told yet (an attempt recorder cannot raise into a provider client), or when rows
        could only be kept in memory and are lost now."""
        if self._held:
            with contextlib.suppress(LedgerError):
                self.replay_spool()
        held, err = self._held, self._unreported
        self._held, self._unreported = [], None
        self.store.close()
        if held:
            raise LedgerError(
                f"{self.path}: {len(held)} call row(s) could not be written to the ledger or any spool "
                "file and are lost now; they were only in memory"
            )
        if err is not None:
            raise err

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an exception is already on its way: do not replace it with the ledger's
            self.close()
        except LedgerError as e:
            log.error("%s", e)

    @property
    def budgets(self) -> BudgetSettings:
        return self.settings.budgets

    @property
    def pm(self) -> Any:
        if self._pm is None:
            from ..plugins import load_plugins

            self._pm = load_plugins()
        return self._pm

    # -- secrets -------------------------------------------------------------------------------------------
    def _scrub(self, text: str | None) -> str | None:
        """`text` with the configured keys and anything shaped like a secret masked (agent_router.secrets)."""
        if not text or text == "ok":
            return text
        if len(text) > SCRUB_MEMO_CHARS:
            return secrets.redact(text)
        known = secrets.remembered()
        seen, memo = self._scrubbed
        if seen is not known or len(memo) >= SCRUB_MEMO_SIZE:
            memo = {}
            self._scrubbed = (known, memo)
        out = memo.get(text)
        if out is None:
            out = memo[text] = secrets.redact(text)
        return out

    # -- pricing -------------------------------------------------------------------------------------------
    def price(
        self, model: str | None, requested: str | None = None, provider: str | None = None
    ) -> tuple[ModelPrice, str | None]:
        """Price of the model that answered: the catalog by name or alias (a dated variant of the requested
        model counts as it), else the packaged table for that name, else the requested model's price."""
        m = self.catalog.find(model) if model else None
        if m is not None:
            return m.price, m.provider
        req = self.catalog.find(requested) if requested else None
        if req is not None and model and model.startswith(req.name):
            return req.price, req.provider
        prov = provider or (req.provider if req else None)
        if model and prov:
            p = price_for(ModelConfig(provider=prov, name=model))
            if p.known:
                return p, prov
        if req is not None:
            return req.price, req.provider
        return ModelPrice(0.0, 0.0, 0.0, 0.0, "unknown"), prov

    def _resolve(
        self, model: str | None, requested: str | None, provider: str | None
    ) -> tuple[ModelPrice, str | None, str | None]:
        """Price, provider and tier for a call, cached: the catalog does not change under a Ledger."""
        key = (model, requested, provider)
        hit = self._resolved.get(key)
        if hit is None:
            price, prov = self.price(model, requested, provider)
            m = self.catalog.find(requested or "") or self.catalog.find(model or "")
            hit = self._resolved[key] = (price, prov, m.tier if m else None)
        return hit

    def premium_price(self) -> tuple[str, ModelPrice]:
        m = self.catalog.tier_models("premium")[0]
        return m.alias, m.price

    # -- recording -----------------------------------------------------------------------------------------
    def build_row(
        self,
        model: str | None = None,
        usage: Usage | dict[str, Any] | Any = None,
        *,
        provider: str | None = None,
        kind: str = "chat",
        conversation_id: str | None = None,
        agent_id: str | None = None,
        tool: str | None = None,
        task_type: str | None = None,
        tier: str | None = None,
        requested_model: str | None = None,
        latency_ms: float | None = None,
        outcome: str = "ok",
        fallback_of: int | None = None,
        escalated_from: int | None = None,
        reasons: Iterable[str] | None = None,
        decision: Any = None,
        routed_by: Any = None,
        cost_usd: float | None = None,
        estimated_cost_usd: float | None = None,
        tokens_saved: int = 0,
        saved_usd: float = 0.0,
        prompt: Any = None,
        time: datetime | str | None = None,
    ) -> dict[str, Any]:
        """The row `record` would write, validated and priced (no I/O). `routed_by`: the decision a provider
        attempt served, whose experiment arm, shadow choice and request sketch the row carries without its
        other columns (a failover's tier is not the decision's)."""
        if kind not in KINDS:
            raise LedgerError(f"record: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if decision is not None:  # a router Decision fills what the caller left out
            requested_model = requested_model or decision.model
            tier = tier or decision.tier
            provider = provider or decision.provider
            task_type = task_type or decision.analysis.task_type
            reasons = reasons if reasons is not None else decision.reasons
            estimated_cost_usd = (
                estimated_cost_usd if estimated_cost_usd is not None else decision.estimated_cost_usd
            )
            model = model or decision.model_name
        routed_by = decision if decision is not None else routed_by
        shadow = getattr(routed_by, "shadow", None)
        if not model and not requested_model:
            raise LedgerError("record: give the model that answered (model=...) or the requested model")
        if tier is not None and tier not in TIERS:
            raise LedgerError(f"record: tier must be one of {', '.join(TIERS)}, got {tier!r}")
        price, found_provider, found_tier = self._resolve(model, requested_model, provider)
        provider = provider or found_provider
        tier = tier or found_tier
        if usage is None:
            u = Usage(source="estimated")
        elif isinstance(usage, Usage):
            u = usage
        else:
            try:
                u = normalize(usage, provider or "openai")
            except UsageError as e:
                raise LedgerError(f"record: {e}") from None
        cost = (
            price.cost(u.input, u.output, u.cached_input, u.cache_write)
            if cost_usd is None
            else float(cost_usd)
        )
        if not math.isfinite(cost) or cost < 0:  # a NaN in the running spend would switch every budget off
            raise LedgerError(f"record: cost_usd must be a finite number >= 0, got {cost}")
        if isinstance(time, datetime):
            t = self._iso_cache[1] if self._iso_cache[0] is time else iso(time)
            self._iso_cache = (time, t)  # record_many stamps a whole batch with one datetime
        elif isinstance(time, str):
            try:
                t = iso(datetime.fromisoformat(time))
            except ValueError:
                raise LedgerError(f"record: time {time!r} is not ISO 8601") from None
        else:
            t = iso(datetime.now(UTC))  # the call just finished
        store_prompt = None
        if prompt is not None and self.settings.ledger.store_prompts:
            store_prompt = self._scrub(
                prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
            )
        return {
            "uid": _uid(),
            "time": t,
            "conversation_id": None if conversation_id is None else str(conversation_id),
            "agent_id": None if agent_id is None else str(agent_id),
            "kind": kind,
            "tool": tool,
            "task_type": task_type,
            "tier": tier,
            "requested_model": requested_model,
            "model": model or requested_model,
            "provider": provider,
            "input_tokens": u.input,
            "cached_input_tokens": u.cached_input,
            "cache_write_tokens": u.cache_write,
            "output_tokens": u.output,
            "reasoning_tokens": u.reasoning,
            "token_source": u.source,
            "cost_usd": cost,
            "estimated_cost_usd": estimated_cost_usd,
            "price_source": price.source if cost_usd is None else "caller",
            "latency_ms": None if latency_ms is None else float(latency_ms),
            "outcome": self._scrub(outcome or "ok"),
            "fallback_of": fallback_of,
            "reasons": json.dumps([self._scrub(str(r)) for r in reasons]) if reasons is not None else None,
            "prompt": store_prompt,
            "tokens_saved": int(tokens_saved),
            "saved_usd": float(saved_usd),
            # The learned router's non-reversible sketch of the request (adaptive.sketch), so an outcome read
            # back by another process still teaches the per-request layer; never the prompt text.
            "route_sketch": getattr(getattr(routed_by, "analysis", None), "sketch", None),
            "escalated_from": escalated_from,
            # Routing experiments (router.py): the arm that routed the call, and a shadow challenger's choice.
            "arm": getattr(routed_by, "arm", None),
            "shadow": json.dumps({k: v for k, v in shadow.items() if k != "estimated_cost_usd"}) if shadow else None,
            "shadow_cost_usd": shadow.get("estimated_cost_usd") if shadow else None,
        }

    def record(
        self, model: str | None = None, usage: Any = None, *, reservation_id: str | None = None, **fields: Any
    ) -> int | None:
        """Write one call; return its row id (None only if the database stayed locked: the row is spooled).

        Raises LedgerWriteError when the ledger cannot be written (disk full, read-only, corrupt): the row is
        then kept in a spool (`kept_in`) and written when the ledger can be written again.

        `usage` is a `Usage`, or a provider's response / usage payload (normalized for `provider`).
        `reservation_id` (from `check`) is settled in the same transaction.
        """
        row = self.build_row(model, usage, **fields)
        ids = self._write([row], [reservation_id] if reservation_id else [])
        return ids[0] if ids else None

    def attempt_recorder(self, decision: Any = None, **fields: Any) -> Callable[[dict[str, Any]], int | None]:
        """A callback for `ProviderClient(on_attempt=...)`: one row per attempt, each failover linked to the
        row of the attempt it replaced (`fallback_of`). `fields` (conversation_id, agent_id, kind...) apply
        to every row."""
        row_of: dict[str, int | None] = {}

        def on_attempt(rec: dict[str, Any]) -> int | None:
            try:
                rid = self.record(
                    **self.attempt_fields(rec, decision, **fields),
                    fallback_of=row_of.get(rec.get("fallback_of") or ""),
                )
            except LedgerWriteError as e:  # the provider client cannot act on it: close() raises it
                self._unreported = e
                rid = None
            row_of[rec.get("id") or ""] = rid
            return rid

        return on_attempt

    def attempt_fields(self, rec: dict[str, Any], decision: Any = None, **fields: Any) -> dict[str, Any]:
        """`record` arguments for one provider attempt record (without `fallback_of`), for `record_many`.

        A paid call is recorded whatever its counts say: the server's inconsistencies (reasoning above output...)
        are settled by Usage.reported, and counts that cannot be read at all become an estimated zero rather than
        a lost row."""
        try:
            usage = Usage.reported(
                input=rec.get("input_tokens"),
                cached_input=rec.get("cached_input_tokens"),
                cache_write=rec.get("cache_write_tokens"),
                output=rec.get("output_tokens"),
                reasoning=rec.get("reasoning_tokens"),
                source=rec.get("token_source") or "estimated",
            )
        except UsageError:
            usage = Usage(source="estimated")
        outcome = "ok" if rec.get("outcome") == "ok" else (rec.get("error_kind") or rec.get("outcome"))
        return {
            "model": rec.get("model_name") or rec.get("model"),
            "usage": usage,
            **{"kind": "chat", **fields},
            "requested_model": (decision.model if decision is not None else None) or rec.get("model"),
            "provider": rec.get("provider"),
            "tier": decision.tier if decision is not None and rec.get("model") == decision.model else None,
            "task_type": decision.analysis.task_type if decision is not None else None,
            "reasons": decision.reasons if decision is not None else None,
            "latency_ms": rec.get("latency_ms"),
            "outcome": outcome,
            "routed_by": decision,
        }

    def record_many(
        self, rows: Iterable[dict[str, Any]], also: Callable[[Any], Any] | None = None
    ) -> list[int]:
        """Write many calls in one transaction (each dict holds `record`'s arguments); return their ids.

        `also(store)` runs inside that same transaction after the rows are in (the gateway counts its keys'
        spend there): it is written with the rows or not at all. A transaction retried (the database was busy)
        runs it again; rows that end in the spool instead come back without ids, and `also` is then lost
        with its rolled-back transaction: the caller applies it another way."""
        built, rids = [], []
        now = datetime.now(UTC)
        for r in rows:
            r = dict(r)
            rid = r.pop("reservation_id", None)
            if rid:
                rids.append(rid)
            r.setdefault("time", now)  # one clock read for the batch
            built.append(self.build_row(r.pop("model", None), r.pop("usage", None), **r))
        return self._write(built, rids, also) if built else []

    def _write(
        self, rows: list[dict[str, Any]], reservation_ids: list[str], also: Callable[[Any], Any] | None = None
    ) -> list[int]:
        now = datetime.now(UTC)
        b = self.budgets
        watch = b.per_conversation_usd or b.daily_usd or b.monthly_usd

        def tx(store: SQLiteStore) -> tuple[list[int], list[dict]]:
            if len(rows) == 1:
                one = store.insert_call(rows[0])
                ids = [one] if one is not None else []
            else:
                ids = store.insert_calls(rows)
            if reservation_ids:
                store.delete_reservations(reservation_ids)
            if also is not None:
                also(store)
            alerts: list[dict] = []
            if watch:
                for conv in dict.fromkeys(r["conversation_id"] for r in rows):
                    alerts += [a for a in budgets.crossed(store, b, conv, now) if a not in alerts]
            return ids, alerts

        try:
            ids, alerts = self.store.write(tx)
        except LedgerBusy as e:  # locked through all retries, or the PostgreSQL server away: transient
            kept = self._keep(rows, e)
            # Once per outage: an agent recording every call would otherwise log every call.
            (log.debug if self._spooled else log.error)(
                "ledger: %s; %d row(s) kept in %s and written when it answers again", e, len(rows), kept or "memory"
            )
            self._spooled = True
            return []
        except LedgerUnwritable as e:  # full disk, read-only folder or file, corrupt file: the caller must know
            kept = self._keep(rows, e)
            where = (
                f"kept in {kept} and written when the ledger can be written again"
                if kept
                else "kept ONLY IN MEMORY (no spool path was writable) and lost if this process exits first"
            )
            err = LedgerWriteError(
                f"{e}. The call was not recorded in the ledger: {len(rows)} row(s) {where}",
                path=str(self.path),
                reason=e.reason,
                kept_in=kept,
                rows=len(rows),
            )
            log.debug("ledger: %s", err)  # the caller is told by the exception: no second line on stderr
            self._spooled = True
            raise err from None
        if self._spooled or self._held:  # the database answers again: write what waited, without a restart
            self._spooled = False
            n = self.replay_spool()
            log.warning("ledger: %s answers again; wrote %d spooled row(s)", self.path, n)
        if self.pm.hook.on_usage.get_hookimpls():  # building each record costs; skip it when no one listens
            for row, rid in zip(rows, ids, strict=False):
                self._hook("on_usage", record={"id": rid, **{k: v for k, v in row.items() if k != "prompt"}})
        for a in alerts:
            self._alert(a)
        return ids

    def spool_paths(self) -> list[Path]:
        """Every file this ledger's unwritten rows may wait in: beside it, then the fallbacks elsewhere."""
        return spool.candidates(Path(self.spool_path), default_home())

    def _keep(self, rows: list[dict[str, Any]], cause: LedgerError) -> Path | None:
        """Append rows to the first spool path that takes them; None when none does (kept in memory)."""
        problems = []
        for path in self.spool_paths():
            try:
                spool.append(path, rows)
                return path
            except OSError as se:
                problems.append(f"{path} ({se.strerror})")
        self._held.extend(rows)
        log.critical(
            "ledger: %s; and no spool file could be written: %s. %d row(s) are kept only in memory and will be "
            "LOST if this process exits before the ledger can be written",
            cause,
            "; ".join(problems),
            len(self._held),
        )
        return None

    def replay_spool(self) -> int:
        """Insert rows left in the spools (and in memory) by writes that failed earlier; return how many."""

        def insert(rows: list[dict[str, Any]]) -> None:
            # Row by row: a line may already be in the database (a crash between commit and truncate).
            self.store.write(lambda s: [s.insert_call(r) for r in rows])

        n = 0
        try:
            if self._held:
                held = list(self._held)
                insert(held)
                del self._held[: len(held)]
                n += len(held)
            for path in self.spool_paths():
                n += spool.replay(path, insert)
        except (LedgerBusy, LedgerUnwritable) as e:
            log.warning("ledger: spooled rows not written yet (%s)", e)
        return n

    def _hook(self, name: str, **kw: Any) -> None:
        try:
            getattr(self.pm.hook, name)(**kw)
        except Exception:  # a plugin's failure must not lose or block the ledger
            log.exception("ledger: plugin hook %s failed", name)

    def _alert(self, alert: dict[str, Any]) -> None:
        pct = int(round(alert["threshold"] * 100))
        log.warning(
            "budget alert: %s budget %s at %d%%: $%.4f of $%.2f",
            alert["budget"],
            alert["period"],
            pct,
            alert["spent_usd"],
            alert["limit_usd"],
        )
        self._hook("on_budget_alert", alert=alert)

    # -- budgets -------------------------------------------------------------------------------------------
    def check(
        self, estimated_cost: float, conversation_id: str | None = None, reserve: bool = True
    ) -> BudgetCheck:
        """allow / downgrade / block for a call estimated at `estimated_cost` USD, decided atomically.

        When allowed and a budget applies, the estimate is reserved; pass `reservation_id` to `record` (or
        `release` it if the call is not made). Unsettled reservations expire after budgets.reservation_ttl_s.
        """
        if not math.isfinite(estimated_cost) or estimated_cost < 0:  # a NaN would pass every comparison
            raise LedgerError(f"check: estimated_cost must be a finite number >= 0, got {estimated_cost}")
        b = self.budgets
        conv = None if conversation_id is None else str(conversation_id)
        if b.per_request_usd is not None and estimated_cost > b.per_request_usd:
            action = "downgrade" if b.on_exceed == "downgrade" else "block"
            return BudgetCheck(
                action,
                min(b.per_request_usd, self.remaining(conv) or b.per_request_usd),
                None,
                [f"per-request budget ${b.per_request_usd:.4f}; this call est. ${estimated_cost:.4f}"],
            )
        if not (b.daily_usd or b.monthly_usd or (b.per_conversation_usd and conv is not None)):
            return BudgetCheck("allow", None)
        rid = uuid.uuid4().hex if reserve else None
        return self.store.write(
            lambda s: budgets.decide(s, b, estimated_cost, conv, datetime.now(UTC), rid, b.reservation_ttl_s)
        )

    def release(self, reservation_id: str) -> None:
        """Drop a reservation for a call that was not made."""
        self.store.write(lambda s: s.delete_reservations([reservation_id]))

    def remaining(self, conversation_id: str | None = None) -> float | None:
        """USD left before the tightest conversation / daily / monthly budget (reservations held count as
        spent, except those of processes gone from this host, which are released here); None when no such
        budget is set. Pass it to the router as `budget_remaining_usd`."""
        b = self.budgets
        if b.daily_usd is None and b.monthly_usd is None and (
                b.per_conversation_usd is None or conversation_id is None):
            return None  # no scope applies (what budgets.scopes would find), without reading the clock
        now = datetime.now(UTC)
        conv = None if conversation_id is None else str(conversation_id)
        scs = budgets.scopes(self.budgets, now, conv)
        if not scs:
            return None
        if budgets.dead_holders(self.store):  # a read; the write only when a crashed agent left a hold
            self.store.write(budgets.release_dead)
        rooms = [budgets.headroom(self.store, sc, iso(now))[0] for sc in scs]
        return max(0.0, min(rooms))

    def budget_context(self, conversation_id: str | None = None) -> dict[str, Any]:
        """Router context keys for this conversation's budgets: `budget_remaining_usd` and `on_exceed`."""
        ctx: dict[str, Any] = {"on_exceed": self.budgets.on_exceed}
        rem = self.remaining(conversation_id)
        if rem is not None:
            ctx["budget_remaining_usd"] = rem
        if conversation_id is not None:
            ctx["conversation_id"] = conversation_id
        return ctx

    def route(
        self, router: Any, messages: list[dict[str, Any]], context: dict[str, Any] | None = None
    ) -> tuple[Any, BudgetCheck]:
        """Route within budget: remaining budget -> router -> atomic check and reservation.

        If another agent took the headroom between the two steps, route once more with the new remaining
        budget; if that still does not fit, raise the router's BudgetBlocked.
        """
        from ..router import BudgetBlocked

        ctx = dict(context or {})
        conv = ctx.get("conversation_id")
        for _ in range(2):
            d = router.route(messages, {**ctx, **self.budget_context(conv)})
            chk = self.check(d.estimated_cost_usd, conv)
            if chk.allowed:
                return d, chk
        raise BudgetBlocked("; ".join(chk.reasons) or "budget exhausted")

    # -- feedback ------------------------------------------------------------------------------------------
    def add_feedback(
        self, call_id: int, good: bool, source: str = "explicit", signal: str | None = None
    ) -> int:
        """Record a verdict on a call; returns the feedback row id."""
        if source not in ("explicit", "implicit"):
            raise LedgerError(f"feedback: source must be 'explicit' or 'implicit', got {source!r}")
        try:
            cid = int(call_id)
        except (TypeError, ValueError):
            raise LedgerError(f"feedback: call id must be a whole number, got {call_id!r}") from None
        if not 1 <= cid < 2**63:
            raise LedgerError(f"feedback: no call with id {cid} in {self.path}")
        verdict = "good" if good else "bad"
        now = iso(datetime.now(UTC))
        return self.store.write(lambda s: s.add_feedback(cid, verdict, source, signal, now))

    def outcomes(self, since: str | datetime | None = None) -> Iterator[dict[str, Any]]:
        """Each feedback verdict joined with its call:
        {call_id, task_type, model, tier, good, source, signal, time, sketch, cost_usd}."""
        from .reports import parse_since

        s = parse_since(since) if since is not None else None
        for r in self.store.outcomes(s):
            yield {
                "call_id": r["call_id"],
                "task_type": r["task_type"],
                "model": r["model"],
                "tier": r["tier"],
                "good": r["verdict"] == "good",
                "source": r["source"],
                "signal": r["signal"],
                "time": r["time"],
                "sketch": r["sketch"],
                "cost_usd": r["cost_usd"],
            }
