import json
import os
import subprocess
import sys
import textwrap

import pytest


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
