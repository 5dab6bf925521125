"""A JSONL file that keeps rows whose write finally failed, until the ledger can be written again.

The first choice is next to the database. When that folder is the problem (a full disk, a read-only folder),
the rows go to a fallback named after the database's path: under $AGENT_ROUTER_HOME/spool/, else under the
temp folder. A Ledger replays every one of these files when it opens and when a write succeeds again.
Appends and the replay hold an exclusive `flock`, so concurrent writers never interleave half lines and two
processes never replay the same lines. Replay is idempotent: rows carry a unique `uid`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("agent_router.ledger")


def spool_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".spool.jsonl")


def candidates(primary: Path, home: Path) -> list[Path]:
    """Where rows may be spooled, in order of preference: beside the ledger, then two fallbacks on other
    paths named by a hash of the ledger's path (so each ledger finds its own)."""
    tag = hashlib.sha256(str(primary.absolute()).encode()).hexdigest()[:16]
    name = f"{primary.name.removesuffix('.spool.jsonl')}-{tag}.spool.jsonl"
    uid = os.getuid() if hasattr(os, "getuid") else None
    tmp = Path(tempfile.gettempdir()) / f"agent-router-{uid if uid is not None else 'user'}"
    out = [primary, home / "spool" / name]
    # A shared temp folder: use our folder there only if nobody else made it (or a link in its place).
    if not tmp.is_symlink() and (not tmp.exists() or uid is None or tmp.stat().st_uid == uid):
        out.append(tmp / name)
    return out


def append(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows whole or not at all: a short write (a disk filling up) is cut back off the file."""
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    if path.parent != Path(path.anchor):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # the write's own error is the one to report
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def replay(path: Path, insert: Callable[[list[dict[str, Any]]], None]) -> int:
    """Insert the spooled rows with `insert(rows)`, then empty the file; return how many lines were read.

    A line that is not JSON (a torn write after a crash) is kept in `<spool>.bad` rather than dropped.
    If `insert` raises, the file is left as it was for the next open.
    """
    if not path.exists():
        return 0
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as fh:
            lines = fh.read().splitlines()
        rows, bad = [], []
        for line in lines:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad.append(line)
        if rows:
            insert(rows)
        if bad:
            with open(path.with_name(path.name + ".bad"), "ab") as fh:
                fh.write(b"\n".join(bad) + b"\n")
            log.warning("ledger spool %s: %d unreadable line(s) kept in %s.bad", path, len(bad), path.name)
        os.ftruncate(fd, 0)
        if rows:
            log.info("ledger: replayed %d spooled row(s) from %s", len(rows), path)
        return len(rows)
    finally:
        os.close(fd)
