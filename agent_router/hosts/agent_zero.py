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

import contextlib
import dataclasses
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..catalog import ModelInfo
from ..errors import AgentRouterError
from ..runtime import core as rtmod
from ..settings import load
from . import agent_zero_bill as bill

MANIFEST = "agent_router_manifest.json"
PLUGIN = "agent_router"
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
    """`a0_models`: alias -> the Agent Zero model config (its key and LiteLLM kwargs) a tier names."""

    name = "agent-zero"

    def __init__(self, a0_models: dict[str, dict[str, Any]] | None = None):
        self.a0_models = dict(a0_models or {})

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

        a0 = self.a0_models.get(model.alias)
        if a0 is not None:  # a model the user configured in Agent Zero: its own key, base and kwargs
            provider, kwargs, api_base = str(a0.get("provider") or provider), dict(a0.get("kwargs") or {}), ""
            api_base = str(a0.get("api_base") or "")
            if a0.get("api_key"):
                kwargs.setdefault("api_key", a0["api_key"])
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
_runtimes: OrderedDict[str, rtmod.Runtime] = OrderedDict()  # by settings key; a few (projects, profiles)
_MAX_RUNTIMES = 8
_reported: set[str] = set()
_last_good: dict[str, str] = {}  # install (manifest or plugin folder) -> key of its last good settings
log = logging.getLogger("agent_router.agent_zero")


def find_manifest(origin: str | os.PathLike[str]) -> Path | None:
    """The install manifest next to the calling extension file (up to four folders up)."""
    p = Path(origin).resolve().parent
    for _ in range(5):
        if (p / MANIFEST).is_file():
            return p / MANIFEST
        p = p.parent
    return None


def _mtime(path: str | os.PathLike[str] | None) -> float | None:
    from ..settings import resolve_path

    p = resolve_path(path)
    try:
        return p.stat().st_mtime if p is not None else None
    except OSError:
        return None


def _plugin_inputs(agent: Any) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """(plugin config, Agent Zero's utility/chat model configs, its presets' chat models), read through Agent
    Zero v1.x for this agent (its project and profile); None outside v1.x."""
    try:
        from helpers import plugins  # Agent Zero v1.x
    except ImportError:
        return None
    if agent is None or not callable(getattr(plugins, "get_plugin_config", None)):
        return None
    raw = plugins.get_plugin_config(PLUGIN, agent=agent)
    try:
        from plugins._model_config.helpers import model_config as mc
    except ImportError:
        return raw, {}, {}
    a0 = {"utility": mc.get_utility_model_config(agent) or {}, "chat": mc.get_chat_model_config(agent) or {}}
    presets = {
        str(p["name"]): p["chat"]
        for p in mc.get_presets()
        if isinstance(p, dict) and p.get("name") and isinstance(p.get("chat"), dict)
    }
    return raw, a0, presets


def _report(agent: Any, key: str, heading: str, text: str) -> None:
    """A problem in the agent's chat log, once per distinct problem."""
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
    log.error("%s: %s", heading, text)
    with contextlib.suppress(Exception):  # no log to write to is no reason to stop the agent
        agent.context.log.log(type="warning", heading=heading, content=text)


def ensure_runtime(origin: str | os.PathLike[str], agent: Any = None) -> rtmod.Runtime | None:
    """The runtime for this install and this agent's settings, activated; None when there are no valid settings.

    Settings come from the install manifest's settings file (`agent-router install agent-zero PATH
    --settings`), else from Agent Zero's plugin config for this agent (project, profile) over the settings file
    (`usr/agent_router/settings.json` by default). A change takes effect at the next hook, keeping each
    conversation's state; settings that no longer validate are reported once in the chat and the last good
    ones stay; with none, the agent works unrouted."""
    manifest = find_manifest(origin)
    fixed = None
    if manifest is not None:
        fixed = json.loads(manifest.read_text("utf-8")).get("settings")
    install = str(manifest or _usr(origin))
    try:
        inputs = None if fixed else _plugin_inputs(agent)
    except Exception as e:  # noqa: BLE001 - e.g. a hand-edited config.json that is not JSON: never the turn's end
        inputs = ({"_unreadable": f"{type(e).__name__}: {str(e)[:300]}"}, {}, {})
    if inputs is None:
        key_data: Any = [install, fixed, _mtime(fixed)]
    else:
        sf = _settings_file(inputs[0])
        key_data = [install, inputs, sf, _mtime(sf)]
    key = json.dumps(key_data, sort_keys=True, default=str)
    with _lock:
        rt = _runtimes.get(key)
        if rt is not None:
            _runtimes.move_to_end(key)
            if rtmod.current() is not rt:
                prev = rtmod.current()
                if prev is not None and isinstance(prev.adapter, AgentZeroAdapter):
                    rt.adopt_states(prev)
                rtmod.activate(rt)
            return rt
        try:
            if inputs is None:
                settings, a0_models = load(fixed), {}
            else:
                settings, a0_models = _compose(*inputs)
        except AgentRouterError as e:
            good = _runtimes.get(_last_good.get(install, ""))
            keep = (
                "settings not reloaded, keeping the last good ones"
                if good is not None
                else "settings invalid, the agent works unrouted until they are fixed"
            )
            err = str(e)
        else:
            new = rtmod.Runtime(settings, AgentZeroAdapter(a0_models))
            prev = rtmod.current()
            if prev is not None and isinstance(prev.adapter, AgentZeroAdapter):
                new.adopt_states(prev)
            _watch_alerts(new)
            _runtimes[key] = new
            while len(_runtimes) > _MAX_RUNTIMES:
                _runtimes.popitem(last=False)
            _last_good[install] = key
            rtmod.activate(new)
            return new
    if agent is not None:
        _report(agent, err, f"agent_router: {keep}", err)
    else:
        log.error("agent_router: %s: %s", keep, err)
    if good is not None:
        rtmod.activate(good)
    return good


def _usr(origin: str | os.PathLike[str]) -> Path:
    """Agent Zero's usr/ folder holding `origin` (the plugin lives under it), else the file's folder."""
    here = Path(origin).resolve()
    return next((p for p in here.parents if p.name == "usr"), here.parent)


def _compose(raw: Any, a0: dict[str, Any], presets: dict[str, Any]) -> tuple[Any, dict[str, dict[str, Any]]]:
    from . import agent_zero_config as conf

    raw = raw if raw is not None else {}
    if isinstance(raw, dict) and "_unreadable" in raw:
        from ..errors import SettingsError

        raise SettingsError(conf.SOURCE, [("$", f"cannot be read: {raw['_unreadable']}")])
    return conf.compose(raw, a0, presets, base=load(_settings_file(raw)))


def _settings_file(raw: Any) -> str | None:
    """The plugin config's `settings_file`, relative to usr/agent_router/ ($AGENT_ROUTER_HOME); None: default."""
    from ..settings import default_home

    sf = str(raw.get("settings_file") or "") if isinstance(raw, dict) else ""
    return str(default_home() / sf) if sf else None


def forward(point: str, ext: Any, origin: str, **kwargs: Any) -> Any:
    """Called by each Agent Zero extension file: `forward("<point>", self, __file__, **kwargs)`."""
    agent = ext.agent
    if agent is None:
        return None
    rt = ensure_runtime(origin, agent)
    if rt is None:
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
    elif point == "monologue_start":
        bill.mark(rt, agent)
    elif point == "monologue_end":
        bill.post(rt, agent)
    elif point == "tool_execute_after":
        hook.tool_execute_after(
            agent=agent, tool_name=str(kwargs.get("tool_name") or ""), response=kwargs.get("response")
        )
    return None


def run_switch_model(tool: Any, origin: str, **args: Any) -> str:
    """The body of Agent Zero's `switch_model` tool: policy, override, ledger row; returns the message."""
    from ..runtime.switch import switch_model

    rt = ensure_runtime(origin, tool.agent)
    if rt is None:
        return "switch_model is unavailable: agent_router's settings are invalid (see the chat log)."
    res = switch_model(rt, rt.adapter.conversation_id(tool.agent), args)
    return res.message


def _watch_alerts(rt: rtmod.Runtime) -> None:
    pm = rt.ledger.pm
    if pm.get_plugin(bill.ALERTS_PLUGIN) is None:
        pm.register(bill.AlertQueue(), bill.ALERTS_PLUGIN)


def costs_view(origin: str, query: dict[str, Any]) -> dict[str, Any]:
    """The Costs view's data: totals per chat, day or model from the ledger of this install's settings."""
    rt = rtmod.current()
    if rt is None or not isinstance(rt.adapter, AgentZeroAdapter):
        rt = ensure_runtime(origin)
    return bill.costs_view(rt, query)
