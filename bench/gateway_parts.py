"""What each part of `agent-router serve`'s request costs in place: the gateway is run with a part taken out, and
each variant is measured in the same interleaved rounds as the whole.

Variants (each one `serve` process on the bench settings of bench/gateway.py, one worker, uvloop):
  whole       the gateway as it is
  no-ledger   the ledger rows of finished requests are not written (nothing is handed to the ledger thread)
  no-prepare  the first request's prepared call (routing, compression check, budget) is reused for every
              request after it: what routing and the checks before the call cost
  neither     both taken out
Printed per variant: added p50 over direct calls to the same upstream (sequential, one kept-alive connection)
and the gateway process's CPU time per call (all threads). A variant is a measurement device, not a mode of
the gateway: a request in `no-prepare` is answered by the model the first one was routed to.

    python bench/gateway_parts.py [--calls 1000] [--rounds 5] [--prompts fixed|unique|agent]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as g  # noqa: E402 - bench/gateway.py: the upstream, the settings and the client

VARIANTS = ("whole", "no-ledger", "no-prepare", "neither")


def _serve(variant: str, settings_path: str) -> None:
    """The child: `serve` on a free port with `variant`'s part taken out; prints the port."""
    from aiohttp import web

    from agent_router.gateway import core, server
    from agent_router.gateway.app import create_app
    from agent_router.settings import load

    if variant in ("no-ledger", "neither"):
        core.LedgerWriter.put = lambda self, c: None  # type: ignore[method-assign]
    if variant in ("no-prepare", "neither"):
        first: dict[str, Any] = {}
        prepare = core.Gateway.prepare

        def reused(self: Any, *args: Any) -> Any:
            if "p" not in first:
                first["p"] = prepare(self, *args)
            return first["p"]

        core.Gateway.prepare = reused  # type: ignore[method-assign]
    settings = load(settings_path)
    sock = server.bind("127.0.0.1", 0)

    async def main() -> None:
        gw = core.Gateway(settings)
        runner = web.AppRunner(create_app(gw), handler_cancellation=True, access_log=None)
        await runner.setup()
        server._freeze_startup_objects()
        await web.SockSite(runner, sock, backlog=4096).start()
        print(f"port {sock.getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    server._loop_runner()(main())


def start(variant: str, settings_path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, str(settings_path)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    found = re.match(r"port (\d+)", line or "")
    if not found:
        raise SystemExit(f"variant {variant} did not start: {line!r}")
    return proc, f"http://127.0.0.1:{found.group(1)}/v1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="Sequential calls per variant and round.")
    ap.add_argument("--rounds", type=int, default=5, help="Interleaved rounds; medians are printed.")
    ap.add_argument("--prompts", choices=("fixed", "unique", "agent"), default="fixed",
                    help="What the calls ask (as bench/gateway.py --prompts).")
    ap.add_argument("--serve", nargs=2, metavar=("VARIANT", "SETTINGS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        _serve(*a.serve)
        return
    g.Target.prompts = a.prompts
    q: Any = mp.Queue()
    upstream = mp.Process(target=g.serve_upstream, args=(q,), daemon=True)
    upstream.start()
    up = f"http://127.0.0.1:{q.get(timeout=30)}/v1"
    tmp = Path(tempfile.mkdtemp(prefix="gw-parts-"))
    res: dict[str, dict[str, list[float]]] = {v: {"p50": [], "cpu": []} for v in ("direct", *VARIANTS)}
    for r in range(a.rounds):
        direct = g.Target("direct", up, "mid")
        tot, _ = asyncio.run(g.sequential(direct, a.calls, False))
        res["direct"]["p50"].append(statistics.median(tot))
        for v in VARIANTS:
            # Each variant and round has its own ledger: rows do not pile up across them.
            proc, url = start(v, g.write_settings(up, tmp / f"{v}-{r}"))
            try:
                t = g.Target(v, url, "auto", pid=proc.pid)
                cpu0 = g.cpu_s(proc.pid)
                tot, _ = asyncio.run(g.sequential(t, a.calls, False))
                cpu = g.cpu_s(proc.pid) - cpu0
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            res[v]["p50"].append(statistics.median(tot))
            res[v]["cpu"].append(cpu / (a.calls + min(50, a.calls)) * 1e6)
        time.sleep(0.2)
    d = statistics.median(res["direct"]["p50"])
    print(f"gateway parts: {a.calls} sequential `auto` calls per variant, {a.rounds} interleaved rounds, medians; "
          f"prompts: {a.prompts}; direct p50 {d * 1e3:.3f} ms")
    print(f"{'variant':11} {'added p50':>10} {'CPU us/call':>12}")
    for v in VARIANTS:
        print(f"{v:11} {(statistics.median(res[v]['p50']) - d) * 1e3:9.3f}ms {statistics.median(res[v]['cpu']):12.0f}")


if __name__ == "__main__":
    main()
