"""The HTTP client the gateway calls providers with: aiohttp's, or ours (agent_router/providers/http1.py, asyncio
and httptools), each inside the same bare aiohttp-server proxy, measured in the same interleaved rounds.

bench/gateway.py's upstream (asyncio, TCP_NODELAY, keep-alive, its own process) and its sequential client (one
kept-alive connection). Two proxy processes (uvloop when installed), each forwarding the body to the upstream and
the answer back, nothing else:
  aiohttp   aiohttp's ClientSession (what bench/gateway.py's `bare` is)
  http1     agent_router.providers.http1.Pool, as AsyncProviderClient uses it
Printed per proxy and mode (whole answers, SSE streams): added p50 over direct calls, and the proxy process's CPU
time per call (user + system; a figure a busy machine blurs much less than latency). While one proxy is measured
the other is stopped (SIGSTOP).

    python bench/upstream_client.py [--calls 2000] [--rounds 3] [--no-stream]

Everything binds 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as g  # noqa: E402 - bench/gateway.py: the upstream, the client, CPU and isolation helpers


def _http1_proxy(up: str, port_q: Any) -> None:
    """gateway._bare_proxy with the upstream call made by http1.Pool (timeouts as AsyncProviderClient's)."""
    from aiohttp import web

    from agent_router.providers import http1

    async def make_handler() -> Any:
        pool = http1.Pool(limit=256)
        url = f"{up}/chat/completions"

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            stream = b'"stream": true' in body
            r = await pool.post(url, {"Content-Type": "application/json"}, body, connect_s=10.0, read_gap_s=60.0,
                                end=None if stream else time.monotonic() + 600)
            try:
                if not stream:
                    return web.Response(body=await r.read(2**26), content_type="application/json")
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                async for chunk in r.chunks():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            finally:
                r.close()

        return handle

    g.run_proxy(make_handler, port_q)


def _start(target: Any, up: str) -> tuple[mp.Process, str]:
    q: Any = mp.Queue()
    p = mp.Process(target=target, args=(up, q), daemon=True)
    p.start()
    return p, f"http://127.0.0.1:{q.get(timeout=60)}/v1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="sequential calls per proxy, mode and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-stream", action="store_true", help="whole answers only")
    a = ap.parse_args()

    q: Any = mp.Queue()
    upstream = mp.Process(target=g.serve_upstream, args=(q,), daemon=True)
    upstream.start()
    up = f"http://127.0.0.1:{q.get(timeout=60)}/v1"
    procs = {"aiohttp": _start(g._bare_proxy, up), "http1": _start(_http1_proxy, up)}
    targets = [g.Target("direct", up, "m")] + [g.Target(n, url, "m", pid=p.pid) for n, (p, url) in procs.items()]
    modes = [False] if a.no_stream else [False, True]
    p50: dict[tuple[str, bool], list[float]] = {(t.name, s): [] for t in targets for s in modes}
    cpu: dict[tuple[str, bool], list[float]] = {(t.name, s): [] for t in targets for s in modes}
    try:
        for r in range(a.rounds):
            for stream in modes:
                for t in targets if r % 2 == 0 else targets[::-1]:  # interleaved, order alternating
                    with g.Alone(targets, t, True):
                        g.settle(t.pid)
                        c0 = g.cpu_s(t.pid)
                        tot, _ = asyncio.run(g.sequential(t, a.calls, stream))
                        used = g.cpu_s(t.pid) - c0
                    p50[(t.name, stream)].append(statistics.median(tot) * 1000)
                    cpu[(t.name, stream)].append(used / (a.calls + min(50, a.calls)) * 1e6)
    finally:
        for p, _ in procs.values():
            p.kill()
        upstream.kill()

    print(f"bare aiohttp-server proxy hop, upstream client compared; {a.calls} sequential calls x {a.rounds} rounds")
    print(f"{'client':8s} {'mode':7s} {'added p50':>10s} {'per round (ms)':>26s} {'CPU us/call':>12s}",
          f"{'per round':>18s}")
    for stream in modes:
        direct = statistics.median(p50[("direct", stream)])
        for name in procs:
            added = [x - d for x, d in zip(p50[(name, stream)], p50[("direct", stream)], strict=True)]
            print(f"{name:8s} {'stream' if stream else 'whole':7s} {statistics.median(added):8.3f} ms "
                  f"{str([round(x, 3) for x in added]):>26s} {statistics.median(cpu[(name, stream)]):12.0f} "
                  f"{str([round(x) for x in cpu[(name, stream)]]):>18s}")
        print(f"{'direct':8s} {'stream' if stream else 'whole':7s} p50 {direct:.3f} ms")
    for stream in modes:
        a_cpu = statistics.median(cpu[("aiohttp", stream)])
        h_cpu = statistics.median(cpu[("http1", stream)])
        print(f"{'stream' if stream else 'whole'}: http1 uses {h_cpu / a_cpu:.2f}x aiohttp's CPU per call "
              f"({a_cpu - h_cpu:.0f} us less)")


if __name__ == "__main__":
    main()
