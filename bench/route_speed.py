"""Microseconds per routing decision on unique prompts: the default router (learned, cost objective, adaptive)
and the heuristic router, on small talk, short, medium, long and multi-turn prompts; with `--baseline DIR`
another checkout (e.g. `git archive main | tar -x -C /tmp/base`) is timed in the same run and the ratio printed.

    python bench/route_speed.py [--baseline DIR] [--calls N] [--rounds R] [--kinds chat,short,medium,long,history]

Every call routes a prompt never seen before (a serial number and words drawn at random make each one unique),
so no per-text cache (token counts) helps; word-level memos do, as they would on real traffic. Each checkout runs
in a worker process of its own (AGENT_ROUTER_HOME a fresh temporary folder, so built-in defaults; tiktoken's
encoder loaded first, as the gateway does); the rounds alternate between them, so a machine whose speed drifts
slows both alike. Time is the worker's CPU time (time.process_time): on a shared machine, time spent waiting
for a core is not counted. Printed per row: the median over rounds of the mean CPU time per route, and this
checkout's speed-up over the baseline (baseline time / this time). numpy's BLAS threads are set to 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
KINDS = ("chat", "short", "medium", "long", "history")
CHAT = ("hi there", "thanks a lot", "tell me a joke about", "good morning", "write a haiku about", "hello, how are you",
        "ok, and what about", "nice, thank you for")
ROUTERS = ("default", "heuristic")
VOCAB = (
    "the a of and to in is it that for on with as why how what explain write function python code test compare "
    "design plan list summary table json story poem data user server error fix bug please short detailed answer "
    "step first then finally must should never always number sum average price week report email search file "
    "model cost time ratio probability prove derive analyze tell me about quickly hello thanks"
).split()


def prompt(kind: str, rnd: random.Random, serial: int) -> list[dict]:
    def text(n: int) -> str:
        words = rnd.choices(VOCAB, k=n)
        for i in range(0, n, 9):
            words[i] = words[i].capitalize()
        for i in range(8, n, 17):
            words[i] += rnd.choice(".?,:")
        return " ".join(words)

    if kind == "chat":  # small talk and short creative asks: what the learned router hands to the heuristic
        return [{"role": "user", "content": f"{rnd.choice(CHAT)} {rnd.choice(VOCAB)} {serial}"}]
    if kind == "short":  # ~12 words: a question or task
        return [{"role": "user", "content": f"{text(11)} #{serial}?"}]
    if kind == "medium":  # ~200 words: a task with some detail
        return [{"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": f"Task {serial}: {text(200)}"}]
    if kind == "long":  # ~6,000 words (~35 KB): past the scan window of the text features
        return [{"role": "user", "content": f"Document {serial}:\n" + "\n\n".join(text(150) for _ in range(40))}]
    msgs: list[dict] = [{"role": "system", "content": "You are a coding agent."}]  # history: 10 turns
    for t in range(10):
        msgs += [{"role": "user", "content": f"Turn {serial}.{t}: {text(25)}"},
                 {"role": "assistant", "content": text(60)}]
    msgs.append({"role": "user", "content": f"Now {serial}: {text(15)}?"})
    return msgs


def worker() -> None:
    """Reads {"kind", "router", "calls", "seed"} lines; answers each with {"us": mean µs per route}."""
    os.environ["AGENT_ROUTER_HOME"] = tempfile.mkdtemp(prefix="route-speed-")
    from agent_router.router import Router
    from agent_router.settings import Settings, load

    routers = {"default": Router(load()),
               "heuristic": Router(Settings.model_validate({"learned": {"enabled": False}}))}
    for r in routers.values():
        for m in r.catalog:
            r.counter.load_full(m.provider, m.name)
        rnd = random.Random(-1)
        for i in range(200):  # warm: the learned router's weights, regexes, word memos
            r.route(prompt(KINDS[i % len(KINDS)], rnd, -i - 1))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        rnd = random.Random(ask["seed"])
        prompts = [prompt(ask["kind"], rnd, ask["seed"] * 100_000 + i) for i in range(ask["calls"])]
        route = routers[ask["router"]].route
        t = time.process_time()
        for p in prompts:
            route(p)
        us = (time.process_time() - t) / len(prompts) * 1e6
        print(json.dumps({"us": us}), flush=True)


class Worker:
    def __init__(self, checkout: Path):
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        self.p = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env, cwd=str(checkout))
        self.ask_line = self.p.stdout.readline  # type: ignore[union-attr]
        if not json.loads(self.ask_line()).get("ready"):
            raise SystemExit(f"worker for {checkout} did not start")

    def time(self, kind: str, router: str, calls: int, seed: int) -> float:
        self.p.stdin.write(json.dumps({"kind": kind, "router": router, "calls": calls, "seed": seed}) + "\n")  # type: ignore[union-attr]
        self.p.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(self.ask_line())["us"])

    def close(self) -> None:
        self.p.stdin.close()  # type: ignore[union-attr]
        self.p.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout to time in the same run")
    ap.add_argument("--calls", type=int, default=400, help="unique prompts per round and row (long: a fifth)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(KINDS), help="prompt kinds to time (comma-separated)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := sorted(set(kinds) - set(KINDS)):
        raise SystemExit(f"--kinds: unknown {unknown[0]!r} (known: {', '.join(KINDS)})")
    if args.baseline and not (args.baseline / "agent_router" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no agent_router package there")
    workers = {"this": Worker(HERE)}
    if args.baseline:
        workers["base"] = Worker(args.baseline.resolve())
    times: dict[tuple[str, str, str], list[float]] = {}
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                calls = max(1, args.calls // 5) if kind == "long" else args.calls
                for router in ROUTERS:
                    order = list(workers) if rnd % 2 == 0 else list(reversed(workers))
                    for name in order:  # the same prompts for both checkouts
                        us = workers[name].time(kind, router, calls, seed=rnd + 1)
                        times.setdefault((name, kind, router), []).append(us)
    finally:
        for w in workers.values():
            w.close()
    print(f"CPU µs per route, median of {args.rounds} rounds ({args.calls} unique prompts per round; long: "
          f"{max(1, args.calls // 5)})")
    head = f"{'prompt':<9}{'router':<11}{'this':>10}"
    if args.baseline:
        head += f"{'baseline':>11}{'speed-up':>10}"
    print(head)
    for kind in kinds:
        for router in ROUTERS:
            this = statistics.median(times[("this", kind, router)])
            row = f"{kind:<9}{router:<11}{this:>10.1f}"
            if args.baseline:
                base = statistics.median(times[("base", kind, router)])
                row += f"{base:>11.1f}{base / this:>9.2f}x"
            print(row)


if __name__ == "__main__":
    main()
