"""Offline compression benchmark: agent_router.compression beside two naive baselines, in the same run.

    python bench/compression/run.py [--seeds 5] [--tokens 100000] [--json]

For each seeded conversation (hundreds of messages: planted facts, code blocks, tool-call pairs, big tool
outputs, pasted logs) and each budget (50%, 25%, 10% of its tokens) it reports, per method:
- reduction: 1 - after / before; fits: share of runs within the budget
- recall: share of planted facts whose unique key is still in the messages
- unmarked: the same for plain statements no important_pattern matches (kept only if their message stays,
  or a summary keeps them): where the deterministic path is weak
- code: blocks kept whole / elided or summarized with an explicit mention / cut (partly present) / lost
- orphans: tool calls without their result plus results without their call
- fences: messages with an unclosed code fence; roles: other role-order problems
- sys / first / recent: system prompt exact, first request kept, newest turns exact (share of runs)
- ms: time of one call (median), with the token counts already cached (as in the agent, where the router
  counted the prompt first) and cold (a new counter)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from generate import Conversation, generate  # noqa: E402

from agent_router.compression.compressor import _turn_starts, compress, structure_problems  # noqa: E402
from agent_router.settings import CompressionSettings  # noqa: E402
from agent_router.tokens import TokenCounter  # noqa: E402

BUDGETS = (0.5, 0.25, 0.1)
CODE_KEYS = ("whole", "marker", "summarized", "cut", "unaccounted")


# --- baselines -------------------------------------------------------------------------------------------
def drop_oldest(messages: list[dict[str, Any]], budget: int, counter: TokenCounter) -> list[dict[str, Any]]:
    """Keep the system prompt; drop the oldest other messages until the rest fits."""
    head = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    per = [3 + counter.message_tokens(m) for m in rest]
    total = 3 + sum(3 + counter.message_tokens(m) for m in head) + sum(per)
    k = 0
    while total > budget and k < len(rest) - 1:
        total -= per[k]
        k += 1
    return head + rest[k:]


def truncate_text(messages: list[dict[str, Any]], budget: int, counter: TokenCounter) -> list[dict[str, Any]]:
    """Cut every message's text to the same share of its length until the whole fits."""
    before = counter.count_messages(messages).tokens
    ratio = budget / before
    out = messages
    for _ in range(8):
        out = []
        for m in messages:
            c = m.get("content")
            if isinstance(c, str) and c:
                m = {**m, "content": c[:max(1, int(len(c) * ratio))]}
            out.append(m)
        after = counter.count_messages(out).tokens
        if after <= budget:
            break
        ratio *= budget / after * 0.98
    return out


# --- measures --------------------------------------------------------------------------------------------
def _all_text(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages, ensure_ascii=False)


def _plain_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        for tc in m.get("tool_calls") or []:
            parts.append(json.dumps(tc))
    return "\n".join(parts)


def code_status(conv: Conversation, out: list[dict[str, Any]]) -> dict[str, int]:
    """Each planted block: whole, elided by a marker that names it, cut (fence and first line there, block
    not), or inside a summarized span whose header counts its code blocks; the rest is unaccounted."""
    text = _plain_text(out)
    res = {"whole": 0, "marker": 0, "summarized": 0, "cut": 0, "unaccounted": 0}
    rest = 0
    for block in conv.code_blocks:
        lines = block.split("\n")
        hint = lines[1].strip()[:40]
        if block in text:
            res["whole"] += 1
        elif "\n".join(lines[:2]) in text:
            res["cut"] += 1
        elif re.search(r"code block elided: [^\]]*" + re.escape(hint), text):
            res["marker"] += 1
        else:
            rest += 1
    counted = sum(int(n) for n in re.findall(r"(\d+) code blocks", text))
    res["summarized"] = min(rest, counted)
    res["unaccounted"] = rest - res["summarized"]
    return res


def recent_exact(inp: list[dict[str, Any]], out: list[dict[str, Any]], k: int) -> bool:
    starts = _turn_starts(inp)
    first_user = next(i for i, m in enumerate(inp) if m["role"] == "user")
    starts = [s for s in starts if s > first_user]
    if not starts:
        return True
    tail = inp[starts[-k]:] if len(starts) >= k else inp[first_user + 1:]
    return out[len(out) - len(tail):] == tail


def measure(conv: Conversation, out: list[dict[str, Any]], budget: int, before: int, counter: TokenCounter,
            k: int) -> dict[str, Any]:
    after = counter.count_messages(out).tokens
    text = _all_text(out)
    probs = structure_problems(out)
    inp = conv.messages
    sys_in = [m for m in inp if m["role"] == "system"]
    first_in = next(m for m in inp if m["role"] == "user")
    first_out = next((m for m in out if m["role"] == "user"), {"content": ""})
    return {
        "reduction": 1 - after / before,
        "fits": after <= budget,
        "recall": sum(1 for key in conv.facts if key in text) / len(conv.facts),
        "unmarked": sum(1 for key in conv.unmarked if key in text) / max(1, len(conv.unmarked)),
        "code": code_status(conv, out),
        "orphans": sum(1 for p in probs if "tool call" in p or "tool result" in p),
        "fences": sum(1 for p in probs if "code fence" in p),
        "roles": sum(1 for p in probs if "in a row" in p or "not user" in p),
        "sys": [m for m in out if m["role"] == "system"] == sys_in,
        "first": str(first_out["content"]).startswith(str(first_in["content"])),
        "recent": recent_exact(inp, out, k),
    }


def run(seeds: int, tokens: int) -> dict[str, Any]:
    k = CompressionSettings().keep_recent_turns
    rows: dict[tuple[str, float], list[dict[str, Any]]] = {}
    times: dict[tuple[str, float], list[float]] = {}
    sizes = []
    compress([{"role": "user", "content": "warm up imports"}], 10)
    for seed in range(seeds):
        conv = generate(seed, tokens)
        t0 = time.perf_counter()
        counter = TokenCounter()
        before = counter.count_messages(conv.messages).tokens
        times.setdefault(("count only", 0.0), []).append((time.perf_counter() - t0) * 1000)
        sizes.append((len(conv.messages), before, len(conv.facts), len(conv.code_blocks)))
        for frac in BUDGETS:
            budget = int(before * frac)
            methods = {
                "agent_router": lambda m=conv.messages, b=budget, c=counter: compress(
                    m, b, counter=c).messages,
                "drop_oldest": lambda m=conv.messages, b=budget, c=counter: drop_oldest(m, b, c),
                "truncate_text": lambda m=conv.messages, b=budget, c=counter: truncate_text(m, b, c),
            }
            for name, fn in methods.items():
                t0 = time.perf_counter()
                out = fn()
                warm = (time.perf_counter() - t0) * 1000
                times.setdefault((name, frac), []).append(warm)
                rows.setdefault((name, frac), []).append(measure(conv, out, budget, before, counter, k))
            # Cold: a fresh counter, so every token count is computed inside the call.
            t0 = time.perf_counter()
            compress(conv.messages, budget, counter=TokenCounter())
            times.setdefault(("agent_router cold", frac), []).append((time.perf_counter() - t0) * 1000)
    return {"rows": rows, "times": times, "sizes": sizes}


def summarize(res: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    for (name, frac), rs in res["rows"].items():  # noqa: B007
        code = {key: sum(r["code"][key] for r in rs) for key in CODE_KEYS}
        table.append({
            "method": name, "budget": frac, "runs": len(rs),
            "reduction": statistics.mean(r["reduction"] for r in rs),
            "fits": statistics.mean(r["fits"] for r in rs),
            "recall": statistics.mean(r["recall"] for r in rs),
            "min_recall": min(r["recall"] for r in rs),
            "unmarked": statistics.mean(r["unmarked"] for r in rs),
            "code": code,
            "orphans": sum(r["orphans"] for r in rs),
            "fences": sum(r["fences"] for r in rs),
            "roles": sum(r["roles"] for r in rs),
            "sys": statistics.mean(r["sys"] for r in rs),
            "first": statistics.mean(r["first"] for r in rs),
            "recent": statistics.mean(r["recent"] for r in rs),
            "ms": statistics.median(res["times"][(name, frac)]),
            "ms_cold": statistics.median(res["times"][("agent_router cold", frac)]) if name == "agent_router"
            else None,
        })
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=100_000, help="Approximate size of each conversation.")
    ap.add_argument("--json", action="store_true", help="Print the table as JSON.")
    a = ap.parse_args()
    res = run(a.seeds, a.tokens)
    table = summarize(res)
    goals = check_goals(table, res)
    if a.json:
        print(json.dumps({"conversations": res["sizes"], "table": table, "goals": goals}, indent=2))
        return
    for n, (msgs_n, toks, facts, blocks) in enumerate(res["sizes"]):
        print(f"seed {n}: {msgs_n} messages, {toks:,} tokens, {facts} planted facts, {blocks} code blocks")
    print()
    print(f"{'method':14} {'budget':>6} {'reduct':>7} {'fits':>5} {'recall':>7} {'(min)':>6} "
          f"{'code whole/marker/summ/cut/unacc':>32} {'orph':>5} {'fence':>5} {'roles':>5} {'sys':>4} "
          f"{'1st':>4} "
          f"{'recent':>6} {'ms':>7} {'ms cold':>8} {'unmarked':>8}")
    for r in sorted(table, key=lambda r: (-r["budget"], r["method"])):
        c = r["code"]
        cold = f"{r['ms_cold']:8.1f}" if r["ms_cold"] is not None else f"{'':>8}"
        code = f"{c['whole']}/{c['marker']}/{c['summarized']}/{c['cut']}/{c['unaccounted']}"
        print(f"{r['method']:14} {r['budget']:>6.0%} {r['reduction']:>7.1%} {r['fits']:>5.0%} "
              f"{r['recall']:>7.3f} {r['min_recall']:>6.2f} {code:>32} "
              f"{r['orphans']:>5} {r['fences']:>5} {r['roles']:>5} {r['sys']:>4.0%} {r['first']:>4.0%} "
              f"{r['recent']:>6.0%} {r['ms']:>7.1f} {cold} {r['unmarked']:>8.3f}")
    count_ms = statistics.median(res["times"][("count only", 0.0)])
    print(f"\ncounting the input's tokens once (cold, same run): {count_ms:.1f} ms median")
    print("goals at 25% budget:")
    for name, (ok, got) in goals.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {got}")


def check_goals(table: list[dict[str, Any]], res: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    r = next(r for r in table if r["method"] == "agent_router" and r["budget"] == 0.25)
    worst_ms = max(res["times"][("agent_router", 0.25)])
    worst_cold = max(res["times"][("agent_router cold", 0.25)])
    return {
        "planted-fact recall >= 0.95": (r["min_recall"] >= 0.95,
                                        f"mean {r['recall']:.3f}, min {r['min_recall']:.3f}"),
        "zero orphan tool ids": (r["orphans"] == 0, str(r["orphans"])),
        "zero broken fences (and no block cut)": (r["fences"] == 0 and r["code"]["cut"] == 0,
                                                  f"{r['fences']} fences, {r['code']['cut']} cut"),
        "system prompt and newest turns exact": (r["sys"] == 1 and r["recent"] == 1,
                                                 f"sys {r['sys']:.0%}, recent {r['recent']:.0%}"),
        "~100k tokens in < 200 ms (deterministic, counts cached)": (
            worst_ms < 200, f"median {r['ms']:.1f} ms, worst {worst_ms:.1f} ms; cold counter: median "
            f"{r['ms_cold']:.1f} ms, worst {worst_cold:.1f} ms"),
    }


if __name__ == "__main__":
    main()
