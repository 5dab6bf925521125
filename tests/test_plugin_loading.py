import json
import os
import subprocess
import sys
import textwrap

import pytest

from agent_router.hookspecs import hookimpl


@pytest.fixture
def installed_plugin(tmp_path):
    """A real installed distribution (dist-info with an entry point of group agent_router) on sys.path."""
    (tmp_path / "tiny_plugin.py").write_text(textwrap.dedent("""
        from agent_router.hookspecs import hookimpl

        @hookimpl
        def on_usage(record):
            pass
    """))
    info = tmp_path / "agent_router_tiny-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agent-router-tiny\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agent_router]\ntiny = tiny_plugin\n")
    return tmp_path


def plugin_names(path, **env):
    code = "import json; from agent_router.plugins import get_plugins; print(json.dumps(get_plugins()))"
    e = {**os.environ, "PYTHONPATH": str(path), **env}
    if "AGENT_ROUTER_LOAD_PLUGINS" not in env:
        e.pop("AGENT_ROUTER_LOAD_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, check=True).stdout
    return {p["name"]: p["hooks"] for p in json.loads(out)}


def test_entry_point_plugins_load_and_can_be_restricted(installed_plugin):
    names = plugin_names(installed_plugin)
    assert names["tiny"] == ["on_usage"]
    assert "agent_router.builtins.heuristics" in names
    assert "tiny" in plugin_names(installed_plugin, AGENT_ROUTER_LOAD_PLUGINS="agent-router-tiny")
    none = plugin_names(installed_plugin, AGENT_ROUTER_LOAD_PLUGINS="")
    assert "tiny" not in none and "agent_router.builtins.heuristics" in none


# --- Router and route() see the plugins by default -----------------------------------------------------------

def _learned_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(tmp_path / "home"))
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"learned": {"enabled": True, "adaptive": False}}))
    return path


def test_router_from_a_settings_file_uses_the_learned_analyzer_by_default(tmp_path, monkeypatch):
    from agent_router import Router, load, route
    from agent_router.plugins import load_plugins

    path = _learned_settings(tmp_path, monkeypatch)
    msgs = [{"role": "user", "content": "Summarize this paragraph about the weather in two sentences please."}]
    default = Router(load(path)).route(msgs)  # the README's own example: no pm=
    explicit = Router(load(path), pm=load_plugins()).route(msgs)
    assert default.analysis.source == "learned"
    assert any(r.startswith("learned:") for r in default.analysis.reasons)
    assert default.analysis.to_dict() == explicit.analysis.to_dict() and default.reasons == explicit.reasons
    assert route(msgs, settings=load(path)).analysis.to_dict() == explicit.analysis.to_dict()
    # Opting out: pm=False routes on the heuristic analyzer alone.
    bare = Router(load(path), pm=False).route(msgs)
    assert bare.analysis.source == "heuristic" and bare.analysis.score != default.analysis.score
    assert route(msgs, settings=load(path), pm=False).analysis.to_dict() == bare.analysis.to_dict()


# --- DEFAULT_PLUGINS -----------------------------------------------------------------------------------------

def test_every_builtin_plugin_module_is_listed_in_default_plugins():
    """Built-ins are listed, not found by scanning: a module with hook implementations left out of
    DEFAULT_PLUGINS would silently do nothing."""
    import importlib
    import pkgutil

    import agent_router.builtins
    import agent_router.commands
    from agent_router.plugins import DEFAULT_PLUGINS, load_plugins

    with_hooks = set()
    for pkg in (agent_router.builtins, agent_router.commands):
        for m in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
            if any(hasattr(getattr(mod, a), "agent_router_impl") for a in dir(mod)):
                with_hooks.add(mod.__name__)
    assert with_hooks <= set(DEFAULT_PLUGINS), with_hooks - set(DEFAULT_PLUGINS)
    pm = load_plugins()
    assert set(DEFAULT_PLUGINS) <= {pm.get_name(p) for p in pm.get_plugins()}


def test_ledger_copy_joins_the_ledger_group_whatever_the_hook_order():
    from click.testing import CliRunner

    from agent_router.cli import cli

    group = cli.commands["ledger"]
    assert {"path", "schema", "budget", "copy"} <= set(group.commands)
    r = CliRunner().invoke(cli, ["ledger", "copy", "--from", "mysql:x"])
    assert r.exit_code == 2 and "--from: expected sqlite:PATH" in r.output


# --- register_scorers ----------------------------------------------------------------------------------------

def _rows(tmp_path):
    rows = tmp_path / "rows.jsonl"
    lines = []
    for i in range(30):
        hard = i % 2 == 0
        lines.append({"id": f"r{i}", "messages": [{"role": "user", "content": ("hard " if hard else "") + f"q{i}"}],
                      "quality": {"weak": 0.0 if hard else 1.0, "strong": 1.0},
                      "cost_usd": {"weak": 0.001, "strong": 0.01}})
    rows.write_text("\n".join(json.dumps(x) for x in lines))
    return rows


def test_a_plugin_registers_a_scorer_that_eval_uses(tmp_path):
    from click.testing import CliRunner

    from agent_router.cli import cli
    from agent_router.plugins import get_scorers, load_plugins

    seen = []

    class Oracle:
        @hookimpl
        def register_scorers(self, register):
            def factory(settings_path):
                seen.append(settings_path)
                return lambda rows, models: [1.0 if "hard" in r["messages"][0]["content"] else 0.0 for r in rows]
            register("by-word", factory, help="says hard when the request says so")

    pm = load_plugins()
    plugin = Oracle()
    pm.register(plugin, "by-word-scorer")
    try:
        assert {"analyzer", "by-word"} <= set(get_scorers())
        assert get_scorers()["by-word"][1] == "says hard when the request says so"
        settings = tmp_path / "s.json"
        settings.write_text("{}")
        r = CliRunner().invoke(cli, ["eval", str(_rows(tmp_path)), "--models", "weak,strong", "--router", "by-word",
                                     "--router", "analyzer", "--json", "--settings", str(settings)])
        assert r.exit_code == 0, r.output
        res = json.loads(r.output)["results"]
        assert res["by-word"]["apgr"] == pytest.approx(res["oracle"]["apgr"]) and "analyzer" in res
        assert seen == [str(settings)]
        help_text = " ".join(CliRunner().invoke(cli, ["eval", "--help"]).output.split())
        assert "by-word" in help_text[help_text.index("--router"):help_text.index("--peer")]
    finally:
        pm.unregister(plugin)
    r = CliRunner().invoke(cli, ["eval", str(_rows(tmp_path)), "--models", "weak,strong", "--router", "by-word"])
    assert r.exit_code == 2 and "--router: unknown by-word" in r.output


# --- register_models -----------------------------------------------------------------------------------------

def _manager(*plugins):
    import pluggy

    from agent_router import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for p in plugins:
        pm.register(p)
    return pm


class LocalModels:
    def __init__(self, base_url="http://127.0.0.1:9/v1", config=None, tier="utility"):
        self.base_url, self.config, self.tier = base_url, config, tier

    @hookimpl
    def register_models(self, register):
        register("local-llama", self.config or {"provider": "openai_compatible", "name": "llama3.1:8b",
                                                "base_url": self.base_url, "price": {"input": 0, "output": 0}},
                 tier=self.tier)
        register("gpt-4.1-mini", {"provider": "openai", "name": "something-else"}, tier="premium")


def test_a_plugin_adds_a_model_the_router_and_client_use():
    from agent_router.catalog import Catalog
    from agent_router.demo.server import DemoServer
    from agent_router.providers import ProviderClient
    from agent_router.router import Router
    from agent_router.settings import Settings

    with DemoServer() as srv:
        pm = _manager(LocalModels(srv.base_url))
        s = Settings()
        cat = Catalog(s, pm=pm)
        m = cat.get("local-llama")
        assert m.tier == "utility" and m.price.source == "settings" and m.provider == "openai_compatible"
        assert [x.alias for x in cat.tier_models("utility")][-1] == "local-llama"
        # The settings' own model keeps its definition; the plugin's same-alias model is ignored.
        assert cat.get("gpt-4.1-mini").name == "gpt-4.1-mini" and cat.get("gpt-4.1-mini").tier == "chat"
        assert "local-llama" not in Catalog(s, pm=False)
        router = Router(s, pm=pm)
        d = router.route([{"role": "user", "content": "hi"}], {"override": {"model": "local-llama"}})
        assert d.model == "local-llama" and d.estimated_cost_usd == 0
        with ProviderClient(s, catalog=router.catalog, counter=router.counter) as client:
            out = client.complete(d, [{"role": "user", "content": "hi"}])
        assert out.alias == "local-llama" and out.text == "[llama3.1:8b] hi"
        assert srv.requests and srv.requests[-1]["model"] == "llama3.1:8b"


def test_a_bad_plugin_model_is_one_clear_error():
    from agent_router.catalog import Catalog
    from agent_router.errors import SettingsError
    from agent_router.settings import Settings

    with pytest.raises(SettingsError, match=r"register_models\('local-llama'\).*\$\.name"):
        Catalog(Settings(), pm=_manager(LocalModels(config={"provider": "openai_compatible", "name": ""})))
    with pytest.raises(SettingsError, match=r"register_models\('local-llama'\).*\$\.tier.*'gold'"):
        Catalog(Settings(), pm=_manager(LocalModels(tier="gold")))


def test_an_installed_plugin_adds_models_and_scorers(tmp_path):
    (tmp_path / "models_plugin.py").write_text(textwrap.dedent("""
        from agent_router.hookspecs import hookimpl

        @hookimpl
        def register_models(register):
            register("house-model", {"provider": "openai_compatible", "name": "house-7b",
                                     "base_url": "http://127.0.0.1:9/v1", "price": {"input": 0.1, "output": 0.2}},
                     tier="chat")

        @hookimpl
        def register_scorers(register):
            register("house-scorer", lambda path: (lambda rows, models: [0.5] * len(rows)))
    """))
    info = tmp_path / "agent_router_house-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agent-router-house\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agent_router]\nhouse = models_plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "AGENT_ROUTER_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "agent_router", "models", "--json"], capture_output=True,
                         text=True, env=env, check=True).stdout
    house = [m for m in json.loads(out) if m["alias"] == "house-model"]
    assert house and house[0]["tier"] == "chat" and house[0]["output"] == 0.2
    out = subprocess.run([sys.executable, "-m", "agent_router", "eval", "--help"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "house-scorer" in " ".join(out.split())


# --- start-up ------------------------------------------------------------------------------------------------

def test_import_and_plugin_registration_stay_light():
    """`import agent_router` and the built-in plugins (what `agent-router --help` loads) import no numpy,
    httpx or pydantic; the public names still resolve."""
    code = textwrap.dedent("""
        import importlib, json, sys
        import agent_router
        from agent_router.plugins import DEFAULT_PLUGINS
        for name in DEFAULT_PLUGINS:
            importlib.import_module(name)
        heavy = [m for m in ("numpy", "httpx", "pydantic") if m in sys.modules]
        names = {n: type(getattr(agent_router, n)).__name__ for n in agent_router.__all__}
        print(json.dumps({"heavy": heavy, "names": names}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["heavy"] == []
    assert {"Router", "route", "Decision", "Analysis", "Settings", "load", "Ledger", "Runtime", "compress",
            "hookimpl", "AgentRouterError", "SettingsError", "InputError"} <= set(out["names"])
