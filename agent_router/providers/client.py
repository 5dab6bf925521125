"""ProviderClient: call a configured model over HTTP, with retries, rate limits, key rotation, health and
failover along a fallback chain. Every attempt is reported to `on_attempt(record)`.

The rules of the attempt loop (which model and key next, waits, retries, failover, records) are
`attempts.Plan`'s, shared with AsyncProviderClient; this module does the HTTP on httpx and sleeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..catalog import Catalog, ModelInfo
from ..errors import AgentRouterError
from ..settings import ProviderSettings, Settings
from ..usage import Usage, counted
from . import jsonbody
from . import types as t
from .attempts import Plan, Wait, block
from .classify import classify, error_text, learned_limits, retry_after
from .deadline import Watchdog, guard_client
from .health import Health
from .keys import KeyPool, Secret, redact
from .limits import Limiter
from .shape import ShapeError
from .state import StateStore, open_state
from .wires import StreamRead, base_url_for, needs_key, wire_for

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("agent_router.providers")


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """What every call to one model reads of its config, worked out once per model (`ProviderClient.route`)."""

    m: ModelInfo
    endpoint: str  # base URL without its final '/' (raises, per call, when there is none: not cached)
    envs: list[str]  # key variables' names (read-only)
    needs_key: bool
    group: str  # key-rotation group
    wire: Any
    url: str  # endpoint + the wire's path, non-streamed
    stream_url: str

Record = dict[str, Any]
# Largest non-streamed answer read: far above any real completion, a bound against a hostile server.
MAX_BODY_BYTES = 64 * 2**20


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process for every client we make: loading the CA bundle costs ~30 ms a client
    (SSL_CERT_FILE / SSL_CERT_DIR are honoured as httpx does)."""
    import httpx  # here, not at import: `serve` never loads it (~30 ms of its start)

    return httpx.create_ssl_context()


def default_state(settings: Settings, clock: Callable[[], float] = time.time) -> StateStore:
    """Redis-backed state shared by every process when `redis.url_env` is set, else this process's memory."""
    return open_state(settings, clock)


class ProviderClient:
    """Thread-safe; share one per process. Pass `http` (an httpx.Client) or `transport` to control I/O,
    `state` (a StateStore) to share health and limits between processes, `env` to read keys elsewhere."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalog: Catalog | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        state: StateStore | None = None,
        on_attempt: Callable[[Record], None] | None = None,
        env: Mapping[str, str] | None = None,
        counter: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings or Settings()
        self.ps: ProviderSettings = self.settings.providers
        self.catalog = catalog or Catalog(self.settings)
        self.state = state if state is not None else default_state(self.settings, clock)
        self.on_attempt = on_attempt
        self.counter = counter
        self.sleep = sleep
        self.clock = clock  # epoch seconds for health, limits, key set-asides and blocks (shared across processes)
        self._own_http = http is None
        self._http = http
        self._transport = transport
        self._http_lock = threading.Lock()
        self.health = Health(
            self.state,
            self.ps.failure_threshold,
            self.ps.cooldown_s,
            probe_ttl_s=self.ps.timeout_s + self.ps.connect_timeout_s,
            clock=clock,
        )
        self.limiter = Limiter(self.state, clock=clock, max_wait_s=self.ps.max_retry_wait_s, sleep=sleep)
        self.keys = KeyPool(self.state, env, self.ps.key_set_aside_s, clock=clock)
        self._no_stream_options: set[str] = set()
        self._routes: dict[str, Route] = {}

    @property
    def http(self) -> httpx.Client:
        """The HTTP client, made on first use: the gateway calls through providers/http1 and never needs one (its TLS
        context and pool cost ~30 ms of every `serve` start)."""
        if self._http is None:
            with self._http_lock:
                if self._http is None:
                    import httpx

                    c = httpx.Client(
                        transport=self._transport,
                        verify=tls_context(),
                        timeout=httpx.Timeout(
                            self.ps.timeout_s, connect=self.ps.connect_timeout_s, read=self.ps.first_byte_timeout_s
                        ),
                        follow_redirects=False,
                    )
                    guard_client(c)
                    self._http = c
        return self._http

    def close(self) -> None:
        if self._own_http and self._http is not None:
            self._http.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- public API ----------------------------------------------------------------------------------------
    def complete(
        self,
        model: Any,
        messages: list[dict[str, Any]],
        *,
        fallbacks: list[str] | None = None,
        kind: str = "chat",
        **opts: Any,
    ) -> t.Completion:
        """Call `model` (an alias, or a router Decision) and fail over along its chain; return the answer.

        `opts`: max_tokens, temperature, tools, tool_choice, json_mode, stop, extra (see types.Request)."""
        out = None
        for d in self._run(False, model, messages, fallbacks, kind, opts):
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
        **opts: Any,
    ) -> Iterator[t.Delta]:
        """Like complete(), yielding text deltas, then tool calls, then one Delta with the `completion`.

        Failover happens only before the first delta; a stream that breaks after it raises StreamBroken."""
        return self._run(True, model, messages, fallbacks, kind, opts)

    def cooling_down(self) -> list[str]:
        """Aliases currently skipped by the health breaker: pass them to the router as
        ``context["unhealthy"]`` so it routes around them."""
        return [m.alias for m in self.catalog if self.health.cooling_until(m.alias) is not None]

    def ping(self, alias: str, timeout_s: float = 10.0) -> Record:
        """One tiny request, no retries or failover: {'model', 'status', 'latency_ms', 'error'}."""
        m = self.catalog.get(alias)
        if needs_key(m) and not self.keys.present(m.config.key_envs()):
            bad = self.keys.unusable(m.config.key_envs())
            return {"model": alias, "status": "no key", "latency_ms": None, "error": "; ".join(bad) or None}
        req = t.Request(messages=[{"role": "user", "content": "ping"}], max_tokens=1)
        t0 = time.perf_counter()
        try:
            r = self.route(m)  # (raises here, not above, for a generic endpoint without a base_url)
            keys = self.keys.rotation(r.group, r.envs, r.endpoint) or [None]
            self._send(m, keys[0], req, deadline=time.monotonic() + timeout_s)
        except t.ProviderError as e:
            ms = (time.perf_counter() - t0) * 1000
            # A model that answers "max_tokens too small" or similar is up and reachable.
            up = e.kind == t.BAD_REQUEST
            return {
                "model": alias,
                "status": "ok" if up else e.kind,
                "latency_ms": round(ms, 1),
                "error": None if up else str(e),
            }
        except AgentRouterError as e:  # e.g. no base_url for a generic endpoint
            return {"model": alias, "status": "bad config", "latency_ms": None, "error": str(e)}
        return {
            "model": alias,
            "status": "ok",
            "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
            "error": None,
        }

    # -- the attempt loop: Plan decides, this drives the I/O ----------------------------------------------------
    def route(self, m: ModelInfo) -> Route:
        """`m`'s endpoint, keys' variables, wire format and URLs, made on its first call (one per alias)."""
        r = self._routes.get(m.alias)
        if r is not None and r.m is m:
            return r
        endpoint = base_url_for(m)
        envs = m.config.key_envs()
        wire = wire_for(m.provider)
        r = Route(
            m, endpoint, envs, needs_key(m), f"{m.provider}:{','.join(envs)}", wire,
            endpoint + wire.path(m.name, False), endpoint + wire.path(m.name, True),
        )
        self._routes[m.alias] = r
        return r

    def _run(self, stream: bool, *call: Any) -> Iterator[t.Delta]:
        """`call`: Plan's arguments after the client (model, messages, fallbacks, kind, opts)."""
        import httpx

        plan = Plan(self, *call)
        cleanup: list[Any] = []
        try:
            for step in plan.steps():
                if isinstance(step, Wait):
                    self.sleep(step.seconds)
                    continue
                parser = wire_for(step.model.provider).StreamParser(step.model.name) if stream else None
                try:
                    if stream:
                        gen = self._send_stream(step.model, step.key, plan.req, plan.deadline, parser)
                        cleanup.append(gen)
                        for d in gen:
                            if step.take(d):
                                yield d
                    else:
                        step.completion = self._send(step.model, step.key, plan.req, plan.deadline)
                except t.ProviderError as e:
                    step.error = e
                except GeneratorExit:
                    try:  # the caller stopped reading: what was generated so far is paid for, so it is recorded
                        plan.cancelled(step, parser)
                    except Exception:  # recording must not hide the close
                        log.exception("recording a cancelled stream failed")
                    raise
                except httpx.HTTPError as e:  # pragma: no cover - _send maps these; a guard, never leak keys
                    raise t.ProviderError(
                        t.CONNECT, redact(f"{type(e).__name__}: {e}"), model=step.model.alias
                    ) from None
            for d in plan.final(stream):
                yield d
        finally:
            for g in cleanup:  # a consumer that stops reading closes the HTTP stream at once
                g.close()

    # -- one HTTP exchange ---------------------------------------------------------------------------------
    def _prepare(
        self, m: ModelInfo, key: Secret | None, req: t.Request, stream: bool
    ) -> tuple[str, dict, dict]:
        r = self.route(m)
        wire = r.wire
        stream_usage = stream and self.ps.stream_usage and r.endpoint not in self._no_stream_options
        body = wire.build(req, m.name, m.provider, stream, stream_usage)
        headers = wire.auth_headers(key.value if key is not None else None)
        return r.stream_url if stream else r.url, headers, body

    def _attempt_end(self, deadline: float | None) -> float:
        """The monotonic instant this attempt must be over by: timeout_s from now, or the call's deadline."""
        end = time.monotonic() + self.ps.timeout_s
        return end if deadline is None else min(end, deadline)

    def _timeout(self, end: float) -> httpx.Timeout:
        """httpx's per-operation timeouts, none beyond the attempt's end (the Watchdog bounds the sum)."""
        import httpx

        left = max(0.001, end - time.monotonic())
        return httpx.Timeout(
            left,
            connect=min(self.ps.connect_timeout_s, left),
            read=min(self.ps.first_byte_timeout_s, left),
            pool=min(self.ps.connect_timeout_s, left),
        )

    def _http_error(
        self, m: ModelInfo, resp: httpx.Response, body: bytes, key: Secret | None = None
    ) -> t.ProviderError:
        msg = redact(error_text(body))
        kind = classify(resp.status_code, msg)
        text = msg or resp.reason_phrase
        if kind == t.AUTH:  # say which key, by its variable: "no key" would send the user looking elsewhere
            who = f"the key in {key.env}" if key is not None else "the request without a key"
            text = f"{who} was rejected by {base_url_for(m)}: {text}"
        e = t.ProviderError(
            kind,
            text,
            model=m.alias,
            status=resp.status_code,
            retry_after=retry_after(resp.headers, body, msg) if kind == t.RATE_LIMIT else None,
        )
        e.announced = learned_limits(resp.headers, m.provider)  # type: ignore[attr-defined]
        if kind == t.SERVER:
            e.retry_after = retry_after(resp.headers, body, msg)
        return e

    def _transport_error(self, m: ModelInfo, e: Exception, wd: Watchdog | None = None) -> t.ProviderError:
        import httpx

        if wd is not None and wd.expired():
            return self._time_up(m)
        if isinstance(e, httpx.ConnectTimeout):
            why = f"no connection within connect_timeout_s={self.ps.connect_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, why, model=m.alias)
        if isinstance(e, httpx.TimeoutException):
            why = f"server silent for first_byte_timeout_s={self.ps.first_byte_timeout_s:g}s"
            return t.ProviderError(t.TIMEOUT, f"{why} ({type(e).__name__})", model=m.alias)
        return t.ProviderError(t.CONNECT, redact(f"{type(e).__name__}: {e}"), model=m.alias)

    def _time_up(self, m: ModelInfo) -> t.ProviderError:
        limit = f"timeout_s={self.ps.timeout_s:g}s"
        if self.ps.deadline_s:
            limit += f" / deadline_s={self.ps.deadline_s:g}s"
        return t.ProviderError(t.TIMEOUT, f"answer not complete within the time limit ({limit})", model=m.alias)

    def _read(self, m: ModelInfo, resp: httpx.Response, wd: Watchdog) -> bytes:
        """The whole body, at most MAX_BODY_BYTES, checking the attempt's end between chunks."""
        parts, size = [], 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise t.ProviderError(
                    t.MALFORMED, f"response larger than {MAX_BODY_BYTES // 2**20} MiB", model=m.alias
                )
            parts.append(chunk)
            if wd.expired():
                raise self._time_up(m)
        if wd.fired:  # the watchdog ended a body that had no length: what we have is cut short
            raise self._time_up(m)
        return b"".join(parts)

    def _decode(self, m: ModelInfo, raw: bytes, status: int | None = None) -> t.Completion:
        """A 2xx body -> Completion; any body not of the wire format's shape is a `malformed` error."""
        try:
            data = jsonbody.loads(raw)
        except (ValueError, RecursionError):
            raise t.ProviderError(
                t.MALFORMED,
                f"response is not JSON: {redact(raw[:80].decode('utf-8', 'replace'))!r}",
                model=m.alias,
                status=status,
            ) from None
        try:
            return self.route(m).wire.parse(data, m.name)
        except ShapeError as e:
            raise t.ProviderError(t.MALFORMED, f"response {e}", model=m.alias, status=status) from None

    def _after_ok(self, m: ModelInfo, key: Secret | None, resp: httpx.Response) -> None:
        # Honour exhausted rate-limit headers on success too: the next call waits instead of getting a 429.
        h = resp.headers
        if key is not None and (
            "0"
            in (
                h.get("x-ratelimit-remaining-requests"),
                h.get("x-ratelimit-remaining-tokens"),
                h.get("anthropic-ratelimit-requests-remaining"),
            )
        ):
            wait = retry_after(h)
            if wait:
                block(self, m.alias, key, wait)

    @contextlib.contextmanager
    def _exchange(self, url: str, headers: dict, body: dict, end: float, wd: Watchdog) -> Iterator[httpx.Response]:
        """POST and hold the streamed response; `wd` learns the socket, whether new or reused."""
        request = self.http.build_request(
            "POST", url, json=body, headers=headers, timeout=self._timeout(end), extensions={"trace": wd.trace}
        )
        with wd.opening():
            resp = self.http.send(request, stream=True)
        try:
            wd.watch(resp.extensions.get("network_stream"))
            yield resp
        finally:
            resp.close()

    def _send(self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None) -> t.Completion:
        import httpx

        url, headers, body = self._prepare(m, key, req, stream=False)
        self.limiter.add(m.alias, rpm=1)
        end = self._attempt_end(deadline)
        with Watchdog(end) as wd:
            try:
                with self._exchange(url, headers, body, end, wd) as resp:
                    raw = self._read(m, resp, wd)
                    wd.disarm()
            except httpx.HTTPError as e:
                raise self._transport_error(m, e, wd) from None
        return self._answer(m, key, resp, raw)

    def _answer(self, m: ModelInfo, key: Secret | None, resp: httpx.Response, raw: bytes) -> t.Completion:
        """A whole response: the answer, or the error its status says."""
        if resp.status_code >= 400:
            raise self._http_error(m, resp, raw, key)
        c = self._decode(m, raw, resp.status_code)
        self._after_ok(m, key, resp)
        return c

    def _drops_stream_options(self, m: ModelInfo, err: t.ProviderError, asked: bool) -> bool:
        """A server that rejects `stream_options`: remember it, so that this and later requests go without."""
        if asked and err.kind == t.BAD_REQUEST and "stream_options" in str(err):
            self._no_stream_options.add(base_url_for(m))
            return True
        return False

    def _send_stream(
        self, m: ModelInfo, key: Secret | None, req: t.Request, deadline: float | None, parser: Any
    ) -> Iterator[t.Delta]:
        import httpx
        from httpx_sse import EventSource

        url, headers, body = self._prepare(m, key, req, stream=True)
        headers["Accept"] = "text/event-stream"
        self.limiter.add(m.alias, rpm=1)
        sr = StreamRead(m, parser)
        end = self._attempt_end(deadline)
        with Watchdog(end) as wd:
            try:
                with self._exchange(url, headers, body, end, wd) as resp:
                    if resp.status_code >= 400:
                        err = self._http_error(m, resp, self._read(m, resp, wd), key)
                        if self._drops_stream_options(m, err, "stream_options" in body):
                            wd.disarm()
                            yield from self._send_stream(m, key, req, deadline, parser)
                            return
                        raise err
                    if "text/event-stream" not in resp.headers.get("content-type", ""):
                        c = self._decode(m, self._read(m, resp, wd))
                        yield from sr.whole(c)
                    else:
                        for sse in EventSource(resp).iter_sse():
                            yield from sr.feed(sse.event, sse.data)
                            if wd.expired():
                                raise sr.broken("time limit reached mid-stream", self._time_up(m))
                        if wd.fired:
                            raise sr.broken("time limit reached mid-stream", self._time_up(m))
                        c = sr.finish()
                    wd.disarm()
                    self._after_ok(m, key, resp)
            except httpx.HTTPError as e:
                err = self._transport_error(m, e, wd)
                kind = "time limit reached" if wd.fired else f"connection lost ({type(e).__name__})"
                raise sr.broken(f"{kind} mid-stream", err) from None
        yield sr.done(c)

    # -- records -------------------------------------------------------------------------------------------
    def _record(
        self,
        kind: str,
        m: ModelInfo,
        c: t.Completion | None,
        t0: float,
        err: t.ProviderError | None,
        prev: str | None,
        n: int,
        req: t.Request,
    ) -> Record:
        latency = round((time.perf_counter() - t0) * 1000, 3)
        u = c.usage if c is not None else None
        if c is not None and u is not None and u.source == "estimated":
            u = self._count(m, req, c)
        rec: Record = {
            "id": os.urandom(16).hex(),  # uuid4().hex without building a UUID
            "kind": kind,
            "model": m.alias,
            "model_name": m.name,
            "resolved_model": c.model if c is not None else None,
            "provider": m.provider,
            "input_tokens": u.input if u else 0,
            "cached_input_tokens": u.cached_input if u else 0,
            "cache_write_tokens": u.cache_write if u else 0,
            "output_tokens": u.output if u else 0,
            "reasoning_tokens": u.reasoning if u else 0,
            "token_source": u.source if u else "none",
            "latency_ms": latency,
            "outcome": "ok" if err is None else err.kind if err.kind in (t.STREAM_BROKEN, t.CANCELLED) else "error",
            "error_kind": None if err is None else err.kind,
            "error": None if err is None else redact(str(err)),
            "status": None if err is None else err.status,
            "fallback_of": prev,
            "attempt": n,
        }
        if c is not None and u is not None:
            c.usage = u
            self.limiter.add(m.alias, input_tokens=u.input, output_tokens=u.output)
        if err is not None:
            log.warning("%s attempt %d on %s failed: %s", kind, n, m.alias, rec["error"])
        if self.on_attempt is not None:
            try:
                self.on_attempt(rec)
            except Exception:  # a broken recorder must not turn a good answer into a failure
                log.exception("on_attempt callback failed")
        return rec

    def _count(self, m: ModelInfo, req: t.Request, c: t.Completion) -> Usage:
        """Usage the server did not report, counted offline."""
        if self.counter is None:
            from ..tokens import TokenCounter

            self.counter = TokenCounter(self.settings.tokens.cache_dir)
        cin = self.counter.count_messages(req.messages, m.provider, m.name)
        out_text = c.text + "".join(tc.name + tc.arguments for tc in c.tool_calls)
        cout = self.counter.count_text(out_text, m.provider, m.name)
        source = "counted" if cin.source == "counted" and cout.source == "counted" else "estimated"
        return counted(cin.tokens, cout.tokens, source)
