"""A wall-clock end for one HTTP exchange. httpx's timeouts bound each socket operation, not the exchange: a
server that sends one byte every half second never trips a read timeout. `Watchdog` shuts the exchange's
socket down at the end instant, which wakes a blocked read at once; the client then reports a timeout.

The socket is learned from httpcore's `trace` extension when a connection is opened for the request, and from
the response's `network_stream` once headers arrived (a reused keep-alive connection). Before headers on a
reused connection, the per-operation timeouts (capped at the time left) bound the wait. With a transport
that has no socket (a test double), only the checks between chunks apply."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


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
        try:
            # The plain socket's shutdown, also for TLS (SSLSocket's own drops state the reading thread uses);
            # it wakes a thread blocked in recv, which close() alone would not.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass
