"""Latency the ProviderClient adds to one chat call, beside a bare httpx request to the same local server.

The server (bench/gateway.py's upstream: a minimal keep-alive HTTP/1.1 server returning a fixed OpenAI
chat-completions body) runs in its own process on 127.0.0.1, so it does not compete with the client for the
GIL. Both clients send the same request over one kept-alive connection; calls alternate in blocks so drift
hits both alike.

    python bench/provider_overhead.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import BODY, serve_upstream  # noqa: E402 - bench/gateway.py: the one local upstream


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()

    from agent_router.providers import ProviderClient
    from agent_router.settings import Settings

    q: mp.Queue = mp.Queue()
    proc = mp.Process(target=serve_upstream, args=(q,), daemon=True)
    proc.start()
    port = q.get(timeout=10)
    url = f"http://127.0.0.1:{port}/v1"
    key = "bench-key-0123456789abcdef"
    settings = Settings.model_validate({
        "models": {"m": {"provider": "openai_compatible", "name": "bench-model", "base_url": url,
                         "api_key_env": "BENCH_KEY", "price": {"input": 1, "output": 2}}},
        "tiers": {"utility": ["m"], "chat": ["m"], "premium": ["m"]},
    })
    records: list[dict] = []
    client = ProviderClient(settings, env={"BENCH_KEY": key}, on_attempt=records.append)
    bare = httpx.Client()
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Say hello"}]
    body = {"model": "bench-model", "messages": messages, "max_tokens": 64}
    headers = {"Authorization": f"Bearer {key}"}

    def call_bare() -> None:
        r = bare.post(url + "/chat/completions", json=body, headers=headers)
        r.raise_for_status()
        assert r.json()["choices"][0]["message"]["content"]

    def call_client() -> None:
        assert client.complete("m", messages, max_tokens=64).text

    report(f"{args.calls} calls each against a local server on 127.0.0.1 (keep-alive, same request)",
           call_bare, call_client, args.calls)
    proc.terminate()

    # The same comparison without sockets (httpx.MockTransport answering in-process): the client's own CPU
    # cost, free of the server's and the kernel's noise.
    mock = httpx.MockTransport(lambda req: httpx.Response(200, content=BODY,
                                                          headers={"content-type": "application/json"}))
    mclient = ProviderClient(settings, env={"BENCH_KEY": key}, transport=mock, on_attempt=records.append)
    mbare = httpx.Client(transport=mock)

    def mock_bare() -> None:
        r = mbare.post(url + "/chat/completions", json=body, headers=headers)
        assert r.json()["choices"][0]["message"]["content"]

    def mock_client() -> None:
        assert mclient.complete("m", messages, max_tokens=64).text

    report(f"{args.calls} calls each in-process (httpx.MockTransport, no socket)",
           mock_bare, mock_client, args.calls)
    assert records and records[-1]["outcome"] == "ok"


def report(title: str, call_bare, call_client, calls: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):  # warm up connections and caches
        call_bare()
        call_client()
    times: dict[str, list[float]] = {"bare httpx": [], "ProviderClient": []}
    block = 100
    for _ in range(max(1, calls // block)):
        for name, fn in (("bare httpx", call_bare), ("ProviderClient", call_client)):
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e6)
    print(title)
    print(f"  {'':16} {'p50 us':>9} {'p99 us':>9} {'mean us':>9}")
    for name, xs in times.items():
        print(f"  {name:16} {pct(xs, 0.5):9.1f} {pct(xs, 0.99):9.1f} {statistics.fmean(xs):9.1f}")
    b, c = times["bare httpx"], times["ProviderClient"]
    added50, added99 = pct(c, 0.5) - pct(b, 0.5), pct(c, 0.99) - pct(b, 0.99)
    print(f"  added by ProviderClient: p50 {added50:+.1f} us, p99 {added99:+.1f} us "
          f"(ratio p50 {pct(c, 0.5) / pct(b, 0.5):.2f}x); goal: < 1000 us p50")


if __name__ == "__main__":
    main()
