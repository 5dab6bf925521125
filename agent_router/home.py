"""Where agent_router keeps its files: the home folder, the default ledger path and cache files of derived data.
Light on purpose (no pydantic): the CLI asks these before it knows whether a command needs settings."""

from __future__ import annotations

import hashlib
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
_BLOB_BYTES = 64 << 20


def default_home() -> Path:
    """$AGENT_ROUTER_HOME, else ~/.agent-router."""
    return Path(os.environ.get("AGENT_ROUTER_HOME") or Path.home() / ".agent-router")


def ledger_path(settings: Settings | None = None) -> Path:
    """settings.ledger.path, else $AGENT_ROUTER_HOME/ledger.db (~/.agent-router/ledger.db). Asking where the
    ledger is imports none of its stores."""
    if settings is not None and settings.ledger.path:
        return Path(settings.ledger.path).expanduser()
    return default_home() / "ledger.db"


def cache_dir() -> Path:
    """The folder of cache files: $AGENT_ROUTER_CACHE, else $AGENT_ROUTER_HOME/cache (~/.agent-router/cache).
    It holds derived data only, so several homes may share one and deleting it is always safe."""
    return Path(os.environ.get("AGENT_ROUTER_CACHE") or default_home() / "cache")


def read_cache(name: str, stamp: str) -> dict[str, Any] | None:
    """The data of cache file <cache_dir>/<name>.json when it was written for `stamp` (what the data was derived
    from, e.g. a file's size and mtime), else None. Cache files hold derived data only: a missing, stale or
    unreadable one (or the folder deleted) just means computing again."""
    path = cache_dir() / f"{name}.json"
    try:
        got = json_input.loads(json_input.decode(json_input.read_file(path, _CACHE_BYTES), str(path)), str(path))
    except InputError:
        return None
    if not isinstance(got, dict) or got.get("stamp") != stamp or not isinstance(got.get("data"), dict):
        return None
    return got["data"]


def write_cache(name: str, stamp: str, data: dict[str, Any]) -> None:
    """Store `data` for `stamp` in cache file `name`, atomically; a folder that cannot be written is skipped."""
    _write(f"{name}.json", json.dumps({"stamp": stamp, "data": data}).encode())


def read_blob(name: str, stamp: str) -> bytes | None:
    """The bytes of binary cache file <cache_dir>/<name>.bin when it was written for `stamp` and is intact (its
    header names the SHA-256 of the bytes that follow), else None: stale, truncated or altered files are ignored."""
    path = cache_dir() / f"{name}.bin"
    try:
        with open(path, "rb") as f:
            header = f.readline(4096)
            body = f.read(_BLOB_BYTES + 1)
        head = json.loads(header)
    except (OSError, ValueError):
        return None
    if (not isinstance(head, dict) or head.get("stamp") != stamp or len(body) > _BLOB_BYTES
            or head.get("sha256") != hashlib.sha256(body).hexdigest()):
        return None
    return body


def write_blob(name: str, stamp: str, body: bytes) -> None:
    """Store `body` for `stamp` in binary cache file `name` (read back by `read_blob`), atomically."""
    if len(body) <= _BLOB_BYTES:
        head = json.dumps({"stamp": stamp, "sha256": hashlib.sha256(body).hexdigest()}).encode()
        _write(f"{name}.bin", head + b"\n" + body)


def _write(filename: str, content: bytes) -> None:
    folder = cache_dir()
    tmp = folder / f".{filename}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(content)
        os.replace(tmp, folder / filename)
    except OSError:
        tmp.unlink(missing_ok=True)
