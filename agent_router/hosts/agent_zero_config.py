"""Settings from Agent Zero's plugin config (its Settings UI), composed into agent_router Settings.

Agent Zero stores a plugin's settings as `config.json` (globally, per project or per agent profile) and falls
back to the plugin's `default_config.yaml`; a saved `config.json` replaces the defaults wholesale, so missing
keys are filled here from `PluginConfig`'s defaults (which `default_config.yaml` is written from).

Tiers name models the user already configured in Agent Zero: `utility` (its utility model), `chat` (its chat
model) or the name of one of its model presets (the preset's chat model). The API keys and LiteLLM kwargs stay
in Agent Zero's config; the adapter builds the call from there (`a0_models`). Budgets and the switch_model
policy go over the optional agent_router settings file (`settings_file`, default
`usr/agent_router/settings.json` when it exists). Every problem is a `SettingsError` naming the key, as for
the JSON file.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationError

from ..errors import SettingsError
from ..settings import Settings, Tier, _Model, _problems, load, parse

SOURCE = "Agent Zero plugin config (agent_router)"
A0_PROVIDERS = {"google": "gemini", "other": "openai_compatible", "lm_studio": "lmstudio"}


class PluginConfig(_Model):
    """The plugin's settings as Agent Zero's UI shows them (default_config.yaml)."""

    routing_enabled: bool = Field(True, description="Route each call; off: every call goes to the chat tier.")
    utility_tier: str = Field("utility", description="Cheapest tier: 'utility', 'chat' or a model preset name.")
    chat_tier: str = Field("chat", description="Middle tier: 'utility', 'chat' or a model preset name.")
    premium_tier: str = Field("chat", description="Strongest tier: 'utility', 'chat' or a model preset name.")
    conversation_budget_usd: float = Field(0, ge=0, description="Spend limit per chat in USD; 0: none.")
    daily_budget_usd: float = Field(0, ge=0, description="Spend limit per UTC day in USD; 0: none.")
    on_budget_exceeded: Literal["downgrade", "block"] = Field(
        "downgrade", description="At a budget: answer with a cheaper tier, or refuse the call."
    )
    switch_model_enabled: bool = Field(True, description="The agent may switch models with switch_model.")
    switch_model_max_tier: Tier = Field("chat", description="Highest tier the agent may switch to by itself.")
    show_cost_line: bool = Field(True, description="One cost line in the chat after each reply.")
    settings_file: str = Field(
        "", description="Optional agent_router settings JSON (relative to usr/agent_router/); '' for the default."
    )


def default_config_yaml() -> str:
    """default_config.yaml's text (JSON is YAML), one key a line, written from PluginConfig's defaults."""
    fields = PluginConfig.model_fields.items()
    lines = [f"# {name}: {f.description}\n{name}: {json.dumps(f.default)}" for name, f in fields]
    return "# agent_router's settings in Agent Zero (Settings > Agent > agent_router).\n" + "\n".join(lines) + "\n"


def plugin_config(raw: Any, source: str = SOURCE) -> PluginConfig:
    """Validate the plugin config (missing keys take their defaults); SettingsError names each bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(source, [("$", f"expected an object, got {type(raw).__name__}")])
    try:
        return PluginConfig.model_validate(raw)
    except ValidationError as err:
        raise SettingsError(source, _problems(err)) from None


def model_entry(a0: dict[str, Any]) -> dict[str, Any]:
    """An agent_router model entry for one Agent Zero model config (no key: that stays in Agent Zero)."""
    provider = str(a0.get("provider") or "")
    entry: dict[str, Any] = {"provider": A0_PROVIDERS.get(provider, provider), "name": str(a0.get("name") or "")}
    ctx = a0.get("ctx_length")
    if isinstance(ctx, int) and ctx > 0:
        entry["context_window"] = ctx
    if a0.get("vision"):
        entry["capabilities"] = {"vision": True}
    if a0.get("api_base"):
        entry["base_url"] = str(a0["api_base"])
    return entry


def compose(
    raw: Any,
    a0_models: dict[str, dict[str, Any]],
    presets: dict[str, dict[str, Any]] | None = None,
    base: Settings | None = None,
    source: str = SOURCE,
) -> tuple[Settings, dict[str, dict[str, Any]]]:
    """(Settings for this agent, alias -> Agent Zero model config the adapter calls with).

    `a0_models` holds Agent Zero's configured `utility` and `chat` models, `presets` its presets by name
    (each a chat model config), `base` the settings file's settings (models, prices, compression, ...)."""
    cfg = plugin_config(raw, source)
    presets = presets or {}
    problems: list[tuple[str, str]] = []
    used: dict[str, dict[str, Any]] = {}
    tiers: dict[str, list[str]] = {}
    for tier, value in (("utility", cfg.utility_tier), ("chat", cfg.chat_tier), ("premium", cfg.premium_tier)):
        if value in a0_models:
            alias, a0 = f"a0:{value}", a0_models[value]
        elif value in presets:
            alias, a0 = f"a0:preset:{value}", presets[value]
        else:
            known = sorted(a0_models) + [f"preset {p!r}" for p in sorted(presets)]
            problems.append((f"$.{tier}_tier", f"unknown model {value!r} (known: {', '.join(known) or 'none'})"))
            continue
        if not a0.get("name"):
            problems.append((f"$.{tier}_tier", f"Agent Zero's {value!r} model has no name configured"))
            continue
        used[alias] = a0
        tiers[tier] = [alias]
    if problems:
        raise SettingsError(source, problems)
    data = (base or load()).model_dump(by_alias=True, exclude_none=True)
    data["models"] = {**data.get("models", {}), **{a: model_entry(m) for a, m in used.items()}}
    data["tiers"] = tiers
    data["routing"] = {**data.get("routing", {}), "enabled": cfg.routing_enabled}
    for key in ("fallbacks", "task_preferences"):  # aliases of the settings file's own tiers may be gone
        data["routing"].pop(key, None)
    if data["routing"].get("manual_model") not in data["models"]:
        data["routing"].pop("manual_model", None)
        if data["routing"].get("strategy") == "manual":
            data["routing"].pop("strategy")
    budgets = data.setdefault("budgets", {})
    budgets["on_exceed"] = cfg.on_budget_exceeded
    if cfg.conversation_budget_usd:
        budgets["per_conversation_usd"] = cfg.conversation_budget_usd
    if cfg.daily_budget_usd:
        budgets["daily_usd"] = cfg.daily_budget_usd
    policy = data.setdefault("tool_policy", {})
    policy.update(enabled=cfg.switch_model_enabled, max_tier=cfg.switch_model_max_tier)
    policy["allowed_models"] = [a for a in policy.get("allowed_models", []) if a in data["models"]]
    return parse(data, source), used
