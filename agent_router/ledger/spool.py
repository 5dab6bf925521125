"""A JSONL file next to the database that keeps rows whose write finally failed, until the next open.

Appends and the replay hold an exclusive `flock`, so concurrent writers never interleave half lines and two
processes never replay the same lines. Replay is idempotent: rows carry a unique `uid`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("agent_router.ledger")


def spool_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".spool.jsonl")


def append(path: Path, rows: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        os.fsync(fd)
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
