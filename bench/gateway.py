"""What `agent-router serve` adds to a chat call, beside direct calls and LiteLLM's proxy, in one run.

One local upstream (asyncio, TCP_NODELAY, keep-alive, its own process) answers OpenAI chat completions: a
fixed JSON body, or an SSE stream of a few chunks with a usage chunk. Then, against that same upstream:
  direct    the client calls the upstream itself
  ours      `agent-router serve` (one worker, model "auto": analyzed, routed, budgeted, recorded in the ledger)
  bare      a bare aiohttp proxy (forwards bytes; no routing, no ledger): the floor of one more HTTP hop
  heuristic `agent-router serve` as ours but with the heuristic router (learned.enabled false): what the
            learned router (the default) costs per request is ours minus this
  litellm   LiteLLM's proxy (../shared/bench/peers/litellm_proxy.sh, one worker), model "mid"
Printed: added latency p50 / p99 over direct (sequential, one kept-alive connection), time to first token
added for streams, throughput at concurrency 32 and 128, the gateway process's RSS (peak, VmHWM) and the CPU
time it spent per sequential call (all its threads, so ledger writes count). `--baseline DIR` adds a second
`agent-router serve` from another checkout ("before"), measured in the same rounds. While one target is measured
the others are stopped (SIGSTOP, then SIGCONT), so no idle server's timers take the CPU from it; `--no-isolate`
keeps them all running.

    python bench/gateway.py [--calls 1000] [--seconds 5] [--rounds 5] [--no-litellm] [--only ours,bare,heuristic]
                            [--baseline DIR] [--peers DIR] [--prompts fixed|unique|agent] [--no-isolate]

The peer needs `litellm[proxy]` (the script builds its venv on first use; set PEERS_PROXY_VENV to reuse one).
Everything binds 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

BODY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "mid",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how can I help?"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> bytes:
    c: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "mid",
                         "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    data = b"data: " + json.dumps(c).encode() + b"\n\n"
    return hex(len(data))[2:].encode() + b"\r\n" + data + b"\r\n"


STREAM = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
          + _chunk({"role": "assistant", "content": ""}) + _chunk({"content": "Hello"})
          + _chunk({"content": " there"}) + _chunk({}, "stop")
          + _chunk({}, usage={"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28})
          + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")


class _Upstream(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t, self.buf = transport, b""
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buf[:head_end].split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            body, self.buf = self.buf[head_end + 4:end], self.buf[end:]
            self.t.write(STREAM if b'"stream": true' in body or b'"stream":true' in body else RESPONSE)


def serve_upstream(port_q: Any) -> None:
    """The local upstream (OpenAI chat completions, plain or streamed) on 127.0.0.1; puts its port on `port_q`."""
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", 0, backlog=4096)
        port_q.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def run_proxy(make_handler: Any, port_q: Any) -> None:
    """An aiohttp server on a free 127.0.0.1 port whose POST /v1/chat/completions is the handler that
    `await make_handler()` returns (made inside the running loop, with what it needs); puts the port on `port_q`.
    uvloop when installed, as `serve` runs."""
    from aiohttp import web

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", await make_handler())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_q.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def _bare_proxy(up: str, port_q: Any) -> None:
    """The floor: an aiohttp server that forwards the body to the upstream and the answer back, nothing else
    (same stack, same loop as ours, no routing, no ledger)."""
    from aiohttp import web

    async def make_handler() -> Any:
        session = aiohttp.ClientSession()

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            async with session.post(f"{up}/chat/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                if b'"stream": true' not in body:
                    return web.Response(body=await r.read(), content_type="application/json")
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        return handle

    run_proxy(make_handler, port_q)


# -- clients -------------------------------------------------------------------------------------------------
PROMPT = [{"role": "user", "content": "Summarize in one line: the build passed after the retry fix."}]
SYSTEM = {"role": "system", "content": "You are a coding agent. Use the tools to inspect the repository, then "
          "answer briefly. " * 4}
TOOL_STEP = [{"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\": \"ci.log\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "retry 1 failed: timeout\nretry 2 passed\n" * 20}]


def messages_for(prompts: str, i: int) -> list[dict[str, Any]]:
    """The request of call `i`: `fixed` the same question each call; `unique` a question no call asked before
    (nothing the gateway keeps per request helps); `agent` the steps of an agent's tool loop (a system prompt,
    the task, then 0-7 tool calls and results after it: the same question with a growing history)."""
    if prompts == "unique":
        return [{"role": "user", "content": f"{PROMPT[0]['content']} Ticket {i * 7919 % 100003}, run {i}."}]
    if prompts == "agent":
        return [SYSTEM, {"role": "user", "content": f"Why did build {i // 8 % 50} need a retry? Check ci.log."},
                *TOOL_STEP * (i % 8)]
    return PROMPT


class Target:
    prompts = "fixed"  # --prompts

    def __init__(self, name: str, url: str, model: str, key: str | None = None, pid: int | None = None):
        self.name, self.url, self.model, self.pid = name, url, model, pid
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def body(self, stream: bool, i: int) -> bytes:
        b: dict[str, Any] = {"model": self.model, "messages": messages_for(self.prompts, i), "max_tokens": 64}
        if stream:
            b["stream"], b["stream_options"] = True, {"include_usage": True}
        return json.dumps(b).encode()


async def one(s: aiohttp.ClientSession, t: Target, stream: bool, i: int) -> tuple[float, float]:
    """(total seconds, seconds to the first content chunk) of one call."""
    t0 = time.perf_counter()
    first = 0.0
    h = {**t.headers, "X-Conversation-Id": f"bench-{i % 64}"}
    async with s.post(f"{t.url}/chat/completions", data=t.body(stream, i), headers=h) as r:
        if r.status != 200:
            raise RuntimeError(f"{t.name}: HTTP {r.status}: {(await r.text())[:300]}")
        if stream:
            async for line in r.content:
                if not first and b'"content": "Hello"' in line.replace(b'":"', b'": "'):
                    first = time.perf_counter() - t0
        else:
            await r.read()
    return time.perf_counter() - t0, first


async def sequential(t: Target, n: int, stream: bool) -> tuple[list[float], list[float]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i in range(min(50, n)):  # warm up: connections, caches, lazy imports
            await one(s, t, stream, i)
        tot, first = [], []
        for i in range(n):
            a, b = await one(s, t, stream, i)
            tot.append(a)
            first.append(b)
    return tot, first


async def throughput(t: Target, conc: int, seconds: float) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        await asyncio.gather(*(one(s, t, False, i) for i in range(conc)))  # open the connections
        done = 0
        end = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < end:
                await one(s, t, False, i)
                done += 1
                i += conc

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(conc)))
        return done / (time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def rss_mb(pid: int | None) -> tuple[float, float] | None:
    """(current RSS, peak RSS) in MB of a process and its descendants (the gateway's workers)."""
    if pid is None:
        return None
    cur = peak = 0.0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        cur += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
        peak += int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return cur, peak


def tree(pid: int | None) -> list[int]:
    """`pid` and its descendants (a gateway's workers, a proxy's children)."""
    if pid is None:
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


class Alone:
    """While one target is measured, the other targets' processes are stopped (SIGSTOP) and continued after
    (SIGCONT): an idle server's timers and background tasks (LiteLLM's, ours) would otherwise take the CPU from
    the one measured on a small machine, which is not what either adds to a call. The shared upstream and the
    client keep running. `--no-isolate` measures with every target running."""

    def __init__(self, targets: list[Target], t: Target, on: bool):
        self.pids = [p for o in targets if o is not t for p in tree(o.pid)] if on else []

    def _signal(self, sig: int) -> None:
        for p in self.pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def __enter__(self) -> None:
        self._signal(signal.SIGSTOP)

    def __exit__(self, *exc: Any) -> None:
        self._signal(signal.SIGCONT)


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) a process has used: what a call costs the gateway, a figure a
    loaded machine blurs much less than latency."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int | None, quiet_s: float = 0.08, limit_s: float = 3.0) -> None:
    """Wait (at most `limit_s`) until the process has used no CPU for `quiet_s`: a gateway still writing the
    ledger rows of the throughput run before would otherwise bill them to the sequential calls measured next
    (measured: up to ~200 us a call more for whichever server ran the last throughput run, same code)."""
    if pid is None:
        return
    end = time.monotonic() + limit_s
    last, since = cpu_s(pid), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        used = cpu_s(pid)
        if used != last:
            last, since = used, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


# -- servers under test ----------------------------------------------------------------------------------------
def write_settings(up: str, tmp: Path, extra: dict[str, Any] | None = None) -> Path:
    """The bench settings (three models on the upstream `up`, one per tier, a ledger in `tmp`, plus `extra`
    top-level sections) written to tmp/settings.json."""
    def m(name: str, price: tuple[float, float]) -> dict[str, Any]:
        return {"provider": "openai_compatible", "name": name, "base_url": up,
                "price": {"input": price[0], "output": price[1]}}

    settings = {
        "models": {"cheap": m("cheap", (0.1, 0.4)), "mid": m("mid", (0.4, 1.6)), "premium": m("premium", (3, 15))},
        "tiers": {"utility": ["cheap"], "chat": ["mid"], "premium": ["premium"]},
        "ledger": {"path": str(tmp / "ledger.db")},
        "providers": {"max_retries": 0},
        **(extra or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "settings.json"
    p.write_text(json.dumps(settings))
    return p


def start_ours(up: str, tmp: Path, src: str | None = None,
               extra: dict[str, Any] | None = None) -> tuple[subprocess.Popen, str]:
    """`agent-router serve` on the bench settings (plus `extra` top-level sections); `src`: another checkout's
    folder to run instead of this one."""
    p = write_settings(up, tmp, extra)
    log_path = tmp / "gateway.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(x for x in (src, os.environ.get("PYTHONPATH")) if x))
    # `-m` puts the working directory first on sys.path: the baseline runs from its own folder, or this checkout's
    # package would shadow it.
    proc = subprocess.Popen([sys.executable, "-m", "agent_router", "serve", "--settings", str(p), "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT, env=env if src else None, cwd=src or None)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if found:
            return proc, found.group(1) + "/v1"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"agent-router serve did not start: {log_path.read_text()[-2000:]}")


def start_litellm(up: str, peers: Path) -> tuple[int, str] | str:
    script = peers / "litellm_proxy.sh"
    if not script.exists():
        return f"{script} not found"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        r = subprocess.run(["bash", str(script), up, str(port), "cheap", "mid", "premium"], capture_output=True,
                           text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "litellm_proxy.sh did not finish in 15 minutes"
    if r.returncode != 0:
        return f"litellm_proxy.sh failed: {r.stderr.strip()[-400:]}"
    return int(r.stdout.strip().splitlines()[-1]), f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="Sequential calls per target and mode.")
    ap.add_argument("--seconds", type=float, default=5.0, help="Duration of each throughput run.")
    ap.add_argument("--no-litellm", action="store_true", help="Measure direct and ours only.")
    ap.add_argument("--only", default="", help="Comma-separated targets to measure beside direct (ours, bare, "
                    "litellm); default all.")
    ap.add_argument("--rounds", type=int, default=5,
                    help="Interleave the targets in this many rounds (calls and seconds split between them), so "
                    "a machine whose load drifts weighs on every target alike.")
    ap.add_argument("--baseline", default="",
                    help="Also measure `agent-router serve` from this folder (another checkout's root, e.g. an "
                    "extracted `git archive main`) as target 'before', for before/after figures in one run.")
    ap.add_argument("--peers", default=str(Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers"),
                    help="Folder of litellm_proxy.sh (default: ../shared/bench/peers beside the checkout).")
    ap.add_argument("--prompts", choices=("fixed", "unique", "agent"), default="fixed",
                    help="What the calls ask: the same question (fixed), a new question each call (unique), or "
                    "the steps of an agent's tool loop (agent); see messages_for.")
    ap.add_argument("--no-isolate", dest="isolate", action="store_false",
                    help="Keep every target running while one is measured (by default the others are stopped: "
                    "see Alone).")
    a = ap.parse_args()
    Target.prompts = a.prompts
    known = {"ours", "bare", "heuristic", "litellm"}
    only = {x.strip() for x in a.only.split(",") if x.strip()} or known
    if only - known:
        ap.error(f"--only: unknown target(s) {', '.join(sorted(only - known))}")
    if "ours" not in only:
        ap.error("--only: ours is always measured (the ratios are about it)")

    q: Any = mp.Queue()
    upstream = mp.Process(target=serve_upstream, args=(q,), daemon=True)
    upstream.start()
    up = f"http://127.0.0.1:{q.get(timeout=30)}/v1"
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    procs: list[Any] = []
    targets = [Target("direct", up, "mid")]
    bare: Any = None
    if "bare" in only:
        bq: Any = mp.Queue()
        bare = mp.Process(target=_bare_proxy, args=(up, bq), daemon=True)
        bare.start()
        targets.append(Target("bare", f"http://127.0.0.1:{bq.get(timeout=30)}/v1", "mid", pid=bare.pid))
    ours, ours_url = start_ours(up, tmp)
    procs.append(ours)
    targets.append(Target("ours", ours_url, "auto", pid=ours.pid))
    if "heuristic" in only:
        heur, heur_url = start_ours(up, tmp / "heuristic", extra={"learned": {"enabled": False}})
        procs.append(heur)
        targets.append(Target("heuristic", heur_url, "auto", pid=heur.pid))
    if a.baseline:
        before, before_url = start_ours(up, tmp / "before", str(Path(a.baseline).resolve()))
        procs.append(before)
        targets.append(Target("before", before_url, "auto", pid=before.pid))
    peer_note = ""
    if not a.no_litellm and "litellm" in only:
        got = start_litellm(up, Path(a.peers))
        if isinstance(got, str):
            peer_note = f"litellm: not measured ({got})"
        else:
            pid, url = got
            procs.append(pid)
            key = os.environ.get("LITELLM_PEER_KEY", "sk-peer-0123456789abcdef0123")
            targets.append(Target("litellm", url, "mid", key=key, pid=pid))
    try:
        report(targets, a, peer_note)
    finally:
        for p in procs:
            if isinstance(p, int):
                try:
                    os.kill(p, 15)
                except ProcessLookupError:
                    pass
            else:
                p.terminate()
                p.wait(15)
        upstream.terminate()
        if bare is not None:
            bare.terminate()


def report(targets: list[Target], a: argparse.Namespace, peer_note: str) -> None:
    res: dict[str, dict[str, Any]] = {t.name: {"tot": [], "stot": [], "sfirst": [], 32: [], 128: [], "cpu": 0.0}
                                      for t in targets}
    rounds = max(1, a.rounds)
    for _ in range(rounds):  # interleaved: each round measures every target a little
        for t in targets:
            r = res[t.name]
            with Alone(targets, t, a.isolate):
                settle(t.pid)  # what the last throughput run left (ledger rows) is not this run's CPU
                c0 = cpu_s(t.pid)
                tot, _ = asyncio.run(sequential(t, max(1, a.calls // rounds), False))
                r["cpu"] += cpu_s(t.pid) - c0
                stot, sfirst = asyncio.run(sequential(t, max(1, max(200, a.calls // 2) // rounds), True))
            r["tot"] += tot
            r["stot"] += stot
            r["sfirst"] += sfirst
        for c in (32, 128):
            for t in targets:
                with Alone(targets, t, a.isolate):
                    res[t.name][c].append(asyncio.run(throughput(t, c, a.seconds / rounds)))
    for t in targets:
        r = res[t.name]
        r.update({"p50": statistics.median(r["tot"]), "p99": pct(r["tot"], 99), "ttft": statistics.median(r["sfirst"]),
                  "s_p50": statistics.median(r["stot"]), "rps32": statistics.mean(r[32]),
                  "rps128": statistics.mean(r[128]), "rss": rss_mb(t.pid),
                  "cpu_us": r["cpu"] / (len(r["tot"]) + min(50, a.calls // rounds) * rounds) * 1e6})
    d = res["direct"]
    print(f"gateway bench: {a.calls} sequential calls per target, throughput runs of {a.seconds:g} s, interleaved in "
          f"{rounds} rounds; "
          f"one local upstream (asyncio, TCP_NODELAY); {os.cpu_count()} CPUs shared by client, upstream, gateway; "
          f"prompts: {a.prompts}; "
          + ("other targets stopped while one is measured" if a.isolate else "every target running (--no-isolate)"))
    print(f"direct: p50 {d['p50'] * 1e3:.3f} ms, p99 {d['p99'] * 1e3:.3f} ms, stream TTFT p50 "
          f"{d['ttft'] * 1e3:.3f} ms, {d['rps32']:.0f} req/s @32, {d['rps128']:.0f} req/s @128")
    print(f"{'target':8} {'added p50':>10} {'added p99':>10} {'TTFT added':>11} {'req/s @32':>10} {'req/s @128':>11}"
          f" {'RSS MB (peak)':>14} {'CPU us/call':>12}")
    for name, r in res.items():
        if name == "direct":
            continue
        rss = r["rss"]
        print(f"{name:8} {(r['p50'] - d['p50']) * 1e3:9.3f}ms {(r['p99'] - d['p99']) * 1e3:9.3f}ms "
              f"{(r['ttft'] - d['ttft']) * 1e3:10.3f}ms {r['rps32']:10.0f} {r['rps128']:11.0f} "
              f"{(f'{rss[0]:.0f} ({rss[1]:.0f})' if rss else '-'):>14} {r['cpu_us']:12.0f}")
    o = res["ours"]
    if "bare" in res:
        parts = [f"ours {(o['p50'] - d['p50']) * 1e3:.3f} ms = bare hop {(res['bare']['p50'] - d['p50']) * 1e3:.3f} ms"]
        if "heuristic" in res:
            h = res["heuristic"]
            parts += [f"+ gateway with the heuristic router {(h['p50'] - res['bare']['p50']) * 1e3:.3f} ms",
                      f"+ the learned router over the heuristic {(o['p50'] - h['p50']) * 1e3:.3f} ms"]
        else:
            parts.append(f"+ gateway {(o['p50'] - res['bare']['p50']) * 1e3:.3f} ms")
        ratio = (o["p50"] - d["p50"]) / max(1e-9, res["bare"]["p50"] - d["p50"])
        print("added p50: " + " ".join(parts) + f"; ours / bare {ratio:.2f}x")
    if "litellm" in res:
        lt = res["litellm"]
        added = (o["p50"] - d["p50"], lt["p50"] - d["p50"])
        print(f"ours vs litellm: added p50 {added[0] * 1e3:.3f} ms vs {added[1] * 1e3:.3f} ms "
              f"({added[1] / max(added[0], 1e-9):.1f}x less); throughput {o['rps32'] / lt['rps32']:.1f}x @32, "
              f"{o['rps128'] / lt['rps128']:.1f}x @128; TTFT added {(o['ttft'] - d['ttft']) * 1e3:.3f} ms vs "
              f"{(lt['ttft'] - d['ttft']) * 1e3:.3f} ms")
    if peer_note:
        print(peer_note)


if __name__ == "__main__":
    main()
