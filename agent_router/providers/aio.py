"""AsyncProviderClient: the provider client on asyncio, with no thread per call.

The HTTP exchange runs on aiohttp (C-parsed HTTP/1.1, a keep-alive connection pool) and waits are
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
from . import jsonbody
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
        n = resp.content_length
        if n is not None and n <= MAX_BODY_BYTES and resp.headers.get("Content-Encoding") is None:
            return await resp.read()  # the length is known and bounded: one read, no chunk loop
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
        return url, headers, jsonbody.dumps(body)

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
        return c._answer(m, key, _Resp(resp), raw)  # type: ignore[arg-type]

    async def _send_stream(
        self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None, parser: Any
    ) -> AsyncIterator[t.Delta]:
        import aiohttp

        c = self.client
        url, headers, data = self._request(m, key, req, True)
        c.limiter.add(m.alias, rpm=1)
        sr = StreamRead(m, parser)
        end = c._attempt_end(deadline)
        timeout = self._timeouts(end)
        timeout = aiohttp.ClientTimeout(sock_connect=timeout.sock_connect, sock_read=timeout.sock_read)
        try:
            async with self._http().post(url, data=data, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    err = c._http_error(m, _Resp(resp), await self._read(m, resp), key)  # type: ignore[arg-type]
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
        except (aiohttp.ClientError, TimeoutError) as e:
            err = self._transport_error(m, e, end)
            raise sr.broken(f"connection lost ({type(e).__name__}) mid-stream", err) from None
        yield sr.done(comp)


def _cancelled(plan: Plan, step: Any, parser: Any) -> None:
    """The caller stopped waiting or reading: what was generated so far is paid for, so it is recorded."""
    try:
        plan.cancelled(step, parser)
    except Exception:  # recording must not hide the cancellation
        log.exception("recording a cancelled stream failed")
