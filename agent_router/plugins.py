"""The plugin manager: the built-in plugins named in `DEFAULT_PLUGINS`, plus setuptools entry points of group
"agent_router".

Built-ins are ordinary plugins, listed explicitly (as simonw/llm and datasette do): a module that is not in
`DEFAULT_PLUGINS` is not registered, whatever folder it sits in. `AGENT_ROUTER_LOAD_PLUGINS` (comma-separated
distribution names; empty for none) restricts which installed entry-point plugins load, as in simonw/llm.

Finding entry points means importing importlib.metadata and reading every installed distribution (~50 ms of
each command's start-up), so what was found is kept in $AGENT_ROUTER_HOME/cache/entry-points.json for the
current sys.path and the modification times of its folders (installing or removing a package changes them).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import pluggy

from . import hookspecs
from .home import read_cache, write_cache

DEFAULT_PLUGINS: tuple[str, ...] = (
    "agent_router.builtins.heuristics",
    "agent_router.builtins.host_loop",
    "agent_router.builtins.learned",
    "agent_router.builtins.summarize",
    "agent_router.commands.compress",
    "agent_router.commands.core",
    "agent_router.commands.demo",
    "agent_router.commands.embeddings",
    "agent_router.commands.evaluate",
    "agent_router.commands.gateway",
    "agent_router.commands.hosts",
    "agent_router.commands.learned",
    "agent_router.commands.ledger",
    "agent_router.commands.providers",
    "agent_router.commands.scale",
)

pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_loaded = False


def load_plugins() -> pluggy.PluginManager:
    """Register the built-ins and the entry-point plugins once; return the manager."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for name in DEFAULT_PLUGINS:
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name)
    allow = os.environ.get("AGENT_ROUTER_LOAD_PLUGINS")
    wanted = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
    for dist_name, ep_name, value in entry_points():
        if (wanted is None or dist_name in wanted) and pm.get_plugin(ep_name) is None and not pm.is_blocked(ep_name):
            pm.register(_load(value), name=ep_name)
    return pm


def _paths_stamp() -> str:
    """sys.path with the modification time of each of its folders."""
    def mtime(p: str) -> int:
        try:
            return os.stat(p or ".").st_mtime_ns
        except OSError:
            return 0

    return repr([(p, mtime(p)) for p in sys.path])


def entry_points() -> list[tuple[str, str, str]]:
    """(distribution name, entry-point name, value) of each installed entry point of group "agent_router", in
    the order importlib.metadata finds them; cached for the current sys.path and its folders' mtimes."""
    stamp = _paths_stamp()
    got = read_cache("entry-points", stamp)
    if got is not None and isinstance(got.get("found"), list):
        return [tuple(e) for e in got["found"] if isinstance(e, list) and len(e) == 3]  # type: ignore[misc]
    from importlib import metadata

    found = [(dist.metadata["Name"], ep.name, ep.value)
             for dist in metadata.distributions() for ep in dist.entry_points if ep.group == hookspecs.PROJECT]
    write_cache("entry-points", stamp, {"found": found})
    return found


def _load(value: str) -> Any:
    """The object an entry point names (`module` or `module:attr.path`), as EntryPoint.load() gives it."""
    module, _, attr = value.partition("[")[0].partition(":")
    obj = importlib.import_module(module.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def manager(pm_arg: Any = None) -> pluggy.PluginManager | None:
    """The plugin manager a component should use: None (the default) loads the plugins; False means none
    (opt out); any other value is a caller's own manager."""
    if pm_arg is None:
        return load_plugins()
    if pm_arg is False:
        return None
    return pm_arg


def get_plugins() -> list[dict[str, object]]:
    """Each registered plugin with the hooks it implements."""
    load_plugins()
    out = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({"name": name, "hooks": hooks})
    return sorted(out, key=lambda d: str(d["name"]))


def get_scorers(pm_arg: Any = None) -> dict[str, tuple[Callable[[str | None], Any], str]]:
    """Named scorers from the `register_scorers` hook: name -> (factory, help). The first plugin to register a
    name keeps it (plugins run in reverse registration order, so an installed plugin may take a built-in's
    name)."""
    found: dict[str, tuple[Callable[[str | None], Any], str]] = {}

    def register(name: str, factory: Callable[[str | None], Any], help: str = "") -> None:
        found.setdefault(name, (factory, help))

    m = manager(pm_arg)
    if m is not None:
        m.hook.register_scorers(register=register)
    return found
