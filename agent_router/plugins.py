"""The plugin manager: built-in plugins plus setuptools entry points of group "agent_router".

Built-ins are ordinary plugins: every module in `agent_router.builtins` and `agent_router.commands` is
registered. `AGENT_ROUTER_LOAD_PLUGINS` (comma-separated distribution names; empty for none) restricts which
installed entry-point plugins load, as in simonw/llm.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from importlib import metadata

import pluggy

from . import hookspecs

pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_BUILTIN_PACKAGES = ("agent_router.builtins", "agent_router.commands")
_loaded = False


def builtin_modules() -> list[str]:
    """Names of the built-in plugin modules, sorted."""
    names = []
    for pkg_name in _BUILTIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names += [f"{pkg_name}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    return sorted(names)


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins and entry points once; return the manager."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for name in builtin_modules():
        mod = importlib.import_module(name)
        if pm.get_plugin(name) is None:
            pm.register(mod, name)
    allow = os.environ.get("AGENT_ROUTER_LOAD_PLUGINS")
    if allow is None:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    else:
        wanted = {n.strip() for n in allow.split(",") if n.strip()}
        for dist in metadata.distributions():
            for ep in dist.entry_points:
                if ep.group == hookspecs.PROJECT and dist.metadata["Name"] in wanted and pm.get_plugin(ep.name) is None:
                    pm.register(ep.load(), name=ep.name)
    return pm


def get_plugins() -> list[dict[str, object]]:
    """Each registered plugin with the hooks it implements."""
    load_plugins()
    out = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({"name": name, "hooks": hooks})
    return sorted(out, key=lambda d: str(d["name"]))
