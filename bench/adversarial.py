"""Hostile message text against ordinary text of the same length: time of `route` (heuristic and learned),
`compress` and `analyze` for 100 KB and 1 MB strings of each adversarial kind, beside an ordinary message
(prose with code blocks) of the same length measured in the same run, with the ratio. Prints figures;
asserts nothing.

    python bench/adversarial.py [--sizes 100000,1000000] [--repeat 3]

Goal: within 3x of ordinary text, and under 50 ms for 1 MB on one core. The process is pinned to one core
(os.sched_setaffinity, where available) and numpy's BLAS to one thread. Each timed call gets a fresh copy of
the string and a fresh token counter, so no per-text cache or cached string hash helps it. compress: the text
is a tool result in the middle of a conversation, compressed to 4,000 tokens.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - after the thread settings, which must precede numpy's import
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from agent_router.analyzer import analyze  # noqa: E402
from agent_router.compression.compressor import compress  # noqa: E402
from agent_router.plugins import load_plugins  # noqa: E402
from agent_router.router import Router  # noqa: E402
from agent_router.settings import CompressionSettings, Settings  # noqa: E402
from agent_router.tokens import TokenCounter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_adversarial import adversarial  # noqa: E402 - the same hostile kinds the tests feed

PROSE = (
    "The service reads its settings at start, then opens one connection per worker. When a request arrives it "
    "checks the cache first; on a miss it asks the database and keeps the answer for five minutes. Why does the "
    "p99 latency double after a deploy? Compare the two runs and explain the trade-offs step by step.\n\n"
)
CODE = (
    "```python\ndef handle(request, cache, db):\n    key = request.path\n    hit = cache.get(key)\n"
    "    if hit is not None:\n        return hit\n    value = db.query(key)\n    cache.set(key, value, ttl=300)\n"
    "    return value\n```\n\n"
)
NO_HOOK = CompressionSettings(summarize=False)


def ordinary(n: int) -> str:
    """Natural text of about `n` characters: prose paragraphs with a code block every few of them."""
    rng = random.Random(1)
    words = PROSE.split()
    out: list[str] = []
    size = 0
    while size < n:
        para = " ".join(rng.choice(words) for _ in range(60)) + ".\n\n"
        piece = para + (CODE if rng.random() < 0.3 else "")
        out.append(piece)
        size += len(piece)
    return "".join(out)[:n]


def median_ms(fn, repeat: int) -> float:
    xs = []
    for _ in range(repeat):
        run = fn()  # set-up (fresh string copy and counter) outside the timed part
        t = time.perf_counter()
        run()
        xs.append((time.perf_counter() - t) * 1000)
    return statistics.median(xs)


def fresh(s: str) -> str:
    return (s + ".")[:-1]  # a new string object: its hash is not cached yet


def measure(text: str, router: Router, learned: Router, repeat: int) -> dict[str, float]:
    def route_with(r: Router):
        def setup():
            r.counter = TokenCounter()
            msgs = [{"role": "user", "content": fresh(text)}]
            return lambda: r.route(msgs)
        return setup

    def analyze_setup():
        msgs = [{"role": "user", "content": fresh(text)}]
        return lambda: analyze(msgs)

    def compress_setup():
        call = {"id": "c1", "type": "function", "function": {"name": "fetch", "arguments": '{"url": "x"}'}}
        msgs = [{"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": "Read the page and fix the bug."},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": fresh(text)},
                {"role": "user", "content": "Now run the tests and tell me what failed."},
                {"role": "assistant", "content": "Running them."}]
        counter = TokenCounter()
        return lambda: compress(msgs, 4000, settings=NO_HOOK, counter=counter)

    return {
        "route": median_ms(route_with(router), repeat),
        "learned": median_ms(route_with(learned), repeat),
        "compress": median_ms(compress_setup, repeat),
        "analyze": median_ms(analyze_setup, repeat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="Comma-separated string lengths in characters.")
    ap.add_argument("--repeat", type=int, default=3, help="Timed runs per figure (the median is printed).")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        print(f"pinned to core {sorted(os.sched_getaffinity(0))[0]}")
    router = Router()
    learned = Router(Settings.model_validate({"learned": {"enabled": True}}), pm=load_plugins())
    warm = ordinary(20_000)  # load encodings, plugins and weights before timing
    measure(warm, router, learned, 1)
    cols = ("route", "learned", "compress", "analyze")
    worst_ratio, worst_ms = 0.0, 0.0
    for n in (int(x) for x in args.sizes.split(",")):
        base = measure(ordinary(n), router, learned, args.repeat)
        print(f"\n{n:,} chars   (ms, median of {args.repeat}; ratio to ordinary text of the same length)")
        print(f"{'kind':<16}" + "".join(f"{c:>20}" for c in cols))
        print(f"{'ordinary':<16}" + "".join(f"{base[c]:>12.1f}        " for c in cols))
        for kind, text in adversarial(n).items():
            got = measure(text, router, learned, args.repeat)
            cells = []
            for c in cols:
                ratio = got[c] / max(base[c], 1e-6)
                worst_ratio = max(worst_ratio, ratio)
                worst_ms = max(worst_ms, got[c]) if n >= 1_000_000 else worst_ms
                cells.append(f"{got[c]:>12.1f} {ratio:>5.1f}x ")
            print(f"{kind:<16}" + "".join(cells))
    print(f"\nworst ratio to ordinary: {worst_ratio:.1f}x (goal <= 3x); "
          f"worst time at 1 MB: {worst_ms:.1f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
