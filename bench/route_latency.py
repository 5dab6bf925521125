"""Decision latency (p50/p99) for a short prompt and a 100k-token history, and token counting with and
without the per-message cache. Prints figures; asserts nothing.

    python bench/route_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from agent_router.plugins import load_plugins
from agent_router.router import Router
from agent_router.tokens import TokenCounter


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def history(turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a careful coding agent. Follow the user's constraints."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"Step {i}: look at module_{i}.py and tell me what changed. " * 6})
        msgs.append({"role": "assistant", "content": f"In module_{i}.py the function handle_{i} now returns "
                     f"early when the queue is empty; tests in test_{i}.py cover it. " * 8})
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    router = Router(pm=load_plugins())
    short = [{"role": "user", "content": "What is the capital of France?"}]
    router.route(short)
    s = timed(lambda: router.route(short), args.repeat)
    # Baseline in the same run: fixed pure-Python work of similar size shows how noisy this machine is now.
    base = timed(lambda: sorted(str(i) for i in range(1500)), args.repeat)
    print(f"decision, short prompt:        p50 {statistics.median(s):7.3f} ms   p99 {pct(s, 99):7.3f} ms")
    print(f"  baseline (fixed work):       p50 {statistics.median(base):7.3f} ms   p99 {pct(base, 99):7.3f} ms"
          "  (p99/p50 of the baseline = machine noise)")

    big = history(560)
    n = TokenCounter().count_messages(big, "openai", "gpt-4").tokens
    router.route(big)  # warm the per-message cache, as a live conversation would have
    growing = [big + [{"role": "user", "content": f"new question {i}?"}] for i in range(args.repeat // 10 or 1)]
    it = iter(growing * 10)
    b = timed(lambda: router.route(next(it)), len(growing) * 10)
    print(f"decision, {n:,}-token history: p50 {statistics.median(b):7.3f} ms   p99 {pct(b, 99):7.3f} ms"
          " (history cached, one new message)")

    cold = timed(lambda: TokenCounter().count_messages(big, "openai", "gpt-4"), 5)
    warm_counter = TokenCounter()
    warm_counter.count_messages(big, "openai", "gpt-4")
    extra = big + [{"role": "user", "content": "and one more thing?"}]
    warm = timed(lambda: warm_counter.count_messages(extra, "openai", "gpt-4"), 50)
    print(f"count {n:,} tokens, no cache:  median {statistics.median(cold):8.2f} ms")
    print(f"count same + 1 new, cached:    median {statistics.median(warm):8.2f} ms  "
          f"({statistics.median(cold) / statistics.median(warm):.0f}x faster; only the new message is tokenized)")


if __name__ == "__main__":
    main()
