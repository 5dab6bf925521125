"""Conversations for tests/test_compression.py: small, seeded, with the things compression must respect."""

from __future__ import annotations

import json
import random
from typing import Any

SYSTEM = (
    "You are a coding agent.\n\nFollow the repository's conventions.   \n\n\n\nAsk before deleting files."
)
FIRST = "Please make the nightly build green again."
FACTS = [
    "remember: the staging database host is db-qz7k.internal",
    "constraint: never deploy svc-pay on a Friday",
    "The billing settings live in services/billing/config.yaml",
    "The cache TTL has to stay at 450 ms",
    "This is tracked as OPS-4821",
    "Commit 3fa9c1e2b7 is the last green build",
]
FACT_KEYS = [
    "db-qz7k.internal", "svc-pay", "services/billing/config.yaml", "450 ms", "OPS-4821", "3fa9c1e2b7",
]


VOCAB = "alpha beta gamma delta build queue worker retry cache parser output table index".split()


def filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCAB, k=words)) + "."  # one call: the random conversations make ~1M words


def code_block(n: int, lines: int = 30) -> str:
    body = "\n".join(f"    total += {k} * x  # step {k}" for k in range(lines))
    return f"```python\ndef helper_{n}(x):\n    total = 0\n{body}\n    return total\n```"


def conversation(rounds: int = 30, seed: int = 0, facts: bool = True) -> list[dict[str, Any]]:
    """system, first user, a short reply, then `rounds` rounds of: user ask, assistant tool call + big
    result, assistant note (every third with a code block), with the FACTS spread over the older rounds."""
    rng = random.Random(seed)
    msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST},
                                  {"role": "assistant", "content": "On it."}]
    for r in range(rounds):
        ask = f"Round {r}: {filler(rng, 12)}"
        if facts and r < len(FACTS) * 2 and r % 2 == 0:
            ask += "\n" + FACTS[r // 2] + "."
        msgs.append({"role": "user", "content": ask})
        cid = f"call_{seed}_{r}"
        args = json.dumps({"path": f"src/mod_{r}.py"})
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": "read_file", "arguments": args}}]})
        output = "\n".join(f"{k:4d}: {filler(rng, 10)}" for k in range(120))
        msgs.append({"role": "tool", "tool_call_id": cid, "name": "read_file", "content": output})
        note = f"Looked at mod_{r}. {filler(rng, 20)}"
        if r % 3 == 0:
            note += "\n\n" + code_block(r) + "\n\nThat should do it."
        msgs.append({"role": "assistant", "content": note})
    msgs.append({"role": "user", "content": "What is left to do?"})
    return msgs


def random_conversation(rng: random.Random) -> list[dict[str, Any]]:
    """A valid conversation of random shape: chat, tool exchanges with several results, code, JSON, images."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "sys " + filler(rng, rng.randint(5, 200))},
                                  {"role": "user", "content": "first " + filler(rng, rng.randint(3, 50))}]
    n_calls = 0
    for _ in range(rng.randint(0, 40)):
        last = msgs[-1]["role"]
        kind = rng.random()
        if last in ("user",) or (last == "tool" and kind < 0.5):
            if kind < 0.4:
                ids = []
                for _ in range(rng.randint(1, 3)):
                    n_calls += 1
                    ids.append(f"c{n_calls}")
                calls = [{"id": i, "type": "function", "function": {"name": "tool", "arguments": "{}"}}
                         for i in ids]
                msgs.append({"role": "assistant", "content": rng.choice([None, filler(rng, 5)]),
                             "tool_calls": calls})
                for i in ids:
                    body = rng.choice([
                        "\n".join(filler(rng, 8) for _ in range(rng.randint(1, 100))),
                        json.dumps({"rows": list(range(rng.randint(1, 150)))}),
                    ])
                    msgs.append({"role": "tool", "tool_call_id": i, "content": body})
            else:
                text = filler(rng, rng.randint(3, 80))
                if rng.random() < 0.4:
                    text += "\n\n" + code_block(rng.randint(0, 999), rng.randint(1, 80)) + "\n"
                if rng.random() < 0.2:
                    text += "\nremember: keep the value at " + str(rng.randint(1, 999)) + " ms"
                msgs.append({"role": "assistant", "content": text})
        else:
            if rng.random() < 0.15:
                content: Any = [{"type": "text", "text": filler(rng, 10)},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
            else:
                content = filler(rng, rng.randint(2, 120))
            msgs.append({"role": "user", "content": content})
    return msgs
