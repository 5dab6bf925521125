"""The attempt planner: the one set of rules both provider clients follow for a call.

`Plan.steps()` decides, without any I/O and without sleeping: which model of the chain and which key to try
next, whether to wait (rate limits, Retry-After, backoff), retry, fail over or give up, and what to record for
each attempt (ledger record, health, limits, key set-asides). It yields a `Wait` (the driver sleeps:
`time.sleep` in `ProviderClient`, `asyncio.sleep` in `AsyncProviderClient`) or a `Try` (the driver makes the
HTTP exchange and sets `completion` or `error` on it, and `emitted` once part of a streamed answer reached
its caller). The loop ends after the first answer; every way of failing raises.

Why a hand-written loop and not tenacity: each decision depends on the error kind and on shared state (rotate to
the next key on 401 or a per-key 429, fail over at once on a context-length error, wait out Retry-After only
when it fits the budget, stop at the call's deadline, never retry a stream that already produced output), and
the backoff itself is two lines. tenacity would wrap only those two lines while the state machine stayed ours.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..catalog import ModelInfo
from . import types as t
from .keys import Secret
from .wires import parser_text

if TYPE_CHECKING:
    from .client import ProviderClient

Record = dict[str, Any]


@dataclass(slots=True)
class Wait:
    """Sleep this long, then ask for the next step."""

    seconds: float


@dataclass(slots=True)
class Try:
    """Send the request to `model` with `key`; set `completion` or `error` before asking for the next step."""

    model: ModelInfo
    key: Secret | None
    t0: float  # perf_counter at the start: the attempt's latency
    prev: str | None  # id of the previous attempt's record (`fallback_of`)
    n: int  # 1-based attempt number within the call
    emitted: bool = False  # part of the answer already reached the caller: never switch models silently
    completion: t.Completion | None = None
    error: t.ProviderError | None = None

    def take(self, d: t.Delta) -> bool:
        """Note one delta of this attempt's stream: True if it goes on to the caller (text, tool-call parts),
        False for the closing one that carries the completion."""
        if d.completion is not None:
            self.completion = d.completion
            return False
        self.emitted = True
        return True


class Plan:
    """One call's attempts. `client` supplies the catalog, settings and shared state (health, limits, keys);
    `on_attempt` is called with each record after the client's own `on_attempt`."""

    __slots__ = ("c", "ps", "kind", "on_attempt", "req", "chain", "deadline", "attempts", "skipped", "answer")

    def __init__(
        self,
        client: ProviderClient,
        model: Any,
        messages: list[dict[str, Any]],
        fallbacks: list[str] | None,
        kind: str,
        opts: dict[str, Any],
        on_attempt: Callable[[Record], Any] | None = None,
    ):
        self.c = client
        self.ps = client.ps
        self.kind = kind
        self.on_attempt = on_attempt
        self.req = t.Request(messages=messages, **opts)
        self.chain = self._chain(model, fallbacks)
        self.deadline = time.monotonic() + self.ps.deadline_s if self.ps.deadline_s else None
        self.attempts: list[Record] = []
        self.skipped: list[str] = []
        self.answer: t.Completion | None = None  # set when an attempt succeeded and steps() has ended

    # -- the rules -------------------------------------------------------------------------------------------
    def steps(self) -> Iterator[Wait | Try]:
        c, ps = self.c, self.ps
        attempts, skipped = self.attempts, self.skipped
        last: t.ProviderError | None = None
        min_window = 0
        for alias in self.chain:
            m = c.catalog.get(alias)
            if m.context_window <= min_window:
                skipped.append(f"{alias}: window {m.context_window:,} not larger")
                continue
            if not c.health.available(alias):
                skipped.append(f"{alias}: cooling down")
                continue
            r = c.route(m)
            endpoint, envs = r.endpoint, r.envs
            keys: list[Secret | None] = list(c.keys.rotation(r.group, envs, endpoint)) if envs else []
            if not keys:
                if r.needs_key:
                    why, reason = self._no_key(m, endpoint)
                    last = t.ProviderError(why, reason, model=alias)
                    skipped.append(f"{alias}: {reason}")
                    continue
                keys = [None]
            retries = 0
            while keys:
                key = self._unblocked(alias, keys)
                wait = self._wait_for_limits(alias, m, key)
                if wait > 0:
                    if not self._can_wait(wait):
                        last = t.ProviderError(
                            t.RATE_LIMIT, f"rate limit reached; next slot in {wait:.1f}s", model=alias,
                            retry_after=wait,
                        )
                        skipped.append(f"{alias}: rate limited for {wait:.1f}s")
                        break
                    yield Wait(wait)
                    key = self._unblocked(alias, keys)
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    tried = "; ".join(f"{r['model']}: {r['error_kind']}" for r in attempts) or "none tried"
                    raise t.AllModelsFailed(
                        t.TIMEOUT,
                        f"deadline_s={ps.deadline_s:g}s reached before any model answered ({tried})",
                        attempts=attempts,
                    )
                step = Try(m, key, time.perf_counter(), attempts[-1]["id"] if attempts else None, len(attempts) + 1)
                yield step
                e = step.error
                if e is None:
                    comp = step.completion
                    assert comp is not None, "the driver sets completion or error on each Try"
                    rec = self.record(step, comp, None)
                    c.health.success(alias)
                    comp.alias, comp.provider, comp.attempts = alias, m.provider, attempts
                    comp.latency_ms = rec["latency_ms"]
                    self.answer = comp
                    return
                err = e
                if step.emitted and not isinstance(e, t.StreamBroken):
                    err = t.StreamBroken(f"stream failed after partial output: {e}", model=alias)
                self.record(step, None, err)
                c.health.failure(alias, err.kind)
                last = err
                if step.emitted:  # the caller already has part of the answer: never silently switch models
                    err.attempts = attempts
                    raise err from None
                if e.kind == t.AUTH and key is not None:
                    c.keys.set_aside(key, endpoint)  # only here: another endpoint may accept it
                    skipped.append(f"{alias}: key in {key.env} rejected by {endpoint}")
                    keys.remove(key)
                    continue
                if e.kind == t.RATE_LIMIT:
                    c.limiter.add(alias, rpm=-1)  # refused requests do not use the server's quota
                    c.limiter.learn(alias, getattr(e, "announced", {}), m.config.rate_limits)
                    if key is not None and e.retry_after:
                        block(c, alias, key, e.retry_after)
                        if any(blocked_for(c, alias, k) == 0 for k in keys):
                            continue  # another key is not limited: use it now
                if e.kind not in t.RETRYABLE or retries >= ps.max_retries:
                    break
                wait = e.retry_after if e.retry_after is not None else self._backoff(retries)
                if not self._can_wait(wait):
                    if e.kind == t.RATE_LIMIT:
                        c.health.trip(alias, min(wait, 3600))  # skip it until the server's reset
                    break
                retries += 1
                yield Wait(wait)
            if last is not None and last.kind not in t.FAILOVER:
                last.attempts = attempts
                raise last
            if last is not None and last.kind == t.CONTEXT_LENGTH:
                min_window = max(min_window, m.context_window)
        tried = "; ".join(f"{r['model']}: {r['error_kind']}" for r in attempts)
        detail = "; ".join(x for x in (tried, *skipped) if x)
        raise t.AllModelsFailed(last.kind if last else t.COOLDOWN, f"every model failed ({detail})", attempts=attempts)

    def final(self, stream: bool) -> tuple[t.Delta, ...]:
        """After steps() ended: a stream's tool calls, then the Delta that carries the completion."""
        c = self.answer
        assert c is not None, "steps() ended without an answer"
        if stream and c.tool_calls:
            return (*(t.Delta(tool_call=tc) for tc in c.tool_calls), t.Delta(completion=c))
        return (t.Delta(completion=c),)

    # -- records ---------------------------------------------------------------------------------------------
    def record(self, step: Try, comp: t.Completion | None, err: t.ProviderError | None) -> Record:
        rec = self.c._record(self.kind, step.model, comp, step.t0, err, step.prev, step.n, self.req)
        self.attempts.append(rec)
        if self.on_attempt is not None:
            self.on_attempt(rec)
        return rec

    def cancelled(self, step: Try, parser: Any) -> None:
        """The caller stopped reading `step`'s stream: record what was generated so far (it is paid for)."""
        u = getattr(parser, "usage", None)
        partial = t.Completion(
            text=parser_text(parser) if parser is not None else "",
            tool_calls=[],
            finish_reason="other",
            usage=u if isinstance(u, t.Usage) else t.Usage(source="estimated"),
            model=step.model.name,
        )
        why = "the client stopped reading; upstream request closed"
        self.record(step, partial, t.ProviderError(t.CANCELLED, why, model=step.model.alias))

    # -- what the rules read -----------------------------------------------------------------------------------
    def _chain(self, model: Any, fallbacks: list[str] | None) -> list[str]:
        catalog = self.c.catalog
        if hasattr(model, "model") and hasattr(model, "fallbacks"):  # a router Decision
            alias, chain = model.model, list(model.fallbacks) if fallbacks is None else fallbacks
        else:
            alias = catalog.get(model).alias
            chain = fallbacks if fallbacks is not None else self.c.settings.routing.fallbacks.get(alias, [])
        out = [alias]
        for a in chain:
            a = catalog.get(a).alias
            if a not in out:
                out.append(a)
        return out

    def _backoff(self, retry: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^retry)].
        return random.uniform(0, min(self.ps.backoff_max_s, self.ps.backoff_base_s * (2**retry)))

    def _no_key(self, m: ModelInfo, endpoint: str) -> tuple[str, str]:
        """(error kind, reason) `m` has no key to try: a value that cannot be sent, keys this endpoint
        rejected, or none set. Names variables, never values."""
        keys = self.c.keys
        envs = m.config.key_envs()
        unusable = keys.unusable(envs)
        rejected = [k.env for k in keys.present(envs) if keys.is_set_aside(k, endpoint)]
        if unusable:
            return t.NO_KEY, "; ".join(unusable)
        if rejected:
            return t.AUTH, (
                f"key in {', '.join(rejected)} was rejected by {endpoint} and is set aside there "
                f"for up to {self.ps.key_set_aside_s:g}s"
            )
        return t.NO_KEY, f"no API key set ({', '.join(envs) or 'api_key_env unset'})"

    def _can_wait(self, wait: float) -> bool:
        if wait > self.ps.max_retry_wait_s:
            return False
        return self.deadline is None or time.monotonic() + wait < self.deadline

    def _unblocked(self, alias: str, keys: list[Secret | None]) -> Secret | None:
        """The first key not rate-limited; else the one free soonest."""
        if len(keys) == 1:
            return keys[0]
        return min(keys, key=lambda k: blocked_for(self.c, alias, k))

    def _wait_for_limits(self, alias: str, m: ModelInfo, key: Secret | None) -> float:
        wait = blocked_for(self.c, alias, key)
        limiter = self.c.limiter
        limits = limiter.limits(alias, m.config.rate_limits)
        if limits:
            est = estimate_input(self.req) if "input_tpm" in limits else 0
            wait = max(wait, limiter.wait_s(alias, limits, est))
        return wait


def estimate_input(req: t.Request) -> int:
    # A limiter needs a fast upper-ish bound, not a tokenizer: about 4 characters per token.
    return sum(
        len(m["content"]) if isinstance(m.get("content"), str) else len(json.dumps(m.get("content")))
        for m in req.messages
    ) // 4 + 4 * len(req.messages)


def block(client: Any, alias: str, key: Secret, seconds: float) -> None:
    """Rest `key` on `alias` for `seconds` (a 429's Retry-After, or exhausted rate-limit headers)."""
    client.state.set(f"block:{alias}:{key.env}", client.clock() + seconds, ttl_s=min(seconds, 86400))


def blocked_for(client: Any, alias: str, key: Secret | None) -> float:
    if key is None:
        return 0.0
    until = client.state.get(f"block:{alias}:{key.env}")
    return max(0.0, until - client.clock()) if until else 0.0
