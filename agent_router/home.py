"""Where agent_router keeps its files: the home folder, the default ledger path and cache files of derived data.
Light on purpose (no pydantic): the CLI asks these before it knows whether a command needs settings."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import json_input
from .errors import InputError

if TYPE_CHECKING:
    from .settings import Settings

_CACHE_BYTES = 4 << 20


def default_home() -> Path:
    """$AGENT_ROUTER_HOME, else ~/.agent-router."""
    return Path(os.environ.get("AGENT_ROUTER_HOME") or Path.home() / ".agent-router")


def ledger_path(settings: Settings | None = None) -> Path:
    """settings.ledger.path, else $AGENT_ROUTER_HOME/ledger.db (~/.agent-router/ledger.db). Asking where the
    ledger is imports none of its stores."""
    if settings is not None and settings.ledger.path:
        return Path(settings.ledger.path).expanduser()
    return default_home() / "ledger.db"


def read_cache(name: str, stamp: str) -> dict[str, Any] | None:
    """The data of cache file $AGENT_ROUTER_HOME/cache/<name>.json when it was written for `stamp` (what the data
    was derived from, e.g. a file's size and mtime), else None. Cache files hold derived data only: a missing,
    stale or unreadable one (or the folder deleted) just means computing again."""
    path = default_home() / "cache" / f"{name}.json"
    try:
        got = json_input.loads(json_input.decode(json_input.read_file(path, _CACHE_BYTES), str(path)), str(path))
    except InputError:
        return None
    if not isinstance(got, dict) or got.get("stamp") != stamp or not isinstance(got.get("data"), dict):
        return None
    return got["data"]


def write_cache(name: str, stamp: str, data: dict[str, Any]) -> None:
    """Store `data` for `stamp` in cache file `name`, atomically; a home that cannot be written is skipped."""
    folder = default_home() / "cache"
    tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"stamp": stamp, "data": data}), encoding="utf-8")
        os.replace(tmp, folder / f"{name}.json")
    except OSError:
        tmp.unlink(missing_ok=True)
