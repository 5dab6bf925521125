"""Helpers for the gateway tests: `agent-router serve` as a real subprocess on 127.0.0.1, settings for three
tiers on a local fake upstream (tests/providers_fixtures.FakeLLM; the premium model speaks Anthropic's wire
format), a slow streaming upstream that notices when its client goes away, and ledger reads that wait for
rows (the gateway writes them after the answer is on its way)."""

from __future__ import annotations

import functools
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .providers_fixtures import FakeLLM

HARD = (
    "Prove step by step that the sum of the first n odd numbers is n^2. Then analyze why the induction "
    "works, derive the closed form for the sum of the first n squares, compare both proofs with a "
    "combinatorial argument, evaluate the trade-offs of each proof style, and justify which one you "
    "would teach first."
)
UP_KEY = "up-key-0123456789abcdef0123"  # the upstream key (Anthropic wire), never to appear in the ledger


@pytest.fixture(scope="module")
def gw_upstream():
    """The fake upstream of one test module's gateway (tests/providers_fixtures.FakeLLM, accepting UP_KEY)."""
    with FakeLLM(valid_keys={UP_KEY}) as srv:
        yield srv


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every client these tests make: a default one loads the CA bundle (~30 ms of CPU per
    client), and the gateway is plain HTTP on 127.0.0.1, so it is never used for a handshake anyway."""
    return httpx.create_ssl_context()


def http(**kw: Any) -> httpx.Client:
    """An httpx.Client (as `httpx.Client(**kw)`) on the shared TLS context."""
    return httpx.Client(verify=tls(), **kw)


def http_call(method: str, url: str, **kw: Any) -> httpx.Response:
    """One request on a fresh client, as `httpx.post(url, ...)` and friends make it."""
    with http() as h:
        return h.request(method, url, **kw)


def openai_client(url: str, key: str = "unused-locally") -> Any:
    """The official OpenAI SDK on the gateway at `url`, no retries."""
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0,
                         http_client=openai.DefaultHttpxClient(verify=tls()))


def anthropic_client(url: str, key: str = "unused-locally") -> Any:
    """The official Anthropic SDK on the gateway at `url`, no retries."""
    import anthropic

    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0,
                               http_client=anthropic.DefaultHttpxClient(verify=tls()))


def settings_for(upstream: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    def m(provider: str, name: str, price: tuple[float, float], **kw: Any) -> dict[str, Any]:
        base = upstream if provider == "anthropic" else f"{upstream}/v1"
        return {"provider": provider, "name": name, "base_url": base, "api_key_env": "GW_UP_KEY",
                "price": {"input": price[0], "output": price[1]}, **kw}

    s: dict[str, Any] = {
        "models": {
            "u": m("openai_compatible", "small-model", (0.1, 0.4)),
            "c": m("openai_compatible", "mid-model", (1.0, 4.0), capabilities={"vision": True}),
            "p": m("anthropic", "big-model", (5.0, 25.0)),
        },
        "tiers": {"utility": ["u"], "chat": ["c"], "premium": ["p"]},
        "routing": {"thresholds": {"low": 0.3, "high": 0.5}, "fallbacks": {"u": ["c"], "c": ["p"], "p": ["c"]}},
        "ledger": {"path": str(tmp_path / "ledger.db")},
        "providers": {"max_retries": 0, "timeout_s": 20},
        # The gateway tests send prompts whose tiers the heuristic's thresholds above decide: pinned.
        "learned": {"enabled": False},
    }
    for k, v in extra.items():
        s[k] = {**s.get(k, {}), **v} if isinstance(v, dict) else v
    return s


class Gateway:
    """`agent-router serve --port 0` in a subprocess; `.url` once it listens."""

    def __init__(self, settings: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()):
        self.settings_path = tmp_path / f"gw-settings-{time.monotonic_ns()}.json"
        self.settings_path.write_text(json.dumps(settings))
        self.db = Path(settings["ledger"]["path"])
        full_env = {**os.environ, "GW_UP_KEY": UP_KEY, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log = tmp_path / f"gw-{time.monotonic_ns()}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent_router", "serve", "--settings", str(self.settings_path), "--port", "0",
             *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
        )
        self.url = self._wait_url()

    def _wait_url(self) -> str:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            text = self.log.read_text(errors="replace")
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", text)
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {text}")
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start: {self.log.read_text()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def rows(db: Path, n: int = 1, timeout: float = 10.0, where: str = "1=1") -> list[dict[str, Any]]:
    """The ledger's call rows (oldest first) once at least `n` match `where`."""
    from agent_router.ledger import Ledger  # here: this module is a pytest plugin the xdist controller loads too

    end = time.monotonic() + timeout
    while True:
        with Ledger(db) as led:
            got = led.store.read(f"SELECT * FROM calls WHERE {where} ORDER BY id")
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


class SlowStream:
    """An OpenAI-compatible upstream whose stream sends one word, then a keep-alive comment every 50 ms for up
    to 20 s: `closed` is set when its client went away (a write failed)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.done = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = {"model": "slow", "choices": [{"index": 0, "delta": {"content": "Hello"}}]}
                try:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    for _ in range(400):
                        if outer.done.wait(0.05):
                            return
                        self.wfile.write(b": waiting\n\n")
                        self.wfile.flush()
                except OSError:
                    outer.closed.set()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.done.set()
        self.httpd.shutdown()
        self.httpd.server_close()
