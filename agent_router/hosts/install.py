"""Install the Agent Zero plugin files into a checkout, export the standalone plugin, remove what was installed.

Layouts (detected from the checkout):
- v1.x: `helpers/extension.py` at the root, or a folder holding only `usr/` (what Docker users mount; the
  image is v1.x) -> the plugin folder `usr/plugins/agent_router/` (the whole plugin tree).
- v0.9.x (legacy): `python/helpers/extension.py` -> `usr/extensions/<point>/`, `usr/tools/`, `usr/prompts/`
  and the guard `usr/agent_router_boot.py` (the v1.x-only files are left out).

The files come from the package (agent_router/hosts/agent_zero_plugin, the single source of the plugin tree,
of `agent-router export agent-zero-plugin` and of the legacy files; the repo root's `extensions/`, `tools/`,
`prompts/` are links to it). A manifest (`agent_router_manifest.json`) records each
file written with its SHA-256, the folders created and the settings file; uninstall removes those files
(keeping any the user edited since, and saying so) and the folders it created when they are empty.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import AgentRouterError
from ..settings import load

MANIFEST = "agent_router_manifest.json"
PLUGIN_NAME = "agent_router"


class InstallError(AgentRouterError):
    """The target is not an Agent Zero checkout, or installing would overwrite files that are not ours."""


@dataclass
class Result:
    layout: str
    root: Path
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def source_files() -> dict[str, bytes]:
    """Plugin files by path relative to the plugin folder (v1.x layout), read from the package."""
    base = resources.files("agent_router.hosts").joinpath("agent_zero_plugin")
    out: dict[str, bytes] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, rel + "/")
            elif not child.name.endswith(".pyc"):
                out[rel] = child.read_bytes()

    walk(base, "")
    return dict(sorted(out.items()))


def detect(root: Path) -> str:
    """'v1' or 'legacy'; InstallError naming what was looked for otherwise. A folder holding `usr/` but no
    code is a Docker volume (the image is v1.x)."""
    if not root.is_dir():
        raise InstallError(f"{root}: not a folder")
    if (root / "helpers" / "extension.py").is_file():
        return "v1"
    if (root / "python" / "helpers" / "extension.py").is_file():
        return "legacy"
    if (root / "usr").is_dir():
        return "v1"
    raise InstallError(
        f"{root}: not an Agent Zero checkout (found neither helpers/extension.py (v1.x), "
        "python/helpers/extension.py (v0.9.x) nor a usr/ folder)"
    )


def _root(path: str | Path) -> Path:
    """The Agent Zero root for PATH; PATH may be the mounted `usr/` folder itself."""
    root = Path(path).resolve()
    if root.name == "usr" and root.is_dir() and not (root / "usr").exists():
        return root.parent
    return root


LEGACY_FILES = ("extensions/", "tools/", "prompts/", "agent_router_boot.py")


def _target(layout: str, rel: str) -> str | None:
    """Where a plugin file goes, relative to the checkout root; None when the layout has no use for it."""
    if layout == "v1":
        return f"usr/plugins/{PLUGIN_NAME}/{rel}"
    if not rel.startswith(LEGACY_FILES):  # plugin.yaml, hooks, api/, webui/: v1.x only
        return None
    if rel.startswith("extensions/python/"):
        return "usr/extensions/" + rel[len("extensions/python/") :]
    return f"usr/{rel}"


def manifest_path(root: Path, layout: str) -> Path:
    return root / (f"usr/plugins/{PLUGIN_NAME}" if layout == "v1" else "usr") / MANIFEST


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install(root: str | Path, settings: str | None = None) -> Result:
    root = _root(root)
    layout = detect(root)
    settings_abs = None
    if settings is not None:
        load(settings)  # a bad settings file is reported now, not at the agent's first turn
        settings_abs = str(Path(settings).resolve())
    mpath = manifest_path(root, layout)
    previous = _read_manifest(mpath) if mpath.exists() else None
    ours = {f["path"]: f["sha256"] for f in (previous or {}).get("files", [])}
    plan: list[tuple[str, bytes]] = []
    for rel, data in source_files().items():
        dest = _target(layout, rel)
        if dest is None:
            continue
        p = root / dest
        if p.exists() and dest not in ours and _sha(p.read_bytes()) != _sha(data):
            raise InstallError(f"{p}: exists and was not installed by agent-router; move it away first")
        plan.append((dest, data))
    created: list[str] = list((previous or {}).get("dirs_created", []))
    res = Result(layout, root)
    for dest, data in plan:
        p = root / dest
        missing = []
        d = p.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            d.mkdir()
            created.append(str(d.relative_to(root)))
        p.write_bytes(data)
        res.written.append(dest)
    manifest = {
        "tool": "agent-router",
        "layout": layout,
        "settings": settings_abs if settings is not None else (previous or {}).get("settings"),
        "files": [{"path": dest, "sha256": _sha(data)} for dest, data in plan],
        "dirs_created": created,
    }
    mpath.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return res


def export(dest: str | Path, wheel: str | Path | None = None) -> list[str]:
    """Write the standalone plugin tree (plugin.yaml at its root) into folder `dest`, or into a zip when `dest`
    ends in .zip (one top folder `agent_router/`, as the Plugin Hub takes it). `wheel`: an agent-router wheel
    to ship in `dist/`, installed by the plugin's hooks.install() instead of the one on the package index."""
    dest = Path(dest)
    files = dict(source_files())
    if wheel is not None:
        w = Path(wheel)
        if not w.is_file() or not w.name.startswith("agent_router-") or w.suffix != ".whl":
            raise InstallError(f"{w}: not an agent-router wheel (agent_router-*.whl)")
        files[f"dist/{w.name}"] = w.read_bytes()
    if dest.suffix == ".zip":
        import zipfile

        if dest.exists():
            raise InstallError(f"{dest}: exists; remove it first")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
            for rel, data in files.items():
                z.writestr(f"{PLUGIN_NAME}/{rel}", data)
        return list(files)
    if dest.exists() and any(dest.iterdir()):
        meta = dest / "plugin.yaml"
        if not meta.is_file() or f"name: {PLUGIN_NAME}\n" not in meta.read_text("utf-8", "replace"):
            raise InstallError(f"{dest}: not empty and not an agent_router plugin folder; choose another folder")
    for rel, data in files.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return list(files)


def _read_manifest(mpath: Path) -> dict:
    try:
        data = json.loads(mpath.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InstallError(f"{mpath}: unreadable install manifest ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise InstallError(f"{mpath}: not an agent-router install manifest (no 'files' list)")
    return data


def uninstall(root: str | Path) -> Result:
    root = _root(root)
    layout = detect(root)
    mpath = manifest_path(root, layout)
    if not mpath.exists():
        raise InstallError(f"{root}: agent_router is not installed here (no {mpath.relative_to(root)})")
    data = _read_manifest(mpath)
    res = Result(layout, root)
    for f in data["files"]:
        p = root / f["path"]
        if not p.exists():
            continue
        if _sha(p.read_bytes()) != f["sha256"]:
            res.kept.append(f["path"])  # edited since install: the user's now
            continue
        p.unlink()
        res.removed.append(f["path"])
        cache = p.parent / "__pycache__"  # Agent Zero's loader compiles our modules next to them
        if p.suffix == ".py" and cache.is_dir():
            for c in cache.glob(f"{p.stem}.*.pyc"):
                c.unlink()
            if not any(cache.iterdir()):
                cache.rmdir()
    mpath.unlink()
    res.removed.append(str(mpath.relative_to(root)))
    for d in sorted(data.get("dirs_created", []), key=lambda s: s.count("/"), reverse=True):
        p = root / d
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    return res
