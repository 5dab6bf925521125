"""The gateway's pipeline for one request, the in-process hooks' pipeline reused: the `Runtime` routes (the
conversation's state and overrides), `compress_prompt` fits the prompt, `_within_budget` checks and reserves
the budget atomically, the async provider client calls with failover, and `Ledger.attempt_recorder` writes one
row per attempt. Ledger I/O runs on one thread of its own, in order, so the event loop never waits on a
database lock; rows are written after the answer is on its way, and the budget reservation holds until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..builtins.host_loop import _track_answer, _within_budget, compress_prompt
from ..errors import AgentRouterError, InputError
from ..ledger.errors import LedgerWriteError
from ..providers import types as t
from ..providers import wire_openai
from ..providers.aio import AsyncProviderClient
from ..providers.client import ProviderClient, wire_for
from ..router import BudgetBlocked, Decision, NoModelFits
from ..runtime.core import Runtime
from ..settings import TIERS, Settings
from .errors import BadRequest, GatewayError, NotFound, OverBudget, Upstream
from .keys import MASTER, ClientKey, KeyStore

log = logging.getLogger("agent_router.gateway")
ROUTED = ("auto", "router", "agent-router", "")
# Conversation ids kept in memory for overrides across requests; the oldest are forgotten beyond this.
MAX_CONVERSATIONS = 50_000


class GatewayAdapter:
    """The host adapter of the gateway: requests arrive whole, so only the name is needed by the Runtime."""

    name = "gateway"


@dataclass
class Prepared:
    decision: Decision
    messages: list[dict[str, Any]]
    reservation_id: str | None
    routed: bool
    conversation_id: str
    key: ClientKey
    reasons: list[str] = field(default_factory=list)
    key_reserved: float = 0.0  # USD counted against the key's budget before the call, settled with its rows


# json.dumps(x, sort_keys=True, ensure_ascii=False, default=str), without building an encoder per call
_HEAD_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str).encode


def conversation_id(headers: Mapping[str, str], body: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """X-Conversation-Id, else the request's `user`, else a hash of the conversation's first messages (system
    and first user message), which stay the same as the conversation grows."""
    h = headers.get("x-conversation-id")
    if h:
        return h[:200]
    user = body.get("user") or (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        return f"user:{user[:200]}"
    head = []
    for m in messages:
        head.append(m)
        if m.get("role") == "user":
            break
    raw = _HEAD_JSON(head[:3])[:100_000]
    return "h:" + hashlib.sha256(raw.encode()).hexdigest()[:24]


class Gateway:
    """One per process: settings, runtime, async provider client, keys, the ledger thread."""

    def __init__(self, settings: Settings, *, env: Mapping[str, str] | None = None, ledger: Any = None):
        over = settings.gateway.over_budget
        if over and over != settings.budgets.on_exceed:
            settings = settings.model_copy(
                update={"budgets": settings.budgets.model_copy(update={"on_exceed": over})}
            )
        self.settings = settings
        self.rt = Runtime(settings, GatewayAdapter(), ledger=ledger, agent_name="gateway")  # type: ignore[arg-type]
        self.ledger = self.rt.ledger
        self.catalog = self.rt.catalog
        self.sync_client = ProviderClient(settings, catalog=self.catalog, counter=self.rt.counter, env=env)
        self.client = AsyncProviderClient(self.sync_client)
        self.env = os.environ if env is None else env
        self.keys = KeyStore(self.ledger, self.env.get(settings.gateway.master_key_env), self.sync_client.state)
        self.io = ThreadPoolExecutor(1, thread_name_prefix="agent-router-ledger")
        self.writer = LedgerWriter(self)
        b = settings.budgets
        self.budgets_on = bool(b.per_conversation_usd or b.daily_usd or b.monthly_usd or b.per_request_usd)
        self.block = settings.budgets.on_exceed == "block"
        self._wire_openai = {m.alias: wire_for(m.provider) is wire_openai for m in self.catalog}
        for m in self.catalog:  # the tokenizers load now, not during the first request
            self.rt.counter.load_full(m.provider, m.name)
        _ = self.rt.router.learned  # so do the learned router's weights (when learned routing is on)
        if settings.compression.enabled:  # and the compressor (~80 ms of imports on the first request)
            with contextlib.suppress(ImportError):  # absent: compress_prompt says so in each decision
                from ..compression import compressor  # noqa: F401

    async def aclose(self) -> None:
        await self.client.aclose()
        self.writer.close()
        self.io.shutdown(wait=True)  # every row handed to the ledger thread is written before exit
        try:
            self.ledger.close()
        except AgentRouterError as e:
            log.error("%s", e)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self.io.submit(fn, *args)

    # -- deciding ------------------------------------------------------------------------------------------
    def override_for(self, model: Any) -> dict[str, Any] | None:
        """None for a routed request; {"tier": t} or {"model": alias} for a named tier or model."""
        if model is None or (isinstance(model, str) and model.lower() in ROUTED):
            return None
        if not isinstance(model, str):
            raise BadRequest("model: a string is required", param="model")
        if model in TIERS:
            return {"tier": model, "reason": "requested by the client"}
        m = self.catalog.find(model)
        if m is None:
            raise NotFound(
                f"model {model!r}: not 'auto', a tier ({', '.join(TIERS)}) or a configured model "
                f"({', '.join(x.alias for x in self.catalog)})",
                param="model",
            )
        return {"model": m.alias, "reason": "requested by the client"}

    def needs_thread(self, key: ClientKey) -> bool:
        """Whether preparing touches the database (budgets): then it runs on the ledger thread."""
        return self.budgets_on or key.budget_usd is not None

    def prepare(
        self,
        messages: list[dict[str, Any]],
        override: dict[str, Any] | None,
        conv: str,
        key: ClientKey,
        require: list[str],
    ) -> Prepared:
        """Route, compress and check the budget (reserving the estimate); raises a GatewayError."""
        rt = self.rt
        ctx: dict[str, Any] = {}
        if key.max_tier:
            ctx["max_tier"] = key.max_tier
        if require:
            ctx["require"] = require
        unhealthy = self.sync_client.cooling_down()
        if unhealthy:
            ctx["unhealthy"] = unhealthy
        key_left = None
        if key.budget_usd is not None:
            key_left = max(0.0, key.budget_usd - self.keys.spent(key.name))
            if key_left <= 0:
                raise OverBudget(f"key {key.name!r}: budget ${key.budget_usd:.4f} spent")
            ctx["budget_remaining_usd"] = key_left
        if len(rt._states) > MAX_CONVERSATIONS:
            with rt._lock:
                for k in list(rt._states)[: MAX_CONVERSATIONS // 10]:
                    del rt._states[k]
        try:
            if override is None:
                d = rt.route_turn(conv, messages, ctx)
            else:
                d = rt.route(conv, messages, "chat", override, ctx)
            # The router counted this very list on the chosen model (a gateway request's texts are clean
            # already, so validation keeps the list): the compression and budget checks reuse that count.
            m = self.catalog.find(d.model)
            n_in = d.estimated_input_tokens if m is not None and (m.provider, m.name) == (
                d.provider, d.model_name) else None
            msgs = messages
            if self.settings.compression.enabled:
                res = compress_prompt(rt, messages, d, n_in)
                if res is not None:
                    msgs, n_in = res.messages, None
            d, rid = _within_budget(rt, conv, d, msgs, "chat", override, n_in)
        except BudgetBlocked as e:
            raise OverBudget(f"over budget: {e}") from None
        except NoModelFits as e:
            raise BadRequest(str(e), code="no_model_fits") from None
        except InputError as e:
            raise BadRequest(str(e), param="messages") from None
        held = 0.0
        if key_left is not None:  # reserved atomically: concurrent requests cannot share the key's headroom
            est = d.estimated_cost_usd
            if est > key_left or not self.keys.reserve(key.name, est):
                if rid:
                    self.ledger.release(rid)
                left = max(0.0, (key.budget_usd or 0.0) - self.keys.spent(key.name))
                raise OverBudget(f"key {key.name!r}: ${left:.4f} left of ${key.budget_usd:.4f} (calls in flight "
                                 f"count); this call est. ${est:.4f}")
            held = est
        return Prepared(d, msgs, rid, override is None, conv, key, key_reserved=held)

    def openai_upstream(self, d: Decision) -> bool:
        return all(self._wire_openai.get(a, False) for a in (d.model, *d.fallbacks))

    # -- recording -----------------------------------------------------------------------------------------
    def recorder(self, p: Prepared) -> CallLog:
        return CallLog(self, p)

    def cost(self, alias: str, rec: dict[str, Any] | t.Usage) -> float:
        try:
            m = self.catalog.get(alias)
        except AgentRouterError:
            return 0.0
        if isinstance(rec, t.Usage):
            return m.price.cost(rec.input_tokens, rec.output_tokens, rec.cached_input_tokens, rec.cache_write_tokens)
        return m.price.cost(rec.get("input_tokens") or 0, rec.get("output_tokens") or 0,
                            rec.get("cached_input_tokens") or 0, rec.get("cache_write_tokens") or 0)


class CallLog:
    """The attempt callback of one request: attempts are collected as the provider client reports them and
    handed to the ledger writer by `flush()` once the answer has been sent, so the event loop does not share
    the interpreter with a ledger write while it answers. A request that made no attempt releases its budget
    reservation instead."""

    def __init__(self, gw: Gateway, p: Prepared):
        self.gw, self.p = gw, p
        self.fields = {"conversation_id": p.conversation_id, "agent_id": p.key.name,
                       "reservation_id": p.reservation_id, "estimated_cost_usd": p.decision.estimated_cost_usd}
        self.seen: list[dict[str, Any]] = []  # the attempts, written (and priced) on the ledger thread
        self._flushed = False

    def __call__(self, rec: dict[str, Any]) -> None:
        self.seen.append(rec)

    def flush(self) -> None:
        if not self._flushed:
            self._flushed = True
            self.gw.writer.put(self)


class LedgerWriter:
    """Writes the calls of finished requests on the ledger thread: every request waiting when the thread gets
    to them goes into one transaction (`Ledger.record_many`, ~30x cheaper per row than one transaction each);
    requests with failovers are written attempt by attempt so each row links the one it replaced.

    A request finishing on an idle writer starts a short gathering window (`WINDOW_S`, on the event loop's
    timer, so the ledger thread stays free for budget checks) before the thread writes: back-to-back requests
    then share a transaction instead of each paying one, which under load is most of what the gateway adds.
    50 ms, not 10: each batch costs a thread wake-up, the interpreter lock passed back and forth and a commit;
    at ~1,000 sequential calls a second, 10 ms batches cost ~150 us of CPU per call more and 0.17 ms of added
    p50 (`bench/gateway.py --baseline` a copy with 10 ms, one interleaved run). A row reaches the ledger (and
    the dashboard) at most ~50 ms after its answer; a clean stop still writes every row.
    A full window's worth (`BATCH`) is handed over at once; `close()` hands over whatever waits, so a clean
    stop writes every row. Budgets are unaffected: a request's reservation holds until its row is written.
    Requests that finish while a batch is being written wait for a window of their own rather than being written
    as soon as the thread is free: chasing them wrote ~12 rows per transaction at ~1,000 sequential calls a
    second (each transaction's commit, wake-up and lock hand-over paid for a dozen rows, not ~50)."""

    WINDOW_S = 0.05
    BATCH = 256

    def __init__(self, gw: Gateway):
        self.gw = gw
        self._lock = threading.Lock()
        self._queue: list[CallLog] = []
        self._scheduled = False  # a drain is due (timer set) or running
        self._timer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop that times the windows

    def put(self, c: CallLog) -> None:
        with self._lock:
            self._queue.append(c)
            if self._scheduled and (self._timer is None or len(self._queue) < self.BATCH):
                return
            self._scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop: hand over now
            loop = None
        if loop is None or self._timer is not None:
            self._submit()
        else:
            self._loop = loop
            self._timer = loop.call_later(self.WINDOW_S, self._submit)

    def _submit(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.gw.io.submit(self._drain).add_done_callback(_log_failure)
        except RuntimeError:  # the ledger thread has stopped (shutting down): write here rather than lose rows
            self._drain()

    def close(self) -> None:
        """Hand every waiting call to the ledger thread now (before it is shut down)."""
        if self._timer is not None or self._queue:
            self._submit()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._scheduled = False
                    return
            try:
                self._write(batch)
            except Exception as e:  # logged; the ledger has kept (spooled) what it could not write
                log.error("ledger write failed: %s", e)
            if self._next_window():
                return

    def _next_window(self) -> bool:
        """After a write: True when the calls that finished meanwhile (if any) are left to a gathering window of
        their own; False when the drain goes on at once (a full batch waits, or no event loop times windows)."""
        loop = self._loop
        with self._lock:
            if loop is None or len(self._queue) >= self.BATCH:
                return False
            self._scheduled = False
            if not self._queue:
                return True
        try:
            loop.call_soon_threadsafe(self._open_window)
        except RuntimeError:  # the event loop has closed: write them now
            with self._lock:
                self._scheduled = True
            return False
        return True

    def _open_window(self) -> None:
        """On the event loop: start a gathering window for calls waiting with none due (a put() since may have
        started one already)."""
        with self._lock:
            if self._scheduled or not self._queue:
                return
            self._scheduled = True
        self._timer = self._loop.call_later(self.WINDOW_S, self._submit)  # type: ignore[union-attr]

    def _write(self, batch: list[CallLog]) -> None:
        """One transaction for the batch's one-attempt requests and their keys' spend; requests with several
        attempts (failovers) row by row after it, each linked to the row it replaced."""
        gw = self.gw
        led = gw.ledger
        spend: dict[str, float] = {}
        for c in batch:  # the key's reservation gives way to the real cost (or to nothing: no call was made)
            if c.p.key.stored:
                usd = sum(gw.cost(rec["model"], rec) for rec in c.seen) - c.p.key_reserved
                spend[c.p.key.name] = spend.get(c.p.key.name, 0.0) + usd
        spend = {k: v for k, v in spend.items() if v}
        simple = [c for c in batch if len(c.seen) == 1]
        rows = [led.attempt_fields(c.seen[0], c.p.decision, **c.fields) for c in simple]
        ids: list[int] = []
        ran = False  # the keys' spend went into the batch's transaction (committed when its rows have ids)
        if rows:
            keys_tx = gw.keys.spend_in(spend) if spend else None

            def also(store: Any) -> None:
                nonlocal ran
                if keys_tx is not None:
                    keys_tx(store)
                ran = True

            try:
                ids = led.record_many(rows, also=also)
            except LedgerWriteError as e:  # kept in the ledger's spool and written when it can be
                log.error("%s", e)
            except AgentRouterError as e:  # one bad row must not cost the others: write them one by one
                log.warning("ledger batch refused (%s); writing row by row", e)
                simple = []
        batched = {id(c) for c in simple}
        for c in batch:
            if id(c) in batched:
                continue
            if not c.seen:  # no call was made: its reservation is released
                if c.p.reservation_id:
                    led.release(c.p.reservation_id)
                continue
            on = led.attempt_recorder(c.p.decision, **c.fields)
            for rec in c.seen:
                rid = on(rec)
                if rec.get("outcome") == "ok" and c.p.routed and rid is not None:
                    _track_answer(gw.rt, c.p.conversation_id, rid)
        if len(ids) == len(simple):
            for i, c in enumerate(simple):
                if c.seen[0].get("outcome") == "ok" and c.p.routed:
                    _track_answer(gw.rt, c.p.conversation_id, ids[i])
        if not (ran and ids and len(ids) == len(rows)):  # no committed batch (spooled, refused, or none)
            for name, usd in spend.items():
                gw.keys.add_spend(name, usd)


def upstream_error(e: t.ProviderError) -> GatewayError:
    """A provider failure as the gateway answers it: the upstream's 4xx kind when it is the caller's fault."""
    status = {t.BAD_REQUEST: 400, t.CONTEXT_LENGTH: 400, t.CONTENT_POLICY: 400, t.RATE_LIMIT: 429,
              t.TIMEOUT: 504}.get(e.kind, 502)
    err = Upstream(str(e), status=status, code=e.kind)
    if e.kind == t.RATE_LIMIT and e.retry_after:
        err.headers["Retry-After"] = str(max(1, int(e.retry_after)))
    return err


def _log_failure(f: Future) -> None:
    e = f.exception()
    if e is not None:
        log.error("ledger write failed: %s", e)


__all__ = ["Gateway", "GatewayError", "MASTER", "Prepared", "conversation_id", "upstream_error"]
