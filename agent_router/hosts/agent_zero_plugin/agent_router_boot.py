"""agent_router's guard inside Agent Zero. Every extension, tool and API file of the plugin loads this file by
path and calls it; it never raises on import and never lets a missing package break the agent's turn.

- Where the user's data lives: `usr/agent_router/` (settings.json, ledger.db, the spool, built embedding
  tables) through `$AGENT_ROUTER_HOME`, unless that is already set. The plugin folder itself is replaced on a
  reinstall, and nothing outside `usr/` survives a container rebuild.
- Where the pack's Python packages live: `usr/agent_router/site/`, filled by the plugin's `hooks.install()`
  (or `execute.py`), appended to `sys.path` so that Agent Zero's own pinned packages always win.
- When `agent_router` cannot be imported (a fresh container, a half-finished install), the first call says so
  once in the agent's log, and every call returns without doing anything: the agent keeps working unrouted.
  The import is retried when `usr/agent_router/site/` changes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

FIX = (
    "Install its packages: Plugins (sidebar) > agent_router > Execute (runs execute.py), or reinstall the "
    "plugin; then start a new message."
)
_lock = threading.Lock()
_state: dict[str, Any] = {"impl": None, "error": None, "stamp": None, "said": False}


def usr_dir(origin: str | os.PathLike[str]) -> Path | None:
    """Agent Zero's `usr/` folder holding the file `origin` (the plugin lives under it)."""
    for p in Path(origin).resolve().parents:
        if p.name == "usr":
            return p
    return None


def data_dir(origin: str | os.PathLike[str]) -> Path | None:
    u = usr_dir(origin)
    return None if u is None else u / "agent_router"


def site_dir(origin: str | os.PathLike[str]) -> Path | None:
    d = data_dir(origin)
    return None if d is None else d / "site"


def _stamp(site: Path | None) -> float | None:
    try:
        return site.stat().st_mtime if site is not None else None
    except OSError:
        return None


def load(origin: str | os.PathLike[str]) -> Any | None:
    """agent_router's Agent Zero adapter module, or None (the reason is kept for `problem()`)."""
    site = site_dir(origin)
    with _lock:
        if _state["impl"] is not None:
            return _state["impl"]
        stamp = _stamp(site)
        if _state["error"] is not None and stamp == _state["stamp"]:
            return None
        home = data_dir(origin)
        if home is not None:
            os.environ.setdefault("AGENT_ROUTER_HOME", str(home))
        if site is not None and site.is_dir() and str(site) not in sys.path:
            sys.path.append(str(site))  # appended: Agent Zero's pinned packages come first
            importlib.invalidate_caches()
        try:
            from agent_router.hosts import agent_zero
        except Exception as e:  # ImportError, or a package built for another Python: never the turn's problem
            _state.update(error=f"{type(e).__name__}: {e}", stamp=stamp)
            return None
        _state.update(impl=agent_zero, error=None, stamp=stamp)
        return agent_zero


def problem() -> str | None:
    return _state["error"]


def say_once(agent: Any, heading: str, text: str) -> None:
    """One warning in the agent's chat log (and on stderr), once per process."""
    with _lock:
        if _state["said"]:
            return
        _state["said"] = True
    print(f"agent_router: {heading}: {text}", file=sys.stderr)
    with contextlib.suppress(Exception):  # a log we cannot write to is no reason to stop the agent
        agent.context.log.log(type="warning", heading=heading, content=text)


def _missing(ext: Any) -> None:
    agent = getattr(ext, "agent", None)
    if agent is not None:
        say_once(
            agent,
            "agent_router is not active: the agent works unrouted",
            f"Its Python packages cannot be loaded ({problem()}). {FIX}",
        )


def forward(point: str, ext: Any, origin: str, **kwargs: Any) -> Any:
    """An extension's call: agent_router's hooks for `point`, or nothing when the pack cannot load."""
    impl = load(origin)
    if impl is None:
        _missing(ext)
        return None
    return impl.forward(point, ext, origin, **kwargs)


def run_switch_model(tool: Any, origin: str, **args: Any) -> str:
    impl = load(origin)
    if impl is None:
        _missing(tool)
        return f"switch_model is unavailable: agent_router is not active ({problem()}). Continue with this model."
    return impl.run_switch_model(tool, origin, **args)


def costs(origin: str, query: dict[str, Any]) -> dict[str, Any]:
    """The Costs view's data (per chat, day or model), or an error the view shows."""
    impl = load(origin)
    if impl is None:
        return {"ok": False, "error": f"agent_router is not active ({problem()}). {FIX}"}
    return impl.costs_view(origin, query)


def reset() -> None:
    """Forget a failed import (after installing packages in this process)."""
    with _lock:
        _state.update(error=None, stamp=None)
