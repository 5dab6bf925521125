"""A small reference agent loop that fires the same host-loop hooks a real host does.

For hosts without a loop of their own, and for tests. The agent talks in Agent Zero's protocol: each model
reply is a JSON object `{"tool_name": ..., "tool_args": {...}}`; the `response` tool ends the turn, the
`switch_model` tool goes through agent_router.runtime.switch, other tools are Python callables given to the agent.
A tool that raises does not end the turn: the agent reads "Tool X failed: ..." and the `tool_execute_after`
hook sees a response with its `error` set (an implicit bad verdict on the answer that called it).
A tool output longer than `summarize_over` tokens is summarized by a utility-model call (so utility calls
are routed and recorded like the host's summaries).

    rt = Runtime(settings, ReferenceAdapter())
    agent = ReferenceAgent(rt, complete)        # complete(model, messages) -> Completion
    agent.run_turn("What is 2+2?")
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..builtins.host_loop import record_failure
from ..catalog import ModelInfo
from ..errors import AgentRouterError
from ..usage import Usage
from . import core as rtmod
from .switch import SwitchResult, switch_model

SYSTEM_PROMPT = """You are an agent. Reply with one JSON object {"tool_name": ..., "tool_args": {...}}.
Tools: response(text) ends your turn; switch_model(tier|model|auto, reason, scope) changes your model within
policy; other tools as listed."""


@dataclass
class Completion:
    """A model's answer: its text and the usage the provider reported (a `Usage`, or an OpenAI/Anthropic/
    Gemini usage payload), None when it reported none (the hooks then count tokens themselves)."""

    text: str
    usage: Usage | dict[str, Any] | None = None
    answered_by: str | None = None  # the alias that answered when a fallback did (priced and recorded as it)
    finish_reason: str | None = None  # "stop", "length" (cut at the token limit), "tool_calls", ...


class Complete(Protocol):
    def __call__(self, model: ModelInfo, messages: list[dict[str, Any]]) -> Completion: ...


@dataclass
class LoopData:
    """One iteration's data, as Agent Zero's LoopData: the prompt is built before prompts_after."""

    iteration: int
    user_message: str
    system: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    last_response: str = ""


@dataclass
class TurnResult:
    reply: str
    decisions: list[dict[str, Any]]  # the decision of each model call of the turn (Decision.to_dict())
    tools: list[tuple[str, dict[str, Any], str]]  # (tool, args, result message)
    iterations: int
    events: list[tuple[str, Any]] = field(
        default_factory=list
    )  # ("call", decision) | ("tool", (name, args, result)), in order


@dataclass
class ToolResponse:
    """What `tool_execute_after` receives from this loop: the tool's message, and the error when it failed."""

    message: str
    error: str | None = None


class ReferenceAdapter:
    """The adapter for ReferenceAgent: host objects are our own, so this is direct."""

    name = "reference"

    def conversation_id(self, agent: ReferenceAgent) -> str:
        return agent.conversation_id

    def messages(self, agent: ReferenceAgent, loop_data: LoopData) -> list[dict[str, Any]]:
        # Tool results are context, not the request: as role "tool" the analyzer keeps routing on the user's.
        return [{"role": "tool", "content": m["content"]} if m.get("tool") else m for m in agent.messages]

    def prompt_messages(self, agent: ReferenceAgent, loop_data: LoopData) -> list[dict[str, Any]]:
        return [{"role": "system", "content": "\n\n".join(loop_data.system)}, *loop_data.history]

    def set_prompt_messages(
        self, agent: ReferenceAgent, loop_data: LoopData, messages: list[dict[str, Any]]
    ) -> None:
        if messages and messages[0].get("role") == "system":
            loop_data.system = [str(messages[0]["content"])]
            messages = messages[1:]
        loop_data.history = list(messages)

    def call_messages(self, call_data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        if kind == "utility":
            return [
                {"role": "system", "content": call_data["system"]},
                {"role": "user", "content": call_data["message"]},
            ]
        return list(call_data["messages"])

    def is_main_call(self, agent: ReferenceAgent, call_data: dict[str, Any]) -> bool:
        return True  # the reference loop makes chat calls only for its iterations

    def set_model(
        self, agent: ReferenceAgent, call_data: dict[str, Any], model: ModelInfo, kind: str
    ) -> None:
        call_data["model"] = model

    def response_text(self, response: Completion, reasoning: Any = None) -> str:
        return response.text + (str(reasoning) if reasoning else "")

    def provider_usage(self, call_data: dict[str, Any], response: Completion) -> Any | None:
        return response.usage

    def call_utility_model(self, agent: ReferenceAgent, system: str, message: str) -> str:
        return agent.call_utility_model(system, message)


# The routed call's fallback chain while ReferenceAgent makes it (None: the call was not routed).
_FALLBACKS: ContextVar[list[str] | None] = ContextVar("agent_router_fallbacks", default=None)


def provider_complete(client: Any) -> Complete:
    """A `Complete` over agent_router.providers.ProviderClient (real HTTP, provider-reported usage). A routed
    call fails over only along its decision's chain, which keeps to the ceiling and budget of the first choice."""

    def complete(model: ModelInfo, messages: list[dict[str, Any]]) -> Completion:
        c = client.complete(model.alias, messages, fallbacks=_FALLBACKS.get())
        by = c.alias if c.alias != model.alias else None
        u = c.usage
        if u.source != "provider":  # the server reported none: leave counting (and its flag) to the hooks
            return Completion(c.text, None, by, c.finish_reason)
        return Completion(c.text, u, by, c.finish_reason)

    return complete


def _complete_routed(agent: ReferenceAgent, call_data: dict[str, Any], messages: list[dict[str, Any]]) -> Any:
    rec = agent.rt.pending_call(call_data)
    token = _FALLBACKS.set(list(rec.decision.fallbacks) if rec is not None and rec.decision is not None else None)
    try:
        return agent.complete(call_data["model"], messages)
    finally:
        _FALLBACKS.reset(token)


def parse_tool(text: str) -> tuple[str, dict[str, Any]] | None:
    """The first JSON object in `text` with a tool_name, as (name, args); None when there is none."""
    start = text.find("{")
    dec = json.JSONDecoder()
    while start != -1:
        try:
            obj, _ = dec.raw_decode(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("tool_name"), str):
            args = obj.get("tool_args", {})
            return obj["tool_name"], args if isinstance(args, dict) else {}
        start = text.find("{", start + 1)
    return None


class ReferenceAgent:
    """An agent loop: user turn -> iterations of (route, prompt, model call, tool) until `response`."""

    def __init__(
        self,
        rt: rtmod.Runtime,
        complete: Complete,
        tools: dict[str, Callable[..., str]] | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        conversation_id: str | None = None,
        max_iterations: int = 6,
        summarize_over: int = 1500,
    ):
        self.rt = rt
        self.complete = complete
        self.tools = dict(tools or {})
        self.system_prompt = system_prompt
        self.conversation_id = conversation_id or f"ref-{uuid.uuid4().hex[:12]}"
        self.max_iterations = max_iterations
        self.summarize_over = summarize_over
        self.messages: list[dict[str, Any]] = []
        self.turn_decisions: list[dict[str, Any]] = []
        self.turn_events: list[tuple[str, Any]] = []

    @property
    def hook(self) -> Any:
        return self.rt.pm.hook

    # -- model calls, each wrapped in its hooks ----------------------------------------------------------
    def _default_model(self, tier: str) -> ModelInfo:
        return self.rt.catalog.tier_models(tier)[0]

    def call_chat_model(self, messages: list[dict[str, Any]]) -> str:
        """One model call for the iteration. When its answer fails the escalation checks (settings.escalation),
        the same call is re-asked one tier up before the agent acts on it; both are recorded, linked."""
        text = self._chat_call(messages)
        if self.rt.state(self.conversation_id).escalation is not None:  # set by chat_model_call_after
            text = self._chat_call(messages)
        return text

    def _chat_call(self, messages: list[dict[str, Any]]) -> str:
        call_data: dict[str, Any] = {"model": self._default_model("chat"), "messages": messages}
        self.hook.chat_model_call_before(agent=self, call_data=call_data)
        rec = self.rt.pending_call(call_data)
        if rec is not None and rec.decision is not None:
            entry = rec.decision.to_dict()
            if rec.escalated_from is not None:
                entry["escalated_from"] = rec.escalated_from
            self.turn_decisions.append(entry)
            self.turn_events.append(("call", self.turn_decisions[-1]))
        try:
            result = _complete_routed(self, call_data, call_data["messages"])
        except Exception as e:
            record_failure(self, call_data, e)
            raise
        self.hook.chat_model_call_after(agent=self, call_data=call_data, response=result)
        return result.text

    def call_utility_model(self, system: str, message: str) -> str:
        call_data: dict[str, Any] = {
            "model": self._default_model("utility"),
            "system": system,
            "message": message,
        }
        self.hook.util_model_call_before(agent=self, call_data=call_data)
        rec = self.rt.pending_call(call_data)
        if rec is not None and rec.decision is not None:
            self.turn_decisions.append({**rec.decision.to_dict(), "kind": "utility"})
            self.turn_events.append(("call", self.turn_decisions[-1]))
        try:
            result = _complete_routed(self, call_data, self.rt.adapter.call_messages(call_data, "utility"))
        except Exception as e:
            record_failure(self, call_data, e)
            raise
        self.hook.util_model_call_after(agent=self, call_data=call_data, response=result)
        return result.text

    # -- the loop ----------------------------------------------------------------------------------------
    def run_turn(self, user_text: str) -> TurnResult:
        """One user turn. While it runs, compression's summaries go through this agent's utility calls (so
        they are routed, capped at routing.utility_max_tier and recorded like any utility call)."""
        previous = self.rt.utility_caller
        self.rt.utility_caller = (
            lambda system, message, timeout_s: self.rt.adapter.call_utility_model(self, system, message)
        )
        try:
            return self._run_turn(user_text)
        finally:
            self.rt.utility_caller = previous

    def _run_turn(self, user_text: str) -> TurnResult:
        self.messages.append({"role": "user", "content": user_text})
        self.turn_decisions, self.turn_events = [], []
        used: list[tuple[str, dict[str, Any], str]] = []
        for i in range(self.max_iterations):
            ld = LoopData(iteration=i, user_message=user_text)
            self.hook.message_loop_start(agent=self, loop_data=ld)
            ld.system = [self.system_prompt]
            ld.history = list(self.messages)
            self.hook.message_loop_prompts_after(agent=self, loop_data=ld)
            prompt = [
                {"role": "system", "content": "\n\n".join(ld.system)},
                *({"role": m["role"], "content": m["content"]} for m in ld.history),
            ]
            text = self.call_chat_model(prompt)
            ld.last_response = text
            self.messages.append({"role": "assistant", "content": text})
            tool = parse_tool(text)
            if tool is None:  # plain text: taken as the answer
                return TurnResult(text, self.turn_decisions, used, i + 1, self.turn_events)
            name, args = tool
            if name == "response":
                return TurnResult(
                    str(args.get("text", "")), self.turn_decisions, used, i + 1, self.turn_events
                )
            result = self.run_tool(name, args)
            used.append((name, args, result))
            self.turn_events.append(("tool", used[-1]))
            self.messages.append({"role": "user", "content": f"[tool {name}] {result}", "tool": name})
        raise AgentRouterError(f"turn did not finish within {self.max_iterations} iterations")

    def run_tool(self, name: str, args: dict[str, Any]) -> str:
        res = self._execute_tool(name, args)
        self.hook.tool_execute_after(agent=self, tool_name=name, response=res)
        return res.message

    def _execute_tool(self, name: str, args: dict[str, Any]) -> ToolResponse:
        if not args:
            msg = f"Tool {name} needs arguments (tool_args was empty)."
            return ToolResponse(msg, msg)
        if name == "switch_model":
            res: SwitchResult = switch_model(self.rt, self.conversation_id, args)
            return ToolResponse(res.message)
        fn = self.tools.get(name)
        if fn is None:
            known = ", ".join(["response", "switch_model", *sorted(self.tools)])
            msg = f"Tool {name!r} does not exist; tools: {known}."
            return ToolResponse(msg, msg)
        try:
            out = fn(**args)
        except Exception as e:  # the agent sees the failure and may correct itself, as in a real host
            err = f"{type(e).__name__}: {e}"
            return ToolResponse(f"Tool {name} failed: {err}", err)
        m = self._default_model("utility")
        if self.rt.counter.count_text(out, m.provider, m.name).tokens > self.summarize_over:
            out = "summary: " + self.call_utility_model(
                "Summarize this tool output for the agent; keep errors, paths and numbers.", out
            )
        return ToolResponse(out)
