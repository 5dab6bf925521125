"""Seeded long agent conversations with planted facts, code blocks, tool-call pairs and big tool outputs.

Every planted fact carries a unique key (e.g. ``db-qz7k``) so recall is measured by exact presence of the
key in the compressed messages. Facts are written the way people write them: "remember: ...", "constraint:
never ...", a file path, a number with its unit, a ticket id or a commit hash.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

WORDS = (
    "the service request handler cache queue worker retry config build deploy test module function client "
    "server database index query latency error log metric user session token page report job schedule file "
    "value parser output input stream buffer limit window batch pipeline record table column schema field "
    "check fix update review change branch merge release version feature flag option default path route"
).split()
LANGS = ("python", "javascript", "go", "sql", "bash")
TOOLS = ("read_file", "run_tests", "search_code", "http_get", "list_dir", "query_db")


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    facts: list[str]  # unique keys that must survive
    code_blocks: list[str] = field(default_factory=list)  # every fenced block, exactly as written
    unmarked: list[str] = field(default_factory=list)  # keys of plain statements no pattern matches


def _key(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _sentence(rng: random.Random, n: int | None = None) -> str:
    words = [rng.choice(WORDS) for _ in range(n or rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def _prose(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _fact(rng: random.Random) -> tuple[str, str]:
    """(line, key)."""
    k = _key(rng)
    kind = rng.randrange(6)
    if kind == 0:
        key = f"db-{k}"
        return f"remember: the staging database host is {key}.internal", key
    if kind == 1:
        key = f"svc-{k}"
        return f"constraint: never deploy {key} on a Friday without a rollback plan", key
    if kind == 2:
        n = rng.randint(101, 9899)
        key = f"{n} ms"
        return f"The cache TTL for the {rng.choice(WORDS)} {k} endpoint has to stay at {key}", key
    if kind == 3:
        key = f"services/{k}/config.yaml"
        return f"The settings for the billing job live in {key}", key
    if kind == 4:
        key = f"OPS-{rng.randint(1000, 99999)}"
        return f"This regression is tracked as {key} in the tracker", key
    key = "".join(rng.choice("0123456789abcdef") for _ in range(12))
    key = key[:5] + "a1" + key[7:]  # both a digit and a letter, as a real short hash
    return f"Commit {key} is the last build that passed", key


def _plain_fact(rng: random.Random) -> tuple[str, str]:
    """A statement that matters but that no default pattern marks (letters g-z only: not a hash either)."""
    key = "".join(rng.choice("ghjkmnpqrstvwxyz") for _ in range(8))
    return f"The team calls the old importer {key} and wants that name kept", key


def _code(rng: random.Random, lines: int) -> tuple[str, str]:
    lang = rng.choice(LANGS)
    name = f"{rng.choice(WORDS)}_{_key(rng, 4)}"
    body = [f"def {name}(x, y):" if lang == "python" else f"function {name}(x, y) {{"]
    for i in range(lines):
        body.append(f"    v{i} = x * {rng.randint(1, 99)} + y  # {rng.choice(WORDS)} {rng.choice(WORDS)}")
    body.append("    return v0" if lang == "python" else "}")
    block = f"```{lang}\n" + "\n".join(body) + "\n```"
    return block, name


def _tool_output(rng: random.Random, tool: str, lines: int, fact: str | None) -> str:
    if tool in ("http_get", "query_db"):
        rows = [{"id": i, "name": f"{rng.choice(WORDS)}-{_key(rng, 3)}", "value": rng.randint(0, 10**6),
                 "status": rng.choice(("ok", "failed", "pending"))} for i in range(lines // 2)]
        doc: dict[str, Any] = {"count": len(rows), "rows": rows}
        if fact:
            doc["note"] = fact
        return json.dumps(doc, indent=1)
    out = [f"{i:4d}: {_sentence(rng, rng.randint(4, 12))}" for i in range(lines)]
    if fact:
        out.insert(rng.randrange(len(out) + 1), fact)
    return "\n".join(out)


def _extend(messages: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Append, keeping user and assistant turns alternating as real transcripts do."""
    last = messages[-1]["role"]
    first = new[0]["role"]
    if first == "user" and last == "user":
        messages.append({"role": "assistant", "content": "Done."})
    elif first == "assistant" and last in ("assistant",):
        messages.append({"role": "user", "content": "continue"})
    messages += new


def generate(seed: int, target_tokens: int = 100_000, facts: int = 40) -> Conversation:
    """A conversation of roughly `target_tokens` (cl100k) tokens, hundreds of messages."""
    rng = random.Random(seed)
    system = "You are a careful software agent.\n\n" + "\n\n".join(
        f"## Rule {i}\n{_prose(rng, 4)}" for i in range(25)
    )
    planted: list[str] = []
    unmarked: list[str] = []
    code_blocks: list[str] = []
    first_fact, k0 = _fact(rng)
    planted.append(k0)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Please fix the failing nightly build. {first_fact}."},
    ]
    # Roughly 4 characters a token; stop when the text is about the target size.
    budget_chars = target_tokens * 4
    size = sum(len(m["content"]) for m in messages)
    # About 2,400 characters a step: spread the facts over the whole conversation.
    fact_p = min(1.0, facts / max(1, budget_chars // 2400))
    call_n = 0
    while size < budget_chars:
        fact = None
        if len(planted) < facts and rng.random() < fact_p:
            fact, key = _fact(rng)
            planted.append(key)
        elif len(unmarked) < facts // 4 and rng.random() < fact_p / 4:
            fact, key = _plain_fact(rng)
            unmarked.append(key)
        kind = rng.random()
        new: list[dict[str, Any]] = []
        if kind < 0.25:
            text = _prose(rng, rng.randint(1, 4))
            if fact:
                text += f"\n{fact}."
                fact = None
            new.append({"role": "user", "content": text})
            answer = _prose(rng, rng.randint(2, 6))
            if rng.random() < 0.5:
                block, _ = _code(rng, rng.randint(6, 40))
                code_blocks.append(block)
                answer += "\n\n" + block + "\n\n" + _sentence(rng)
            new.append({"role": "assistant", "content": answer})
        elif kind < 0.9:
            # An agent step: one or two tool calls, each with its result, then a short note.
            calls, results = [], []
            for _ in range(rng.choice((1, 1, 2))):
                call_n += 1
                tool = rng.choice(TOOLS)
                cid = f"call_{seed}_{call_n}"
                args = json.dumps({"path": f"src/{rng.choice(WORDS)}_{_key(rng, 3)}.py"})
                calls.append({"id": cid, "type": "function", "function": {"name": tool, "arguments": args}})
                big = rng.random() < 0.2
                out = _tool_output(rng, tool, rng.randint(60, 250) if big else rng.randint(3, 20), fact)
                fact = None
                results.append({"role": "tool", "tool_call_id": cid, "name": tool, "content": out})
            new.append({"role": "assistant", "content": _sentence(rng), "tool_calls": calls})
            new += results
            note = _prose(rng, rng.randint(1, 3))
            if rng.random() < 0.2:
                block, _ = _code(rng, rng.randint(5, 25))
                code_blocks.append(block)
                note += "\n\n" + block
            new.append({"role": "assistant", "content": note})
            new.append({"role": "user", "content": rng.choice(("ok, continue", "go on", "next step please",
                                                                "looks good, keep going"))})
        else:
            # A pasted file (unfenced) from the user.
            paste = "\n".join(f"{_sentence(rng, rng.randint(5, 14))}" for _ in range(rng.randint(40, 100)))
            new.append({"role": "user", "content": f"Here is the log I mentioned:\n{paste}"})
            new.append({"role": "assistant", "content": _prose(rng, rng.randint(1, 3))})
        if fact:  # the step had no place for it: the assistant says it
            new.append({"role": "user", "content": f"Also: {fact}."})
            new.append({"role": "assistant", "content": "Noted."})
        for m in new:
            size += len(m.get("content") or "") + sum(len(json.dumps(tc)) for tc in m.get("tool_calls") or [])
        _extend(messages, new)
    _extend(messages, [{"role": "user", "content": "Now summarize what is left to do, in order."}])
    return Conversation(messages, planted, code_blocks, unmarked)
