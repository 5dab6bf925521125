"""OpenAI chat messages -> the system text and alternating user/assistant turns that Anthropic's and Gemini's
wire formats want: consecutive messages of one role merge into one turn, tool results become user turns. Each
wire format supplies how content, a tool call and a tool result look in it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..messages import content_text

Item = dict[str, Any]


def convert(
    messages: list[dict[str, Any]],
    *,
    field: str,
    assistant: str,
    items: Callable[[Any], list[Item]],
    tool_call: Callable[[dict[str, Any]], Item],
    tool_result: Callable[[dict[str, Any]], Item],
) -> tuple[str, list[dict[str, Any]]]:
    """(system text, turns `{"role": "user" | assistant, field: [items]}`); `tool_call` sees each of an
    assistant message's tool calls in order before `tool_result` sees the results."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def push(role: str, its: list[Item]) -> None:
        if not its:
            return
        if out and out[-1]["role"] == role:  # these APIs want user/assistant turns to alternate
            out[-1][field].extend(its)
        else:
            out.append({"role": role, field: its})

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(content_text(m.get("content")))
        elif role == "user":
            push("user", items(m.get("content")))
        elif role == "assistant":
            its = items(m.get("content"))
            its.extend(tool_call(tc) for tc in m.get("tool_calls") or [])
            push(assistant, its)
        elif role in ("tool", "function"):
            push("user", [tool_result(m)])
    return "\n\n".join(s for s in system if s), out
