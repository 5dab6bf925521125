"""A wall-clock end for one HTTP exchange. httpx's timeouts bound each socket operation, not the exchange: a
server that sends one byte every half second never trips a read timeout. `Watchdog` shuts the exchange's
socket down at the end instant, which wakes a blocked read at once; the client then reports a timeout.

The socket is learned from httpcore's `trace` extension when a connection is opened for the request, from the
first read or write while the request is being opened (`opening()` with `guard_client`'s wrapped network
backend: a reused keep-alive connection) and from the response's `network_stream` once headers arrived. With a
transport that has no socket (a test double), the checks between chunks and per-operation timeouts apply.

`guard_client` reaches into httpx's transports (`_pool._network_backend`, private); when they are not there it
does nothing, and a reused connection is then watched from its response headers on."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


_opening = threading.local()  # the Watchdog of the request this thread is sending, until its headers arrive


class Watchdog:
    """`with Watchdog(end) as wd:` around one exchange; `wd.fired` tells a socket error was our doing."""

    def __init__(self, end: float):
        self.end = end  # time.monotonic() instant
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Watchdog:
        self._timer = threading.Timer(max(0.0, self.end - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disarm()

    def disarm(self) -> None:
        """The exchange is over: never touch its socket (it may go back to the pool for another request)."""
        with self._lock:
            self._sock = None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        """Around sending the request and waiting for its headers, on the calling thread."""
        _opening.wd = self
        try:
            yield
        finally:
            _opening.wd = None

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.end

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore trace hook: remembers the socket of a connection opened for this request."""
        if event in (
            "connection.connect_tcp.complete",
            "connection.connect_unix_socket.complete",
            "connection.start_tls.complete",  # TLS wraps (and detaches) the TCP socket
        ):
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        """Remember the socket under an httpcore network stream (or a response's `network_stream`)."""
        get = getattr(stream, "get_extra_info", None)
        sock = get("socket") if get is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._timer is None and not self.fired:  # disarmed
                return
            self._sock = sock
            late = self.fired
        if late:
            self._shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._timer is None:
                return
            self.fired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            # The plain socket's shutdown, also for TLS (SSLSocket's own drops state the reading thread uses);
            # it wakes a thread blocked in recv, which close() alone would not.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


@functools.cache
def _backend_class() -> type:
    """The network backend wrapper, made on first use: httpcore (and h11 under it) loads only in a process that
    makes a sync provider client, never in `serve` (which calls through providers/http1)."""
    import httpcore

    class _Stream(httpcore.NetworkStream):
        """An httpcore network stream that shows its socket to the Watchdog of the request being opened."""

        def __init__(self, inner: httpcore.NetworkStream):
            self.inner = inner

        def _show(self) -> None:
            wd = getattr(_opening, "wd", None)
            if wd is not None:
                wd.watch(self.inner)

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            self._show()
            return self.inner.read(max_bytes, timeout)

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._show()
            self.inner.write(buffer, timeout)

        def close(self) -> None:
            self.inner.close()

        def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
            return _Stream(self.inner.start_tls(*args, **kwargs))

        def get_extra_info(self, info: str) -> Any:
            return self.inner.get_extra_info(info)

    class _Backend(httpcore.NetworkBackend):
        def __init__(self, inner: httpcore.NetworkBackend):
            self.inner = inner

        def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
            return _Stream(self.inner.connect_tcp(*args, **kwargs))

        def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
            return _Stream(self.inner.connect_unix_socket(*args, **kwargs))

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    return _Backend


def guard_client(client: httpx.Client) -> None:
    """Wrap the network backend of `client`'s transports (proxies included) so reused connections are watched."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    wrapper = _backend_class()
    for tr in transports:
        pool = getattr(tr, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, wrapper):
            pool._network_backend = wrapper(backend)  # type: ignore[union-attr]
