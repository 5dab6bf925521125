"""AsyncProviderClient: the provider client on asyncio, with no thread per call.

The HTTP exchange runs on aiohttp (C-parsed HTTP/1.1, a keep-alive connection pool); everything else is the
sync `ProviderClient`'s, used as is: the wire formats (`_prepare`, `_decode`, each wire's StreamParser), the
error classification (`_http_error`, `classify`), health, rate limits, key rotation, attempt records and the
token counting of usage a server did not report. Only the attempt loop is written twice, because a loop that
awaits cannot share a body with one that blocks; both follow the same rules (see ProviderClient's docstring).

A consumer that stops reading a stream (the caller's task is cancelled, or it closes the iterator) ends the
upstream request at once, and the attempt is recorded with outcome `cancelled` and the usage of what was
generated so far (reported by the server when it had sent it, else counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..catalog import ModelInfo
from . import types as t
from .classify import learned_limits  # noqa: F401  (re-exported for callers reading announced limits)
from .client import MAX_BODY_BYTES, ProviderClient, base_url_for, needs_key, parser_text, wire_for
from .keys import Secret, redact
from .shape import ShapeError

Record = dict[str, Any]
CANCELLED = "cancelled"  # the attempt's error kind when the caller stopped reading


class _Resp:
    """What ProviderClient._http_error reads of a response, from an aiohttp one."""

    def __init__(self, resp: Any):
        self.status_code = resp.status
        self.reason_phrase = resp.reason or ""
        self.headers = resp.headers


class AsyncProviderClient:
    """`await complete(...)`, `async for d in stream(...)`; arguments as ProviderClient's, plus `on_attempt`
    per call (in addition to the client's). Create and use it inside one event loop."""

    def __init__(self, client: ProviderClient | None = None, *, max_workers: int = 256, **kw: Any):
        self.client = client or ProviderClient(**kw)
        self.limit = max_workers  # connections kept open per process (the old thread pool's size)
        self._session: Any = None

    # -- the HTTP session ------------------------------------------------------------------------------------
    def _http(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            ps = self.client.ps
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit, ttl_dns_cache=300, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=ps.connect_timeout_s),
                read_bufsize=2**20,  # SSE lines of large tool calls
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.client.close()

    async def __aenter__(self) -> AsyncProviderClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- public API --------------------------------------------------------------------------------------------
    async def complete(
        self,
        model: Any,
        messages: list[dict[str, Any]],
        *,
        fallbacks: list[str] | None = None,
        kind: str = "chat",
        on_attempt: Callable[[Record], Any] | None = None,
        **opts: Any,
    ) -> t.Completion:
        out = None
        async for d in self._run(model, messages, fallbacks, kind, False, opts, on_attempt):
            out = d.completion or out
        assert out is not None
        return out

    def stream(
        self,
        model: Any,
        messages: list[dict[str, Any]],
        *,
        fallbacks: list[str] | None = None,
        kind: str = "chat",
        on_attempt: Callable[[Record], Any] | None = None,
        **opts: Any,
    ) -> AsyncIterator[t.Delta]:
        """Text deltas, then tool calls, then one Delta with the `completion`; failover only before the first
        delta."""
        return self._run(model, messages, fallbacks, kind, True, opts, on_attempt)

    def cooling_down(self) -> list[str]:
        return self.client.cooling_down()

    # -- the attempt loop (ProviderClient._attempt_chain, awaiting) -------------------------------------------
    def _record(
        self, on_attempt: Callable[[Record], Any] | None, kind: str, m: ModelInfo, c: t.Completion | None,
        t0: float, err: t.ProviderError | None, prev: str | None, n: int, req: t.Request,
    ) -> Record:
        rec = self.client._record(kind, m, c, t0, err, prev, n, req)
        if err is not None and err.kind == CANCELLED:
            rec["outcome"] = CANCELLED
        if on_attempt is not None:
            on_attempt(rec)
        return rec

    async def _run(
        self,
        model: Any,
        messages: list[dict[str, Any]],
        fallbacks: list[str] | None,
        kind: str,
        stream: bool,
        opts: dict[str, Any],
        on_attempt: Callable[[Record], Any] | None,
    ) -> AsyncIterator[t.Delta]:
        c = self.client
        ps = c.ps
        req = t.Request(messages=messages, **opts)
        chain = c._chain(model, fallbacks)
        deadline = time.monotonic() + ps.deadline_s if ps.deadline_s else None
        attempts: list[Record] = []
        skipped: list[str] = []
        last: t.ProviderError | None = None
        min_window = 0
        for alias in chain:
            m = c.catalog.get(alias)
            if m.context_window <= min_window:
                skipped.append(f"{alias}: window {m.context_window:,} not larger")
                continue
            if not c.health.available(alias):
                skipped.append(f"{alias}: cooling down")
                continue
            endpoint = base_url_for(m)
            keys: list[Secret | None] = list(c.keys.rotation(c._group(m), m.config.key_envs(), endpoint))
            if not keys:
                if needs_key(m):
                    why, reason = c._no_key(m, endpoint)
                    last = t.ProviderError(why, reason, model=alias)
                    skipped.append(f"{alias}: {reason}")
                    continue
                keys = [None]
            retries = 0
            while keys:
                key = c._unblocked(alias, keys)
                wait = c._wait_for_limits(alias, m, req, key, keys)
                if wait > 0:
                    if not c._can_wait(wait, deadline):
                        last = t.ProviderError(
                            t.RATE_LIMIT, f"rate limit reached; next slot in {wait:.1f}s", model=alias,
                            retry_after=wait,
                        )
                        skipped.append(f"{alias}: rate limited for {wait:.1f}s")
                        break
                    await asyncio.sleep(wait)
                    key = c._unblocked(alias, keys)
                if deadline is not None and time.monotonic() >= deadline:
                    tried = "; ".join(f"{r['model']}: {r['error_kind']}" for r in attempts) or "none tried"
                    raise t.AllModelsFailed(
                        t.TIMEOUT,
                        f"deadline_s={ps.deadline_s:g}s reached before any model answered ({tried})",
                        attempts=attempts,
                    )
                prev = attempts[-1]["id"] if attempts else None
                t0 = time.perf_counter()
                emitted = False
                parser = wire_for(m.provider).StreamParser(m.name) if stream else None
                try:
                    if stream:
                        done: t.Completion | None = None
                        async with contextlib.aclosing(self._send_stream(m, key, req, deadline, parser)) as gen:
                            async for d in gen:
                                if d.completion is not None:
                                    done = d.completion
                                else:
                                    emitted = True
                                    yield d
                        assert done is not None
                        comp = done
                    else:
                        comp = await self._send(m, key, req, deadline)
                except t.ProviderError as e:
                    err = e
                    if emitted and not isinstance(e, t.StreamBroken):
                        err = t.StreamBroken(f"stream failed after partial output: {e}", model=alias)
                    attempts.append(self._record(on_attempt, kind, m, None, t0, err, prev, len(attempts) + 1, req))
                    c.health.failure(alias, err.kind)
                    last = err
                    if emitted:
                        err.attempts = attempts
                        raise err from None
                    if e.kind == t.AUTH and key is not None:
                        c.keys.set_aside(key, endpoint)
                        skipped.append(f"{alias}: key in {key.env} rejected by {endpoint}")
                        keys.remove(key)
                        continue
                    if e.kind == t.RATE_LIMIT:
                        c.limiter.add(alias, rpm=-1)
                        c.limiter.learn(alias, getattr(e, "announced", {}), m.config.rate_limits)
                        if key is not None and e.retry_after:
                            c.state.set(
                                f"block:{alias}:{key.env}", time.time() + e.retry_after,
                                ttl_s=min(e.retry_after, 86400),
                            )
                            if any(c._blocked_for(alias, k) == 0 for k in keys):
                                continue
                    if e.kind not in t.RETRYABLE or retries >= ps.max_retries:
                        break
                    wait = e.retry_after if e.retry_after is not None else c._backoff(retries)
                    if not c._can_wait(wait, deadline):
                        if e.kind == t.RATE_LIMIT:
                            c.health.trip(alias, min(wait, 3600))
                        break
                    retries += 1
                    await asyncio.sleep(wait)
                    continue
                except (GeneratorExit, asyncio.CancelledError):
                    # The caller stopped reading: what was generated so far is paid for, so it is recorded.
                    self._record_cancelled(on_attempt, kind, m, parser, t0, prev, len(attempts) + 1, req)
                    raise
                rec = self._record(on_attempt, kind, m, comp, t0, None, prev, len(attempts) + 1, req)
                attempts.append(rec)
                c.health.success(alias)
                comp.alias, comp.provider, comp.attempts = alias, m.provider, attempts
                comp.latency_ms = rec["latency_ms"]
                if stream:
                    for tc in comp.tool_calls:
                        yield t.Delta(tool_call=tc)
                yield t.Delta(completion=comp)
                return
            if last is not None and last.kind not in t.FAILOVER:
                last.attempts = attempts
                raise last
            if last is not None and last.kind == t.CONTEXT_LENGTH:
                min_window = max(min_window, m.context_window)
        tried = "; ".join(f"{r['model']}: {r['error_kind']}" for r in attempts)
        detail = "; ".join(x for x in (tried, *skipped) if x)
        raise t.AllModelsFailed(last.kind if last else t.COOLDOWN, f"every model failed ({detail})", attempts=attempts)

    def _record_cancelled(
        self, on_attempt: Callable[[Record], Any] | None, kind: str, m: ModelInfo, parser: Any, t0: float,
        prev: str | None, n: int, req: t.Request,
    ) -> None:
        usage = None
        if parser is not None:
            u = getattr(parser, "usage", None)
            if isinstance(u, t.Usage):
                usage = u
        partial = t.Completion(
            text=parser_text(parser) if parser is not None else "",
            tool_calls=[],
            finish_reason="other",
            usage=usage or t.Usage(source="estimated"),
            model=m.name,
        )
        err = t.ProviderError(CANCELLED, "the client stopped reading; upstream request closed", model=m.alias)
        try:
            self._record(on_attempt, kind, m, partial, t0, err, prev, n, req)
        except Exception:  # recording must not hide the cancellation
            import logging

            logging.getLogger("agent_router.providers").exception("recording a cancelled stream failed")

    # -- one HTTP exchange -------------------------------------------------------------------------------------
    def _timeouts(self, end: float) -> Any:
        import aiohttp

        ps = self.client.ps
        left = max(0.001, end - time.monotonic())
        return aiohttp.ClientTimeout(
            total=left, sock_connect=min(ps.connect_timeout_s, left), sock_read=min(ps.first_byte_timeout_s, left)
        )

    def _transport_error(self, m: ModelInfo, e: BaseException, end: float) -> t.ProviderError:
        import aiohttp

        ps = self.client.ps
        if isinstance(e, aiohttp.ConnectionTimeoutError):
            why = f"no connection within connect_timeout_s={ps.connect_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, why, model=m.alias)
        if isinstance(e, aiohttp.SocketTimeoutError) and time.monotonic() < end - 0.01:
            why = f"server silent for first_byte_timeout_s={ps.first_byte_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, f"{why} ({type(e).__name__})", model=m.alias)
        if isinstance(e, TimeoutError | asyncio.TimeoutError):
            return self.client._time_up(m)
        return t.ProviderError(t.CONNECT, redact(f"{type(e).__name__}: {e}"), model=m.alias)

    async def _read(self, m: ModelInfo, resp: Any) -> bytes:
        parts, size = [], 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise t.ProviderError(t.MALFORMED, f"response larger than {MAX_BODY_BYTES // 2**20} MiB", model=m.alias)
            parts.append(chunk)
        return b"".join(parts)

    def _request(self, m: ModelInfo, key: Secret | None, req: t.Request, stream: bool) -> tuple[str, dict, bytes]:
        url, headers, body = self.client._prepare(m, key, req, stream)
        headers["Content-Type"] = "application/json"
        if stream:
            headers["Accept"] = "text/event-stream"
        return url, headers, json.dumps(body, ensure_ascii=False).encode()

    async def _send(self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None) -> t.Completion:
        import aiohttp

        c = self.client
        url, headers, data = self._request(m, key, req, False)
        c.limiter.add(m.alias, rpm=1)
        end = c._attempt_end(deadline)
        try:
            async with self._http().post(url, data=data, headers=headers, timeout=self._timeouts(end)) as resp:
                raw = await self._read(m, resp)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._transport_error(m, e, end) from None
        if resp.status >= 400:
            raise c._http_error(m, _Resp(resp), raw, key)  # type: ignore[arg-type]
        comp = c._decode(m, raw, resp.status)
        c._after_ok(m, key, resp)  # type: ignore[arg-type]
        return comp

    async def _send_stream(
        self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None, parser: Any
    ) -> AsyncIterator[t.Delta]:
        import aiohttp

        c = self.client
        url, headers, data = self._request(m, key, req, True)
        c.limiter.add(m.alias, rpm=1)
        t0 = time.perf_counter()
        first_at: float | None = None
        end = c._attempt_end(deadline)

        def broken(why: str, err: t.ProviderError) -> t.ProviderError:
            if first_at is not None or parser_text(parser):
                return t.StreamBroken(why, model=m.alias, partial=parser_text(parser))
            return err

        timeout = self._timeouts(end)
        timeout = aiohttp.ClientTimeout(sock_connect=timeout.sock_connect, sock_read=timeout.sock_read)
        try:
            async with self._http().post(url, data=data, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    raw = await self._read(m, resp)
                    err = c._http_error(m, _Resp(resp), raw, key)  # type: ignore[arg-type]
                    if "stream_options" in str(err) and b'"stream_options"' in data and err.kind == t.BAD_REQUEST:
                        c._no_stream_options.add(base_url_for(m))
                        async for d in self._send_stream(m, key, req, deadline, parser):
                            yield d
                        return
                    raise err
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    comp = c._decode(m, await self._read(m, resp))
                    first_at = time.perf_counter()
                    if comp.text:
                        yield t.Delta(text=comp.text)
                else:
                    event, datas = "", []
                    async for raw_line in resp.content:
                        line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
                        if line:
                            field, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            if field == "data":
                                datas.append(value)
                            elif field == "event":
                                event = value
                            continue
                        if not datas:
                            event = ""
                            continue
                        try:
                            deltas = parser.feed(event or "message", "\n".join(datas))
                        except ShapeError as e:
                            bad = t.ProviderError(t.MALFORMED, f"stream event {e}", model=m.alias)
                            raise broken(f"stream event {e}", bad) from None
                        event, datas = "", []
                        for d in deltas:
                            if first_at is None:
                                first_at = time.perf_counter()
                            yield d
                        if time.monotonic() > end:
                            raise broken("time limit reached mid-stream", c._time_up(m))
                    if datas:  # a last event without its blank line
                        for d in parser.feed(event or "message", "\n".join(datas)):
                            yield d
                    try:
                        comp = parser.finish()
                    except ShapeError as e:
                        raise t.ProviderError(t.MALFORMED, f"stream event {e}", model=m.alias) from None
                c._after_ok(m, key, resp)  # type: ignore[arg-type]
        except (aiohttp.ClientError, TimeoutError) as e:
            err = self._transport_error(m, e, end)
            raise broken(f"connection lost ({type(e).__name__}) mid-stream", err) from None
        if first_at is not None:
            comp.ttft_ms = (first_at - t0) * 1000
        yield t.Delta(completion=comp)
