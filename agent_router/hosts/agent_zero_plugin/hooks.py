"""agent_router's hooks for Agent Zero's plugin installer (they run in the framework's own Python).

install(): brings the pack's Python packages into `usr/agent_router/site/` (on the volume, so they survive a
container rebuild), resolving against the running framework with every installed package pinned to its
installed version: nothing Agent Zero pins is upgraded or downgraded, and only what is missing is installed.
A failed install does not fail the plugin's install: the agent then works unrouted and says so once in the
chat, and `execute.py` (Plugins (sidebar) > agent_router > Execute) tries again.

get_plugin_config(): a saved config.json replaces default_config.yaml wholesale; keys it lacks are filled
from the defaults here, so a newer plugin version's settings have values in the UI and at runtime.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _boot():
    spec = importlib.util.spec_from_file_location("agent_router_boot", HERE / "agent_router_boot.py")
    mod = sys.modules.get(f"agent_router_boot:{spec.origin}")
    if mod is None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[f"agent_router_boot:{spec.origin}"] = mod
    return mod


def _version() -> str:
    for line in (HERE / "plugin.yaml").read_text("utf-8").splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return ""


def constraints() -> list[str]:
    """`name==version` for every package installed in the running framework's environment."""
    seen: dict[str, str] = {}
    for d in metadata.distributions():
        name = (d.metadata["Name"] or "").strip()
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={d.version}"
    return sorted(seen.values())


def requirement() -> str:
    """A wheel shipped in the plugin's dist/ folder, else agent-router at the plugin's version."""
    wheels = sorted((HERE / "dist").glob("agent_router-*.whl"))
    return str(wheels[-1]) if wheels else f"agent-router=={_version()}"


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:400]


def install_packages() -> dict:
    """Resolve and install; returns {"ok", "site", "installed", "error"}. Never raises."""
    boot = _boot()
    site = boot.site_dir(__file__)
    if site is None:
        return {"ok": False, "error": f"{HERE}: not under Agent Zero's usr/ folder"}
    site.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=site.parent, prefix=".install-") as tmp:
        cons = Path(tmp) / "constraints.txt"
        cons.write_text("\n".join(constraints()) + "\n", "utf-8")
        report = Path(tmp) / "report.json"
        req = requirement()
        dry = _pip(["install", "--dry-run", "--quiet", "--report", str(report), "-c", str(cons), req])
        if dry.returncode != 0:
            return {"ok": False, "error": f"resolving {req} against Agent Zero's packages failed: {_last_line(dry)}"}
        items = []
        for it in json.loads(report.read_text("utf-8")).get("install", []):
            url = (it.get("download_info") or {}).get("url", "")
            meta = it["metadata"]
            items.append(url[len("file://"):] if url.startswith("file://") else f"{meta['name']}=={meta['version']}")
        new = Path(tmp) / "site"
        if items:
            got = _pip(["install", "--no-deps", "--quiet", "--target", str(new), *items])
            if got.returncode != 0:
                return {"ok": False, "error": f"installing {len(items)} packages failed: {_last_line(got)}"}
        new.mkdir(exist_ok=True)
        info = {"python": sys.version.split()[0], "installed": items}
        (new / "agent_router_site.json").write_text(json.dumps(info, indent=1))
        old = Path(tmp) / "old"
        if site.exists():
            os.replace(site, old)
        os.replace(new, site)
    boot.reset()
    return {"ok": True, "site": str(site), "installed": items, "error": None}


def install(**kwargs):
    res = install_packages()
    if res["ok"]:
        print(f"agent_router: {len(res['installed'])} packages in {res['site']}")
    else:  # the plugin stays installed; the agent works unrouted and says so once in the chat
        print(f"agent_router: packages not installed: {res['error']}. {_boot().FIX}", file=sys.stderr)
    return res


def uninstall(**kwargs):
    """The plugin folder goes; the user's data in usr/agent_router/ (ledger, settings) stays. The packages go."""
    site = _boot().site_dir(__file__)
    if site is not None and site.is_dir():
        shutil.rmtree(site, ignore_errors=True)


def _kept() -> Path | None:
    """The copy of the global settings kept on the volume: a reinstall deletes the plugin folder (config.json)."""
    d = _boot().data_dir(__file__)
    return None if d is None else d / "plugin_config.json"


def get_plugin_config(default=None, **kwargs):
    try:
        from helpers import yaml as yaml_helper

        defaults = yaml_helper.loads((HERE / "default_config.yaml").read_text("utf-8")) or {}
    except Exception:  # noqa: BLE001 - the saved config as it is, rather than none
        return default
    if not isinstance(default, dict):
        return defaults
    kept = _kept()
    if default == defaults and not (HERE / "config.json").exists() and kept is not None and kept.is_file():
        try:  # Agent Zero fell back to the defaults: the plugin was reinstalled; the user's settings are kept
            saved = json.loads(kept.read_text("utf-8"))
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict):
            return {**defaults, **saved}
    return {**defaults, **default}


def save_plugin_config(default=None, project_name="", agent_profile="", settings=None, **kwargs):
    """Agent Zero writes what this returns; the global settings are also kept in usr/agent_router/."""
    kept = _kept()
    if isinstance(settings, dict) and not project_name and not agent_profile and kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(settings, indent=1), "utf-8")
    return settings
