"""Where `agent-router serve` spends a routed call: py-spy samples the gateway (one worker, the bench settings of
bench/gateway.py) under sequential `auto` calls and prints, for the main thread, each part's share of the
request handler's samples. Needs py-spy (`pip install py-spy`; give its path with --py-spy if not on PATH).

    python bench/gateway_profile.py --calls 8000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as g  # noqa: E402 - bench/gateway.py: the upstream, the settings and the client

# (label, a frame whose samples count for it); shares are of the samples under the request handler.
PARTS = [
    ("routing (analyze, route)", "Runtime.route_turn ("),
    ("  the learned router's analysis", "LearnedRouter.analyze ("),
    ("the provider call", "AsyncProviderClient.complete ("),
    ("  aiohttp's client request", "_BaseRequestContextManager.__aenter__ ("),
    ("reading and parsing the request", "read_json ("),
    ("compression check", "compress_prompt ("),
    ("budget check and reserve", "_within_budget ("),
    ("building the answer", "completion_body ("),
]
HANDLER = "handle_call ("


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=8000, help="Sequential calls sampled.")
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second.")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "", help="Path of the py-spy executable.")
    a = ap.parse_args()
    if not a.py_spy or not Path(a.py_spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy, or pass --py-spy PATH")
    q: mp.Queue = mp.Queue()
    upstream = mp.Process(target=g.serve_upstream, args=(q,), daemon=True)
    upstream.start()
    up = f"http://127.0.0.1:{q.get(timeout=30)}/v1"
    tmp = Path(tempfile.mkdtemp(prefix="gw-profile-"))
    proc, url = g.start_ours(up, tmp)
    out = tmp / "samples.txt"
    try:
        t = g.Target("ours", url, "auto")
        asyncio.run(g.sequential(t, 300, False))  # warm up
        spy = subprocess.Popen([a.py_spy, "record", "-p", str(proc.pid), "-o", str(out), "-f", "raw", "-r",
                                str(a.rate), "--threads", "--nonblocking"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        asyncio.run(g.sequential(t, a.calls, False))
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(timeout=60)
    finally:
        proc.terminate()
    counts: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "MainThread" not in stack.split(";", 1)[0] or HANDLER not in stack:
            continue
        counts["handler"] += int(n)
        for label, frame in PARTS:
            if frame in stack:
                counts[label] += int(n)
    total = counts["handler"]
    if not total:
        raise SystemExit(f"no handler samples in {out}")
    print(f"gateway profile: {a.calls} sequential `auto` calls, {total} main-thread samples in the request handler")
    for label, _ in PARTS:
        print(f"{label:36s} {100 * counts[label] / total:5.1f}%")
    accounted = sum(counts[label] for label, _ in PARTS if not label.startswith(" "))
    print(f"{'the rest (aiohttp server, headers, ledger hand-off)':36s} {100 * (total - accounted) / total:5.1f}%")


if __name__ == "__main__":
    main()
