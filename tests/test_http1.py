"""The async provider client's HTTP/1.1 layer (providers/http1.py) against real servers on 127.0.0.1: connection
reuse and its limits, the body framings servers use, bounds, timeouts, cancellation and TLS."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent_router.providers import AsyncProviderClient, ProviderError, http1

from .providers_fixtures import BAD_KEY
from .test_providers import GOOD, USER, model, settings_for

Action = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]  # True: keep the connection
ANSWER = {
    "id": "chatcmpl-1",
    "model": "m-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2},
}
BODY = json.dumps(ANSWER).encode()


def head(status: str = "200 OK", *lines: str, version: str = "HTTP/1.1") -> bytes:
    return (f"{version} {status}\r\n" + "".join(f"{h}\r\n" for h in lines) + "\r\n").encode()


def reply(body: bytes = BODY, *extra: str, version: str = "HTTP/1.1", keep: bool = True) -> Action:
    async def act(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra,
                     version=version) + body)
        await w.drain()
        return keep

    return act


def events(*datas: str, split: int = 7) -> Action:
    """A chunked event stream, its chunks cut every `split` bytes (lines arrive in pieces)."""

    async def act(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked"))
        raw = "".join(f"data: {d}\n\n" for d in datas).encode()
        for i in range(0, len(raw), split):
            part = raw[i : i + split]
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()
        return True

    return act


def chunk(text: str, finish: str | None = None) -> str:
    delta = {"content": text} if text else {}
    return json.dumps({"id": "c", "model": "m-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class Upstream:
    """An asyncio HTTP/1.1 server on 127.0.0.1: answers each request with the next scripted action (default: a
    keep-alive JSON answer); counts connections and the ones the client closed."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.script: deque[Action] = deque()
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.client_closed = 0
        self.gone = asyncio.Event()
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    h = await r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.client_closed += 1
                    self.gone.set()
                    return
                n = int(re.search(rb"content-length: (\d+)", h, re.I).group(1))  # type: ignore[union-attr]
                self.requests.append(h + await r.readexactly(n))
                act = self.script.popleft() if self.script else reply()
                if not await act(r, w):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_closed += 1
            self.gone.set()
        except asyncio.CancelledError:  # the test's loop ends while a scripted action still runs: not an error
            return
        finally:
            self.open_now -= 1
            w.close()


def send(w: asyncio.StreamWriter, data: bytes) -> None:
    """A scripted server's write: a client that hung up is a ConnectionResetError, as asyncio's loop reports it
    (uvloop before 0.19 raises RuntimeError for a write on a transport it has closed)."""
    if w.is_closing():
        raise ConnectionResetError("the client closed the connection")
    w.write(data)


def client(up: Upstream, scheme: str = "http", records: list | None = None, max_workers: int = 256,
           **providers: Any) -> AsyncProviderClient:
    s = settings_for({"m": model(up.url(scheme), "openai", "m-name")}, **{"max_retries": 0, **providers})
    return AsyncProviderClient(settings=s, env={"TEST_KEY": GOOD}, on_attempt=(records if records is not None else
                               []).append, max_workers=max_workers)


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> Any:
    """Every test on asyncio's loop and on uvloop's (what `serve` runs on when it is installed)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    yield request.param
    asyncio.set_event_loop_policy(None)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def failure(exc: BaseException) -> tuple[str, str]:
    """(kind, text) of the last attempt's error inside AllModelsFailed, or of the error itself."""
    recs = getattr(exc, "attempts", None)
    if recs:
        return recs[-1]["error_kind"], recs[-1]["error"]
    assert isinstance(exc, ProviderError)
    return exc.kind, str(exc)


# --- connections ------------------------------------------------------------------------------------------------
def test_one_connection_serves_sequential_calls_and_the_request_is_one_lean_post():
    async def main() -> None:
        async with Upstream() as up, client(up) as ac:
            outs = [await ac.complete("m", USER) for _ in range(20)]
            assert {o.text for o in outs} == {"Hello there"}
            assert up.connections == 1
            h = up.requests[0].split(b"\r\n\r\n")[0].decode().lower()
            assert h.startswith("post /v1/chat/completions http/1.1")
            assert f"authorization: bearer {GOOD}".lower() in h and "content-type: application/json" in h
            assert "user-agent" not in h and "accept-encoding" not in h and "transfer-encoding" not in h

    run(main())


def test_connections_the_server_closes_between_calls_are_not_reused():
    """A server that closes idle keep-alive connections (as load balancers do), one that says Connection: close,
    an HTTP/1.0 server and an EOF-delimited body: every call succeeds, each on a new connection, no error."""

    async def close_later(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await reply()(r, w)
        return False  # the server's keep-alive timeout: it closes after answering

    async def eof_body(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: application/json") + BODY[:10])
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(BODY[10:])
        return False

    async def main() -> None:
        records: list[dict] = []
        async with Upstream() as up, client(up, records=records) as ac:
            up.script.extend([close_later, reply(BODY, "Connection: close", keep=False),
                              reply(BODY, version="HTTP/1.0"), eof_body])
            for _ in range(5):
                assert (await ac.complete("m", USER)).text == "Hello there"
                await asyncio.sleep(0.05)
            assert up.connections == 5
            assert [r["outcome"] for r in records] == ["ok"] * 5

    run(main())


def test_at_most_max_workers_connections_and_idle_ones_are_closed():
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.1)
        return await reply()(r, w)

    async def main() -> None:
        async with Upstream() as up, client(up, max_workers=2) as ac:
            up.script.extend([slow] * 6)
            outs = await asyncio.gather(*(ac.complete("m", USER) for _ in range(6)))
            assert len(outs) == 6 and up.most_open == 2 and up.connections == 2
        async with Upstream() as up:
            pool = http1.Pool(limit=4, idle_s=0.2)
            resp = await pool.post(up.url() + "/x", {}, b"{}", connect_s=1, read_gap_s=1, end=None)
            assert await resp.read(2**20) == BODY
            resp.close()
            assert pool.idle_count() == 1
            await asyncio.wait_for(up.gone.wait(), 2)  # closed by the idle sweep, not by the server
            assert pool.idle_count() == 0 and up.client_closed == 1
            pool.close()

    run(main())


# --- bodies -------------------------------------------------------------------------------------------------
def test_chunked_event_stream_arriving_in_pieces():
    async def main() -> None:
        async with Upstream() as up, client(up) as ac:
            up.script.append(events(chunk("Hel"), chunk("lo there"), chunk("", "stop"), "[DONE]", split=5))
            got = [d async for d in ac.stream("m", USER)]
            assert "".join(d.text for d in got) == "Hello there" and got[-1].completion is not None
            assert (await ac.complete("m", USER)).text == "Hello there"  # the stream's connection is reused
            assert up.connections == 1

    run(main())


def test_gzip_and_deflate_bodies_are_decoded_though_not_asked_for():
    import zlib

    async def main() -> None:
        async with Upstream() as up, client(up) as ac:
            up.script.extend([reply(gzip.compress(BODY), "Content-Encoding: gzip"),
                              reply(zlib.compress(BODY), "Content-Encoding: deflate")])
            assert (await ac.complete("m", USER)).text == "Hello there"
            assert (await ac.complete("m", USER)).text == "Hello there"
            assert b"accept-encoding" not in up.requests[0].lower()

    run(main())


def test_oversize_head_body_line_and_decompressed_body_are_malformed_errors(monkeypatch):
    from agent_router.providers import aio

    monkeypatch.setattr(aio, "MAX_BODY_BYTES", 2**20)
    bomb = gzip.compress(b"{" + b" " * (4 * 2**20))  # ~4 KiB on the wire, 4 MiB once decoded

    async def huge_head(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", *(f"X-Pad-{i}: {'a' * 1000}" for i in range(80))))
        await w.drain()
        return False

    async def main() -> list[str]:
        out = []
        async with Upstream() as up, client(up, failure_threshold=100) as ac:
            up.script.extend([huge_head, reply(b"x" * (2**20 + 1)), reply(bomb, "Content-Encoding: gzip")])
            for _ in range(3):
                with pytest.raises(Exception) as e:
                    await ac.complete("m", USER)
                out.append(failure(e.value)[1])
            up.script.append(events("x" * (2**20 + 10)))  # one SSE line over 1 MiB
            with pytest.raises(Exception) as e:
                [d async for d in ac.stream("m", USER)]
            out.append(failure(e.value)[1])
        return out

    head_err, body_err, bomb_err, line_err = run(main())
    assert "response head larger than 64 KiB" in head_err
    assert "response larger than 1 MiB" in body_err and "response larger than 1 MiB" in bomb_err
    assert "event-stream line longer than 1 MiB" in line_err
    assert all("\n" not in e for e in (head_err, body_err, bomb_err, line_err))


# --- timeouts and failures ------------------------------------------------------------------------------
def test_read_gap_and_total_timeouts_have_their_own_texts():
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1.5)
        return False

    async def drip(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: application/json", f"Content-Length: {len(BODY)}"))
        for b in BODY:
            w.write(bytes([b]))
            await w.drain()
            await asyncio.sleep(0.05)
        return False

    async def main() -> tuple[str, str]:
        async with Upstream() as up:
            up.script.extend([silent, drip])
            async with client(up, first_byte_timeout_s=0.3, timeout_s=5.0) as ac:
                with pytest.raises(Exception) as gap:
                    await ac.complete("m", USER)
            async with client(up, first_byte_timeout_s=0.3, timeout_s=0.6) as ac:
                with pytest.raises(Exception) as total:
                    await ac.complete("m", USER)
        return failure(gap.value)[1], failure(total.value)[1]

    gap, total = run(main())
    assert "server silent for first_byte_timeout_s=0.3s" in gap
    assert "answer not complete within the time limit (timeout_s=0.6s)" in total


def test_refused_and_reset_connections_are_one_line_connect_errors_without_the_key():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now

    async def reset(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: application/json", f"Content-Length: {len(BODY)}") + BODY[:20])
        await w.drain()
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        w.transport.abort()
        return False

    async def main() -> list[tuple[str, str]]:
        errs = []
        async with Upstream() as up:
            up.port = port
            async with client(up) as ac:
                with pytest.raises(Exception) as e:
                    await ac.complete("m", USER)
                errs.append(failure(e.value))
        async with Upstream() as up, client(up) as ac:
            up.script.append(reset)
            with pytest.raises(Exception) as e:
                await ac.complete("m", USER)
            errs.append(failure(e.value))
        return errs

    refused, cut = run(main())
    assert refused[0] == "connect" and f"cannot connect to 127.0.0.1:{port}" in refused[1]
    assert cut[0] == "connect" and "Connection reset by peer (mid-body)" in cut[1]
    for _, text in (refused, cut):
        assert "\n" not in text and GOOD not in text and BAD_KEY not in text


def test_a_stream_closed_mid_way_closes_the_upstream_connection_at_once():
    async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked"))
        while True:
            data = f"data: {chunk('tick ')}\n\n".encode()
            send(w, b"%x\r\n%s\r\n" % (len(data), data))
            await w.drain()
            await asyncio.sleep(0.02)

    async def main() -> None:
        records: list[dict] = []
        async with Upstream() as up, client(up, records=records) as ac:
            up.script.append(endless)
            gen = ac.stream("m", USER)
            assert (await anext(gen)).text == "tick "
            await gen.aclose()
            await asyncio.wait_for(up.gone.wait(), 2)  # the server's next write fails: the socket is gone
            assert ac._http().idle_count() == 0
            # a cancelled caller of a non-streamed call does the same
            up.gone.clear()
            up.script.append(endless)
            task = asyncio.create_task(ac.complete("m", USER))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(up.gone.wait(), 2)
            assert [r["outcome"] for r in records] == ["cancelled", "cancelled"]

    run(main())


# --- TLS --------------------------------------------------------------------------------------------------
def test_https_is_verified_against_the_cas_ssl_cert_file_names(tmp_path, monkeypatch):
    """The client's context is OpenSSL's default one: a throwaway CA named by SSL_CERT_FILE is trusted, the
    certificate is checked against the host, and without that CA the connection is refused."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def main() -> tuple[str, tuple[str, str]]:
        async with Upstream(tls=server_ctx) as up:
            monkeypatch.setattr(http1, "_TLS", None)
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
            async with client(up, "https") as ac:
                text = (await ac.complete("m", USER)).text
            monkeypatch.setattr(http1, "_TLS", None)
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
            async with client(up, "https") as ac:
                with pytest.raises(Exception) as e:
                    await ac.complete("m", USER)
            return text, failure(e.value)

    text, err = run(main())
    assert text == "Hello there"
    assert err[0] == "connect" and "CERTIFICATE_VERIFY_FAILED" in err[1]


def test_headers_are_read_case_insensitively():
    h = http1.Headers([("Retry-After", "3"), ("X-RateLimit-Remaining-Requests", "0"), ("set-cookie", "a"),
                       ("Set-Cookie", "b")])
    assert h.get("retry-after") == "3" and h["x-ratelimit-remaining-requests"] == "0" and "RETRY-AFTER" in h
    assert h.get("Set-Cookie") == "a, b" and h.get("missing", "") == ""


def test_one_endless_header_line_is_cut_off_at_the_head_bound():
    async def endless_header(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        while True:  # one header value that never ends, until the client hangs up
            send(w, b"a" * 1000)
            await w.drain()

    async def main() -> tuple[str, str]:
        async with Upstream() as up, client(up) as ac:
            up.script.append(endless_header)
            with pytest.raises(Exception) as e:
                await ac.complete("m", USER)
            await asyncio.wait_for(up.gone.wait(), 2)  # the client hung up
            return failure(e.value)

    kind, text = run(main())
    assert kind == "malformed" and "response head larger than 64 KiB" in text


def test_a_body_larger_than_the_read_buffer_arrives_whole_and_the_connection_is_reused():
    """Past 1 MiB buffered the socket is not read until the consumer catches up; the body still arrives whole."""
    big = bytes(range(256)) * (5 * 4096)  # 5 MiB

    async def main() -> None:
        async with Upstream() as up:
            up.script.extend([reply(big), reply(big)])
            pool = http1.Pool()
            for _ in range(2):
                resp = await pool.post(up.url() + "/x", {}, b"{}", connect_s=1, read_gap_s=2, end=None)
                await asyncio.sleep(0.2)  # the server has sent what the socket takes; reading was paused
                assert await resp.read(2**26) == big
                resp.close()
            assert up.connections == 1 and pool.idle_count() == 1
            pool.close()

    run(main())
