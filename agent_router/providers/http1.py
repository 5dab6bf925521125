"""A lean HTTP/1.1 client on asyncio and httptools (llhttp, the parser uvicorn uses): what AsyncProviderClient
needs to POST to a provider, nothing more.

Per request: one `transport.write` of head and body, one future for the response head, the body gathered by the
parser's callbacks, one timer for the read gap (re-armed from the last read, not per chunk) and one for the total.
aiohttp's client costs ~130 us of CPU more per call on the gateway's path (bench/upstream_client.py).

- Keep-alive pool per (scheme, host, port), at most `limit` connections in all, idle ones closed after `idle_s`.
  A connection is reused only when its response was complete, the server kept it alive (no `Connection: close`,
  not HTTP/1.0, not an EOF-delimited body) and it has not since been closed by the server.
- Bounded: response head (MAX_HEAD_BYTES), whole bodies (the caller's limit, after decompression too), lines.
- A response that is closed before its end (the caller was cancelled, or stopped reading a stream) closes its
  connection at once: the server sees the disconnect.
- gzip/deflate bodies are decoded although no Accept-Encoding is sent. TLS: `ssl.create_default_context()`
  (made on first https use; OpenSSL's defaults honour SSL_CERT_FILE / SSL_CERT_DIR).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

httptools: Any = None  # imported by the first Pool (~2 ms): importing the providers package does not pay it

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
MAX_LINE_BYTES = 2**20  # one line of an event stream (large tool-call arguments come in one data line)
_HIGH_WATER = 2**20  # buffered body bytes above which the socket is not read until the consumer catches up


class HTTPError(Exception):
    """A transport failure: no answer, or an answer cut short or broken."""


class ConnectError(HTTPError):
    """No connection: refused, unreachable, a name that does not resolve, a TLS handshake that failed."""


class ConnectTimeout(HTTPError):
    """No connection within the connect timeout."""


class ReadTimeout(HTTPError):
    """No byte from the server for the read-gap timeout."""


class TotalTimeout(HTTPError):
    """The request's deadline passed."""


class ServerDisconnected(HTTPError):
    """The server closed or reset the connection before the response ended."""


class ProtocolError(HTTPError):
    """Bytes that are not an HTTP/1.1 response, or a request header that cannot be sent."""


class TooLarge(HTTPError):
    """A head, body or line over its bound."""


class Headers(Mapping[str, str]):
    """Response headers, read case-insensitively; a repeated header's values are joined with ', '."""

    __slots__ = ("_d",)

    def __init__(self, pairs: Any = ()):
        d: dict[str, str] = {}
        for k, v in pairs.items() if isinstance(pairs, Mapping) else pairs:
            k = k.lower()
            d[k] = f"{d[k]}, {v}" if k in d else v
        self._d = d

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._d.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({self._d!r})"


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


_TLS: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """Made on first https use, not at import (~45 ms of a process start were aiohttp's at import)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


class _Conn(asyncio.Protocol):
    """One connection; parses responses with httptools and hands them to the Response being read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]):
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)  # set by Pool()
        self.closed = False
        self.idle_since = 0.0
        self.reset()

    def reset(self) -> None:
        self.head: asyncio.Future | None = None
        self.wake: asyncio.Future | None = None
        self.reason = b""
        self.pairs: list[tuple[str, str]] = []
        self.head_bytes = 0
        self.raw_head = 0
        self.headers_done = False
        self.keep_alive = False
        self.informational = False
        self.eof_body = False  # no length, not chunked: the body ends when the server closes
        self.done = False
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.exc: BaseException | None = None
        self.last_read = 0.0
        self.gap = 0.0
        self.gap_timer: asyncio.TimerHandle | None = None
        self.total_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to set
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        if self.head is None:  # bytes while no request is out: the connection is not reusable
            self.closed = True
            return
        if not self.headers_done:  # httptools holds a header until it is whole: bound what it may hold
            if self.raw_head > MAX_HEAD_BYTES:  # all bytes before the head's end are the head's
                self._fail(TooLarge(f"response head larger than {_size(MAX_HEAD_BYTES)}"))
                return
            self.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail(ProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as e:  # a callback's TooLarge is already in self.exc
            self._fail(ProtocolError(f"bad response: {e}"))

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.head is None or self.done or self.exc is not None:
            return
        if self.headers_done and self.eof_body and exc is None:
            self.on_message_complete()
            return
        why = f"{type(exc).__name__}: {exc}" if exc else "server closed the connection"
        where = "mid-body" if self.headers_done else "before the response head"
        self._fail(ServerDisconnected(f"{why} ({where})"))

    # -- httptools callbacks ---------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.done:  # bytes after the response: the connection is not in a state to reuse
            self.closed = True

    def on_status(self, status: bytes) -> None:
        self.reason += status
        self._count(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        self.pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > MAX_HEAD_BYTES:
            self.exc = TooLarge(f"response head larger than {_size(MAX_HEAD_BYTES)}")
            raise self.exc

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and the like: the answer follows
            self.informational = True
            self.reason, self.pairs = b"", []
            return
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp answers this only until the message ends
        h = {k.lower() for k, _ in self.pairs}
        self.eof_body = "content-length" not in h and "transfer-encoding" not in h and status >= 200 and status not in (
            204,
            304,
        )
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.done = True
        self._stop_timers()
        self._wake()

    # -- timers and failure --------------------------------------------------------------------------------
    def arm(self, gap: float, end_at: float) -> None:
        """The read gap from now on, re-armed from the last read; the total at `end_at` (loop time, 0: none)."""
        now = self.loop.time()
        self.last_read = now
        self.gap = gap
        self.gap_timer = self.loop.call_at(now + gap, self._gap_check)
        if end_at:
            self.total_timer = self.loop.call_at(end_at, self._total_up)

    def _gap_check(self) -> None:
        due = self.last_read + self.gap
        if self.paused:  # the consumer is behind, not the server
            due = self.loop.time() + self.gap
        if self.loop.time() >= due:
            self.gap_timer = None
            self._fail(ReadTimeout(f"no data for {self.gap:g}s"))
        else:
            self.gap_timer = self.loop.call_at(due, self._gap_check)

    def _total_up(self) -> None:
        self.total_timer = None
        self._fail(TotalTimeout("deadline passed"))

    def _stop_timers(self) -> None:
        if self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None
        if self.total_timer is not None:
            self.total_timer.cancel()
            self.total_timer = None

    def _fail(self, exc: BaseException) -> None:
        if self.exc is None:  # the first cause stays (a timeout's abort is seen as a disconnect after it)
            self.exc = exc
        self.abort()
        if self.head is not None and not self.head.done():
            self.head.set_exception(self.exc)
            self.head.exception()  # retrieved: a caller already gone must not log "never retrieved"
        self._wake()

    def _wake(self) -> None:
        w = self.wake
        if w is not None:
            self.wake = None
            if not w.done():
                w.set_result(None)

    def abort(self) -> None:
        self.closed = True
        self._stop_timers()
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.done
            and not self.eof_body
            and self.keep_alive
            and not self.paused
            and self.transport is not None
            and not self.transport.is_closing()
        )


class Response:
    """Status, reason, headers; the body by `read()`, `chunks()` or `lines()`. `close()` gives the connection
    back when the body was read to its end, else closes it (the server sees the disconnect)."""

    def __init__(self, pool: Pool, conn: _Conn):
        self._pool = pool
        self._conn = conn
        self.status: int = conn.parser.get_status_code()
        self.reason: str = conn.reason.decode("latin-1", "replace")
        self.headers = Headers(conn.pairs)
        enc = self.headers.get("content-encoding", "").strip().lower()
        self._zlib = zlib.decompressobj(47) if enc in ("gzip", "x-gzip", "deflate") else None
        self._deflate = enc == "deflate"
        self._released = False

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        self._pool._release(self._conn)

    async def _raw(self) -> AsyncIterator[bytes]:
        c = self._conn
        while True:
            if c.body:
                chunk = c.body.popleft()
                c.buffered -= len(chunk)
                if c.paused and c.buffered <= _HIGH_WATER // 2 and not c.closed and c.transport is not None:
                    c.paused = False
                    c.last_read = c.loop.time()
                    c.transport.resume_reading()
                yield chunk
                continue
            if c.done:
                return
            if c.exc is not None:
                raise c.exc
            c.wake = c.loop.create_future()
            await c.wake

    async def chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives, decoded; at most `limit` bytes (before and after decoding) in all."""
        seen = out = 0
        async for chunk in self._raw():
            seen += len(chunk)
            if limit is not None and seen > limit:
                raise TooLarge(f"response body larger than {_size(limit)}")
            if self._zlib is not None:
                chunk = self._decode(chunk, None if limit is None else limit - out)
                if not chunk:
                    continue
            out += len(chunk)
            if limit is not None and out > limit:
                raise TooLarge(f"response body larger than {_size(limit)}")
            yield chunk
        if self._zlib is not None:
            tail = self._zlib.flush()
            if limit is not None and out + len(tail) > limit:
                raise TooLarge(f"response body larger than {_size(limit)}")
            if tail:
                yield tail

    def _decode(self, chunk: bytes, room: int | None) -> bytes:
        assert self._zlib is not None
        try:
            out = self._zlib.decompress(chunk, 0 if room is None else room + 1)
        except zlib.error as e:
            if not self._deflate:
                raise ProtocolError(f"bad gzip body: {e}") from None
            # "deflate" as many servers send it: raw, without the zlib header
            self._zlib, self._deflate = zlib.decompressobj(-15), False
            return self._decode(chunk, room)
        if self._zlib.unconsumed_tail:
            raise TooLarge(f"response body larger than {_size(room)} once decompressed")
        self._deflate = False  # the format is settled by the first bytes
        return out

    async def read(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (TooLarge beyond)."""
        c = self._conn
        if self._zlib is None and not c.body and not c.done and c.exc is None:
            c.wake = c.loop.create_future()  # wait for the first bytes or the end: most bodies come in one piece
            await c.wake
        if self._zlib is None and c.done and len(c.body) == 1 and c.buffered <= limit:
            c.buffered = 0
            return c.body.popleft()
        return b"".join([chunk async for chunk in self.chunks(limit)])

    async def lines(self, max_line: int = MAX_LINE_BYTES) -> AsyncIterator[bytes]:
        """The body's lines, each with its line end (the last may have none); TooLarge over `max_line` bytes."""
        parts: list[bytes] = []  # the line begun and not yet ended, in pieces (no copy per chunk)
        held = 0
        async for chunk in self.chunks():
            start = 0
            while (i := chunk.find(b"\n", start)) >= 0:
                if parts:
                    yield b"".join([*parts, chunk[start : i + 1]])
                    parts, held = [], 0
                else:
                    yield chunk[start : i + 1]
                start = i + 1
            if start < len(chunk):
                parts.append(chunk[start:])
                held += len(chunk) - start
                if held > max_line:
                    raise TooLarge(f"event-stream line longer than {_size(max_line)}")
        if parts:
            yield b"".join(parts)


class Pool:
    """Keep-alive connections per (scheme, host, port), at most `limit` open; create and use in one loop."""

    def __init__(self, limit: int = 256, idle_s: float = 30.0):
        self.limit = limit
        self.idle_s = idle_s
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._targets: dict[str, tuple[tuple[str, str, int], bytes]] = {}
        self.closed = False
        self._loop: Any = None
        global httptools
        if httptools is None:
            import httptools as module

            httptools = module

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes]:
        """(scheme, host, port) and the request target with the Host header line, cached per URL."""
        got = self._targets.get(url)
        if got is None:
            u = urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ConnectError(f"not an http(s) URL: {u.scheme}://{u.hostname or ''}")
            port = u.port or (443 if u.scheme == "https" else 80)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            host = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
            default = port == (443 if u.scheme == "https" else 80)
            hostline = host if default else f"{host}:{port}"
            got = ((u.scheme, u.hostname, port), f"{path} HTTP/1.1\r\nHost: {hostline}\r\n".encode("latin-1"))
            if len(self._targets) < 1024:
                self._targets[url] = got
        return got

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        connect_s: float,
        read_gap_s: float,
        end: float | None,
    ) -> Response:
        """POST `body`; returns once the response head is in. `end`: a `time.monotonic()` instant for the whole
        exchange (its body too; None: no total). Errors: ConnectError, ConnectTimeout, ReadTimeout, TotalTimeout,
        ServerDisconnected, ProtocolError, TooLarge."""
        loop = asyncio.get_running_loop()
        key, target = self._target(url)
        end_at = 0.0
        if end is not None:
            end_at = loop.time() + (end - time.monotonic())
        conn = self._reuse(key)
        if conn is None:
            conn = await self._connect(loop, key, connect_s, end_at)
        head = [b"POST ", target]
        for k, v in headers.items():
            line = f"{k}: {v}\r\n"
            if line.count("\n") != 1 or "\r" in line[:-2] or not line.isascii():
                self._release(conn)  # a value never carries a line of its own (nor is it named here: a key)
                raise ProtocolError(f"request header {k!r} has a line break or a non-ASCII character")
            head.append(line.encode("ascii"))
        head.append(b"Content-Length: %d\r\n\r\n" % len(body))
        conn.reset()
        conn.head = fut = loop.create_future()
        conn.arm(read_gap_s, end_at)
        try:
            assert conn.transport is not None
            conn.transport.write(b"".join(head) + body)
            await fut
        except BaseException:
            self._drop(conn)
            raise
        return Response(self, conn)

    def _reuse(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self._drop(conn)
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], connect_s: float, end_at: float
    ) -> _Conn:
        scheme, host, port = key
        while self._open >= self.limit:
            await self._wait_slot(loop, key, end_at)
            conn = self._reuse(key)
            if conn is not None:
                return conn
        self._open += 1
        deadline = loop.time() + connect_s
        try:
            async with asyncio.timeout_at(min(deadline, end_at) if end_at else deadline):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop, key),
                    host,
                    port,
                    ssl=tls_context() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError:
            self._free()
            if end_at and end_at < deadline:
                raise TotalTimeout("deadline passed while connecting") from None
            raise ConnectTimeout(f"no connection to {host}:{port} within {connect_s:g}s") from None
        except (OSError, ssl.SSLError) as e:
            self._free()
            raise ConnectError(f"cannot connect to {host}:{port}: {e}") from None
        except BaseException:
            self._free()
            raise
        return conn

    async def _wait_slot(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], end_at: float) -> None:
        """Until a slot is free or an idle connection to `key` is back."""
        for k, idle in self._idle.items():  # an idle connection to another host makes room
            if idle and k != key:
                self._drop(idle.pop(0))
                return
        fut = loop.create_future()
        self._waiters.append(fut)
        try:
            if end_at:
                async with asyncio.timeout_at(end_at):
                    await fut
            else:
                await fut
        except TimeoutError:
            raise TotalTimeout("deadline passed waiting for a free connection") from None
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _free(self) -> None:
        self._open -= 1
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                break

    def _drop(self, conn: _Conn) -> None:
        """Close `conn` and give its slot back (once)."""
        if conn.key is None:
            return
        conn.abort()
        conn.key = None  # type: ignore[assignment]
        self._free()

    def _release(self, conn: _Conn) -> None:
        if conn.key is None:
            return
        conn._stop_timers()
        if self.closed or not conn.reusable():
            self._drop(conn)
            return
        conn.head = None
        self._loop = conn.loop
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._waiters:  # someone waits for a slot: let it look at the idle list
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
        if self._sweep is None:
            self._sweep = conn.loop.call_at(conn.idle_since + self.idle_s, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        if not self._idle:
            return
        loop = self._loop
        now = loop.time()
        oldest = None
        for idle in self._idle.values():
            keep = []
            for conn in idle:
                if conn.closed or now - conn.idle_since >= self.idle_s:
                    self._drop(conn)
                else:
                    keep.append(conn)
                    oldest = conn.idle_since if oldest is None else min(oldest, conn.idle_since)
            idle[:] = keep
        if oldest is not None:
            self._sweep = loop.call_at(oldest + self.idle_s, self._sweep_idle)

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in idle:
                self._drop(conn)
        self._idle.clear()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())
