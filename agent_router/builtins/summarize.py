"""The built-in `summarize` implementation: ask the utility tier, through the caller the host gave.

It runs last, so a plugin's own summarizer wins. It asks the caller given to the running `compress` call
(`compress(..., utility_caller=fn)`; a Runtime passes its `utility_caller`). Without one it returns None and
compression uses its deterministic digest; the caller gets the remaining timeout so it can abort its request,
and `compression` abandons it when the time is up anyway.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from .. import messages as msgs
from ..hookspecs import hookimpl

# Per message in the transcript sent to the summarizer; the rest is marked as cut (it is the summarizer's
# input, not the agent's prompt, so a cut here loses nothing the agent sees).
_MESSAGE_CHARS = 6000


@lru_cache(maxsize=1)
def prompt_template() -> str:
    return resources.files("agent_router").joinpath("prompts/summarize.md").read_text(encoding="utf-8")


def transcript(messages: list[dict[str, Any]]) -> str:
    """The span as plain text: one block per message, long contents shortened with a note."""
    out = []
    for m in messages:
        role = m.get("role", "?")
        text = msgs.text_of(m)
        if len(text) > _MESSAGE_CHARS:
            text = text[:_MESSAGE_CHARS] + f"\n[... {len(text) - _MESSAGE_CHARS:,} more characters not shown]"
        head = f"## {role}"
        if role == "tool":
            head += f" (result of {m.get('name') or 'tool'}, id {m.get('tool_call_id', '?')})"
        calls = m.get("tool_calls") or []
        if calls:
            shown = [f"{(tc.get('function') or {}).get('name', '?')}"
                     f"({str((tc.get('function') or {}).get('arguments', ''))[:300]})" for tc in calls]
            text += ("\n" if text else "") + "calls: " + json.dumps(shown)
        out.append(f"{head}\n{text}")
    return "\n\n".join(out)


@hookimpl(trylast=True)
def summarize(messages: list[dict[str, Any]], budget: int) -> str | None:
    from ..compression import compressor as compression

    fn = compression.get_utility_caller()
    if fn is None:
        return None
    system = prompt_template().replace("{budget}", str(int(budget)))
    reply = fn(system, transcript(messages), compression.summarize_timeout())
    if not isinstance(reply, str) or not reply.strip():
        return None
    return reply.strip()
