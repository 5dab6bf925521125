"""The Agent Zero adapter: its extension files call `forward(point, extension)`; this maps its objects.

Agent Zero v1.x (plugin folder `usr/plugins/agent_router/`) has every point we need:
`chat_model_call_before` lets us replace `call_data["model"]`, `*_call_after` gives the response.
Legacy v0.9.x has no chat-call points:
there the chat call is synthesized from `before_main_llm_call` (prompt known; the model is swapped by giving
the agent a *copy* of its config with another chat model, never editing the shared one) and
`message_loop_end` (the reply is `loop_data.last_response`). Its utility calls are swapped in
`util_model_call_before`; legacy has no `util_model_call_after`, so those calls are not recorded there.

Agent Zero reports no token usage (its chat stream is closed early), so usage is counted from the messages
and the reply and flagged `counted` / `estimated`. A model's `host_kwargs` reach Agent Zero's model
constructor (LiteLLM kwargs, e.g. `mock_response`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from ..catalog import ModelInfo
from ..errors import AgentRouterError
from ..runtime import core as rtmod
from ..settings import load

MANIFEST = "agent_router_manifest.json"
_LEGACY_CALL = "_agent_router_legacy_call"
_MAIN_CALL = "_agent_router_main_call"
# Our provider names -> Agent Zero provider ids (conf/model_providers.yaml); others pass through unchanged.
_PROVIDERS = {
    "gemini": "google",
    "openai_compatible": "other",
    "lmstudio": "lm_studio",
    "vllm": "other",
    "together": "other",
}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _text(content: Any) -> str | list[Any]:
    """Agent Zero message content (str, dict, list of parts) as OpenAI content."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if isinstance(content.get("user_message"), str):
            return content["user_message"]
        return json.dumps(content, ensure_ascii=False, default=str)
    if isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content):
        return content
    return json.dumps(content, ensure_ascii=False, default=str)


def _is_tool_result(content: Any) -> bool:
    return isinstance(content, dict) and "tool_name" in content and "tool_result" in content


def is_legacy(agent: Any) -> bool:
    """v0.9.x agents call extensions through their own method; v1.x through helpers.extension."""
    return callable(getattr(agent, "call_extensions", None))


class AgentZeroAdapter:
    name = "agent-zero"

    def conversation_id(self, agent: Any) -> str:
        return str(agent.context.id)

    def messages(self, agent: Any, loop_data: Any) -> list[dict[str, Any]]:
        out = []
        for m in agent.history.output():
            c = m["content"]
            role = "tool" if _is_tool_result(c) else ("assistant" if m["ai"] else "user")
            out.append({"role": role, "content": _text(c)})
        return out

    def prompt_messages(self, agent: Any, loop_data: Any) -> list[dict[str, Any]]:
        system = {"role": "system", "content": "\n\n".join(str(s) for s in loop_data.system)}
        hist = [
            {"role": "assistant" if m["ai"] else "user", "content": _text(m["content"])}
            for m in loop_data.history_output
        ]
        return [system, *hist]

    def set_prompt_messages(self, agent: Any, loop_data: Any, messages: list[dict[str, Any]]) -> None:
        # OutputMessage is a TypedDict {ai, content}. The system prompt is replaced only if it was changed.
        if messages and messages[0]["role"] == "system":
            if messages[0]["content"] != "\n\n".join(str(s) for s in loop_data.system):
                loop_data.system = [messages[0]["content"]]
        loop_data.history_output = [
            {"ai": m["role"] == "assistant", "content": m["content"]}
            for m in messages
            if m["role"] != "system"
        ]

    def call_messages(self, call_data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        if kind == "utility":
            return [
                {"role": "system", "content": str(call_data.get("system") or "")},
                {"role": "user", "content": str(call_data.get("message") or "")},
            ]
        out = []
        for m in call_data["messages"]:
            if isinstance(m, dict):  # legacy synthesized call: already OpenAI shape
                out.append(m)
            else:  # LangChain BaseMessage
                out.append({"role": _ROLES.get(getattr(m, "type", ""), "user"), "content": _text(m.content)})
        return out

    def is_main_call(self, agent: Any, call_data: dict[str, Any]) -> bool:
        # v1.x: before_main_llm_call marks the iteration's call (call_chat_model is also used by tools such
        # as document_query); v0.9.x: only the iteration's call is synthesized.
        return bool(call_data.get("legacy")) or bool(agent.data.pop(_MAIN_CALL, False))

    def set_model(self, agent: Any, call_data: dict[str, Any], model: ModelInfo, kind: str) -> None:
        provider = _PROVIDERS.get(model.provider, model.provider)
        kwargs = dict(model.config.host_kwargs)
        for env in model.config.key_envs():
            if os.environ.get(env):
                kwargs.setdefault("api_key", os.environ[env])
                break
        api_base = model.config.base_url or ""
        if kind == "chat" and call_data.get("legacy"):
            # v0.9: the chat model comes from agent.config; give this agent a copy with another chat model.
            cfg = agent.config
            chat = dataclasses.replace(
                cfg.chat_model,
                provider=provider,
                name=model.name,
                api_base=api_base,
                ctx_length=model.context_window,
                vision=model.capabilities.vision,
                kwargs=kwargs,
            )
            agent.config = dataclasses.replace(cfg, chat_model=chat)
            call_data["model"] = f"{provider}/{model.name}"
            return
        import models  # Agent Zero's own module, importable inside Agent Zero only

        fields = {f.name for f in dataclasses.fields(models.ModelConfig)}
        conf: dict[str, Any] = {
            "type": models.ModelType.CHAT,
            "provider": provider,
            "name": model.name,
            "api_base": api_base,
            "ctx_length": model.context_window,
            "vision": model.capabilities.vision,
            "kwargs": kwargs,
        }
        mc = models.ModelConfig(**{k: v for k, v in conf.items() if k in fields})
        call_data["model"] = models.get_chat_model(provider, model.name, model_config=mc, **mc.build_kwargs())

    def response_text(self, response: Any, reasoning: Any = None) -> str:
        return str(response or "") + str(reasoning or "")

    def provider_usage(self, call_data: Any, response: Any) -> Any | None:
        return None  # Agent Zero returns text only; usage is counted

    def call_utility_model(self, agent: Any, system: str, message: str) -> Any:
        return agent.call_utility_model(system=system, message=message)


# -- activation ---------------------------------------------------------------------------------------------
_lock = threading.Lock()
_active_key: tuple[str, str, float | None] | None = None
log = logging.getLogger("agent_router.agent_zero")


def find_manifest(origin: str | os.PathLike[str]) -> Path | None:
    """The install manifest next to the calling extension file (up to four folders up)."""
    p = Path(origin).resolve().parent
    for _ in range(5):
        if (p / MANIFEST).is_file():
            return p / MANIFEST
        p = p.parent
    return None


def _mtime(path: str | None) -> float | None:
    from ..settings import resolve_path

    p = resolve_path(path)
    try:
        return p.stat().st_mtime if p is not None else None
    except OSError:
        return None


def ensure_runtime(origin: str | os.PathLike[str]) -> rtmod.Runtime:
    """Activate the runtime for this Agent Zero install (once per process and settings file).

    An edited settings file takes effect at the next hook, keeping each conversation's state (the agent's
    overrides); a settings file that no longer validates is reported once and the last good one stays."""
    global _active_key
    manifest = find_manifest(origin)
    settings_path = None
    if manifest is not None:
        settings_path = json.loads(manifest.read_text("utf-8")).get("settings")
    key = (str(manifest), str(settings_path), _mtime(settings_path))
    with _lock:
        rt = rtmod.current()
        same_install = _active_key is not None and _active_key[:2] == key[:2]
        if rt is not None and isinstance(rt.adapter, AgentZeroAdapter) and same_install and _active_key == key:
            return rt
        try:
            settings = load(settings_path)
        except AgentRouterError as e:
            if rt is not None and isinstance(rt.adapter, AgentZeroAdapter) and same_install:
                log.error("agent_router: settings not reloaded, keeping the last good ones: %s", e)
                _active_key = key
                return rt
            raise
        new = rtmod.Runtime(settings, AgentZeroAdapter())
        if rt is not None and isinstance(rt.adapter, AgentZeroAdapter) and same_install:
            new.adopt_states(rt)
        rtmod.activate(new)
        _active_key = key
        return new


def forward(point: str, ext: Any, origin: str, **kwargs: Any) -> Any:
    """Called by each Agent Zero extension file: `forward("<point>", self, __file__, **kwargs)`."""
    rt = ensure_runtime(origin)
    agent = ext.agent
    if agent is None:
        return None
    hook = rt.pm.hook
    legacy = is_legacy(agent)
    if point == "message_loop_start":
        hook.message_loop_start(agent=agent, loop_data=kwargs["loop_data"])
    elif point == "message_loop_prompts_after":
        hook.message_loop_prompts_after(agent=agent, loop_data=kwargs["loop_data"])
    elif point == "before_main_llm_call" and not legacy:
        agent.data[_MAIN_CALL] = True
    elif point == "before_main_llm_call" and legacy:
        ld = kwargs["loop_data"]
        call_data = {"model": None, "messages": rt.adapter.prompt_messages(agent, ld), "legacy": True}
        hook.chat_model_call_before(agent=agent, call_data=call_data)
        # Kept on the agent, not the conversation: a subordinate agent shares the chat and runs its own
        # loop between this call and this agent's message_loop_end.
        agent.data[_LEGACY_CALL] = call_data
    elif point == "message_loop_end" and legacy:
        call_data = agent.data.pop(_LEGACY_CALL, None)
        if call_data is not None:
            hook.chat_model_call_after(
                agent=agent, call_data=call_data, response=kwargs["loop_data"].last_response
            )
    elif point == "chat_model_call_before":
        hook.chat_model_call_before(agent=agent, call_data=kwargs["call_data"])
    elif point == "chat_model_call_after":
        rec = rt.pending_call(kwargs["call_data"])
        if rec is not None:
            rec.reasoning = kwargs.get("reasoning")
        hook.chat_model_call_after(
            agent=agent, call_data=kwargs["call_data"], response=kwargs.get("response")
        )
    elif point == "util_model_call_before":
        hook.util_model_call_before(agent=agent, call_data=kwargs["call_data"])
        if legacy:  # v0.9 has no util_model_call_after: nothing will record this call, so hold nothing for it
            rec = rt.end_call(kwargs["call_data"])
            if rec is not None and rec.reservation_id:
                rt.ledger.release(rec.reservation_id)
    elif point == "util_model_call_after":
        hook.util_model_call_after(
            agent=agent, call_data=kwargs["call_data"], response=kwargs.get("response")
        )
    elif point == "tool_execute_after":
        hook.tool_execute_after(
            agent=agent, tool_name=str(kwargs.get("tool_name") or ""), response=kwargs.get("response")
        )
    return None


def run_switch_model(tool: Any, origin: str, **args: Any) -> str:
    """The body of Agent Zero's `switch_model` tool: policy, override, ledger row; returns the message."""
    from ..runtime.switch import switch_model

    rt = ensure_runtime(origin)
    res = switch_model(rt, rt.adapter.conversation_id(tool.agent), args)
    return res.message
