"""AsyncProviderClient: the provider client on asyncio, with no thread per call.

The HTTP exchange runs on `http1` (a lean HTTP/1.1 client on asyncio and httptools, a keep-alive connection
pool; ~130 us of CPU less per call than aiohttp's client, bench/upstream_client.py) and waits are
`asyncio.sleep`; everything else is shared with the sync `ProviderClient`: the attempt loop's rules
(`attempts.Plan`: model chain, key rotation, limits, retries, failover, health, records), the wire formats
(`_prepare`, `_decode`, each wire's StreamParser), the error classification (`_http_error`, `classify`) and the
token counting of usage a server did not report.

A consumer that stops reading a stream (the caller's task is cancelled, or it closes the iterator) ends the
upstream request at once, and the attempt is recorded with outcome `cancelled` and the usage of what was
generated so far (reported by the server when it had sent it, else counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..catalog import ModelInfo
from . import http1, jsonbody
from . import types as t
from .attempts import Plan, Wait
from .classify import learned_limits  # noqa: F401  (re-exported for callers reading announced limits)
from .client import MAX_BODY_BYTES, ProviderClient
from .keys import Secret, redact
from .wires import StreamRead, wire_for

log = logging.getLogger("agent_router.providers")
Record = dict[str, Any]
CANCELLED = t.CANCELLED  # the attempt's error kind (and outcome) when the caller stopped reading


class _Resp:
    """What ProviderClient._http_error / _after_ok / _answer read of a response, from an http1 one."""

    def __init__(self, resp: http1.Response):
        self.status_code = resp.status
        self.reason_phrase = resp.reason
        self.headers = resp.headers


class AsyncProviderClient:
    """`await complete(...)`, `async for d in stream(...)`; arguments as ProviderClient's, plus `on_attempt`
    per call (in addition to the client's). Create and use it inside one event loop."""

    def __init__(self, client: ProviderClient | None = None, *, max_workers: int = 256, **kw: Any):
        self.client = client or ProviderClient(**kw)
        self.limit = max_workers  # connections kept open per process (the old thread pool's size)
        self._pool: http1.Pool | None = None

    # -- the connection pool -----------------------------------------------------------------------------------
    def _http(self) -> http1.Pool:
        if self._pool is None or self._pool.closed:
            self._pool = http1.Pool(limit=self.limit, idle_s=30.0)
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
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
        # A coroutine, not `_stream`'s async generator (a non-streamed call yields nothing before the answer):
        # the same Plan steps, each attempt made by `_attempt`.
        plan = Plan(self.client, model, messages, fallbacks, kind, opts, on_attempt)
        for step in plan.steps():
            if isinstance(step, Wait):
                await asyncio.sleep(step.seconds)
                continue
            await self._attempt(plan, step)
        out = plan.final(False)[-1].completion
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
        return self._stream(model, messages, fallbacks, kind, opts, on_attempt)

    def cooling_down(self) -> list[str]:
        return self.client.cooling_down()

    # -- the attempt loops: Plan decides, these drive the I/O (`complete` above, streams here) -----------------
    async def _stream(self, *call: Any) -> AsyncIterator[t.Delta]:
        """`call`: Plan's arguments after the client (model, messages, fallbacks, kind, opts, on_attempt)."""
        plan = Plan(self.client, *call)
        for step in plan.steps():
            if isinstance(step, Wait):
                await asyncio.sleep(step.seconds)
                continue
            m = step.model
            parser = wire_for(m.provider).StreamParser(m.name)
            try:
                gen = self._send_stream(m, step.key, plan.req, plan.deadline, parser)
                async with contextlib.aclosing(gen):
                    async for d in gen:
                        if step.take(d):
                            yield d
            except t.ProviderError as e:
                step.error = e
            except (GeneratorExit, asyncio.CancelledError):
                _cancelled(plan, step, parser)
                raise
        for d in plan.final(True):
            yield d

    async def _attempt(self, plan: Plan, step: Any) -> None:
        """One non-streamed attempt: sets the step's completion or error (Plan's protocol)."""
        try:
            step.completion = await self._send(step.model, step.key, plan.req, plan.deadline)
        except t.ProviderError as e:
            step.error = e
        except (GeneratorExit, asyncio.CancelledError):
            _cancelled(plan, step, None)
            raise

    # -- one HTTP exchange -------------------------------------------------------------------------------------
    async def _post(self, url: str, headers: dict, data: bytes, end: float, total: bool) -> http1.Response:
        """POST and wait for the response head: connect within connect_timeout_s, no read gap longer than
        first_byte_timeout_s, none of it past the attempt's `end` (the body too when `total`; streams check
        `end` between events)."""
        ps = self.client.ps
        left = max(0.001, end - time.monotonic())
        return await self._http().post(
            url,
            headers,
            data,
            connect_s=min(ps.connect_timeout_s, left),
            read_gap_s=min(ps.first_byte_timeout_s, left),
            end=end if total else None,
        )

    def _transport_error(self, m: ModelInfo, e: http1.HTTPError, end: float) -> t.ProviderError:
        ps = self.client.ps
        if isinstance(e, http1.ConnectTimeout):
            why = f"no connection within connect_timeout_s={ps.connect_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, why, model=m.alias)
        if isinstance(e, http1.ReadTimeout) and time.monotonic() < end - 0.01:
            why = f"server silent for first_byte_timeout_s={ps.first_byte_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, f"{why} ({type(e).__name__})", model=m.alias)
        if isinstance(e, http1.ReadTimeout | http1.TotalTimeout):
            return self.client._time_up(m)
        if isinstance(e, http1.TooLarge):
            return t.ProviderError(t.MALFORMED, str(e), model=m.alias)
        return t.ProviderError(t.CONNECT, redact(f"{type(e).__name__}: {e}"), model=m.alias)

    async def _read(self, m: ModelInfo, resp: http1.Response) -> bytes:
        try:
            return await resp.read(MAX_BODY_BYTES)
        except http1.TooLarge:
            too_big = f"response larger than {MAX_BODY_BYTES // 2**20} MiB"
            raise t.ProviderError(t.MALFORMED, too_big, model=m.alias) from None

    def _request(self, m: ModelInfo, key: Secret | None, req: t.Request, stream: bool) -> tuple[str, dict, bytes]:
        url, headers, body = self.client._prepare(m, key, req, stream)
        headers["Content-Type"] = "application/json"
        if stream:
            headers["Accept"] = "text/event-stream"
        return url, headers, jsonbody.dumps(body)

    async def _send(self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None) -> t.Completion:
        c = self.client
        url, headers, data = self._request(m, key, req, False)
        c.limiter.add(m.alias, rpm=1)
        end = c._attempt_end(deadline)
        try:
            resp = await self._post(url, headers, data, end, True)
            try:
                raw = await self._read(m, resp)
            finally:
                resp.close()  # back to the pool when read to its end, else closed
        except http1.HTTPError as e:
            raise self._transport_error(m, e, end) from None
        return c._answer(m, key, _Resp(resp), raw)  # type: ignore[arg-type]

    async def _send_stream(
        self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None, parser: Any
    ) -> AsyncIterator[t.Delta]:
        c = self.client
        url, headers, data = self._request(m, key, req, True)
        c.limiter.add(m.alias, rpm=1)
        sr = StreamRead(m, parser)
        end = c._attempt_end(deadline)
        resp: http1.Response | None = None
        try:
            resp = await self._post(url, headers, data, end, False)
            if resp.status >= 400:
                err = c._http_error(m, _Resp(resp), await self._read(m, resp), key)  # type: ignore[arg-type]
                resp.close()
                if c._drops_stream_options(m, err, b'"stream_options"' in data):
                    async for d in self._send_stream(m, key, req, deadline, parser):
                        yield d
                    return
                raise err
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                comp = c._decode(m, await self._read(m, resp))
                for d in sr.whole(comp):
                    yield d
            else:
                event, datas = "", []
                async for raw_line in resp.lines(http1.MAX_LINE_BYTES):
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
                    deltas = sr.feed(event or "message", "\n".join(datas))
                    event, datas = "", []
                    for d in deltas:
                        yield d
                    if time.monotonic() > end:
                        raise sr.broken("time limit reached mid-stream", c._time_up(m))
                if datas:  # a last event without its blank line
                    for d in sr.feed(event or "message", "\n".join(datas)):
                        yield d
                comp = sr.finish()
            c._after_ok(m, key, resp)  # type: ignore[arg-type]
        except http1.HTTPError as e:
            err = self._transport_error(m, e, end)
            why = str(e) if isinstance(e, http1.TooLarge) else f"connection lost ({type(e).__name__})"
            raise sr.broken(f"{why} mid-stream", err) from None
        finally:
            if resp is not None:
                resp.close()  # read to its end: back to the pool; a consumer that stopped early: closed at once
        yield sr.done(comp)


def _cancelled(plan: Plan, step: Any, parser: Any) -> None:
    """The caller stopped waiting or reading: what was generated so far is paid for, so it is recorded."""
    try:
        plan.cancelled(step, parser)
    except Exception:  # recording must not hide the cancellation
        log.exception("recording a cancelled stream failed")
