"""`agent-router install/uninstall agent-zero PATH`: layout detection, exact removal, no clobbering."""

from __future__ import annotations

import glob
import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.hosts import install as inst

REPO = Path(__file__).resolve().parent.parent
PKG_FILES = Path(inst.__file__).parent / "agent_zero_plugin"


def _checkout(tmp_path: Path, layout: str) -> Path:
    root = tmp_path / layout
    marker = root / ("helpers" if layout == "v1" else "python/helpers") / "extension.py"
    marker.parent.mkdir(parents=True)
    marker.write_text("# Agent Zero\n")
    return root


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_repo_root_folders_are_the_packaged_files():
    # One source of truth: the folders users see at the repo root are links into the package.
    for name in ("extensions", "tools", "prompts"):
        assert (REPO / name).resolve() == (PKG_FILES / name).resolve()
    files = set(inst.source_files())
    assert "plugin.yaml" in files and "tools/switch_model.py" in files
    assert "prompts/agent.system.tool.switch_model.md" in files
    assert len([f for f in files if f.startswith("extensions/python/")]) == 11


def test_package_data_globs_ship_every_plugin_file_in_the_wheel():
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["agent_router"]
    shipped = {f for p in patterns for f in glob.glob(p, root_dir=REPO / "agent_router")}
    wanted = {f"hosts/agent_zero_plugin/{rel}" for rel in inst.source_files()}
    assert wanted <= shipped


def test_v1_install_then_uninstall_leaves_the_checkout_as_it_was(tmp_path):
    root = _checkout(tmp_path, "v1")
    (root / "usr/plugins/other").mkdir(parents=True)
    (root / "usr/plugins/other/plugin.yaml").write_text("name: other\n")
    before = _tree(root)
    settings = tmp_path / "s.json"
    settings.write_text("{}")
    res = CliRunner().invoke(cli, ["install", "agent-zero", str(root), "--settings", str(settings)])
    assert res.exit_code == 0, res.output
    assert "v1 layout" in res.output
    plugin = root / "usr/plugins/agent_router"
    assert (plugin / "plugin.yaml").read_text().startswith("name: agent_router\n")
    assert (plugin / "extensions/python/chat_model_call_before/_90_agent_router_model.py").is_file()
    assert (plugin / "tools/switch_model.py").is_file()
    manifest = json.loads((plugin / "agent_router_manifest.json").read_text())
    assert manifest["layout"] == "v1" and manifest["settings"] == str(settings.resolve())
    assert len(manifest["files"]) == len(inst.source_files())
    # Agent Zero's loader compiles imported modules next to them; uninstall cleans that up too.
    cache = plugin / "tools/__pycache__"
    cache.mkdir()
    (cache / "switch_model.cpython-312.pyc").write_bytes(b"\0")
    res = CliRunner().invoke(cli, ["uninstall", "agent-zero", str(root)])
    assert res.exit_code == 0, res.output
    assert _tree(root) == before


def test_legacy_install_goes_to_usr_folders_and_keeps_the_users_files(tmp_path):
    root = _checkout(tmp_path, "legacy")
    mine = root / "usr/extensions/message_loop_start/_10_mine.py"
    mine.parent.mkdir(parents=True)
    mine.write_text("# the user's own extension\n")
    before = _tree(root)
    res = inst.install(root)
    assert res.layout == "legacy"
    assert "usr/extensions/message_loop_start/_15_agent_router_route.py" in res.written
    assert "usr/tools/switch_model.py" in res.written
    assert "usr/prompts/agent.system.tool.switch_model.md" in res.written
    assert not any("plugin.yaml" in w for w in res.written)
    assert json.loads((root / "usr/agent_router_manifest.json").read_text())["settings"] is None
    inst.install(root)  # reinstalling over our own files is fine
    inst.uninstall(root)
    assert _tree(root) == before and mine.read_text() == "# the user's own extension\n"


def test_install_refuses_to_overwrite_a_file_it_did_not_write(tmp_path):
    root = _checkout(tmp_path, "v1")
    theirs = root / "usr/plugins/agent_router/tools/switch_model.py"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("# someone else's tool\n")
    res = CliRunner().invoke(cli, ["install", "agent-zero", str(root)])
    assert res.exit_code == 2
    assert f"error: {theirs}: exists and was not installed by agent-router" in res.output
    assert theirs.read_text() == "# someone else's tool\n"


def test_uninstall_keeps_files_edited_since_install(tmp_path):
    root = _checkout(tmp_path, "v1")
    inst.install(root)
    edited = root / "usr/plugins/agent_router/prompts/agent.system.tool.switch_model.md"
    edited.write_text("my own wording\n")
    res = CliRunner().invoke(cli, ["uninstall", "agent-zero", str(root)])
    assert res.exit_code == 0
    assert (
        "kept (edited since install): usr/plugins/agent_router/prompts/agent.system.tool.switch_model.md"
        in (res.output)
    )
    assert edited.read_text() == "my own wording\n"
    assert not (root / "usr/plugins/agent_router/tools").exists()


def test_clear_errors_for_a_wrong_folder_a_bad_settings_file_and_nothing_installed(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["install", "agent-zero", str(tmp_path)])
    assert res.exit_code == 2 and "not an Agent Zero checkout" in res.output
    root = _checkout(tmp_path, "v1")
    bad = tmp_path / "bad.json"
    bad.write_text('{"routing": {"strategy": "cheapest"}}')
    res = runner.invoke(cli, ["install", "agent-zero", str(root), "--settings", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and "$.routing.strategy" in res.output
    assert not (root / "usr").exists()
    res = runner.invoke(cli, ["uninstall", "agent-zero", str(root)])
    assert res.exit_code == 2 and "agent_router is not installed here" in res.output
