"""Name the real cause of a SQLite failure: a full disk, a read-only folder or file, a corrupt file, or I/O.

SQLite's own message is often about a symptom ("disk I/O error", "unable to open database file"), so the
folder is probed with a small real write and the file opened for writing, and the errno decides.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from pathlib import Path

from .errors import LedgerError, LedgerUnwritable

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_PROBE_BYTES = 8192


def _probe_folder(folder: Path) -> int | None:
    """errno of creating, filling and syncing a small file in `folder`; None when that works."""
    probe = folder / f".agent-router-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, b"\0" * _PROBE_BYTES)
        os.fsync(fd)
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _probe_file(path: Path) -> int | None:
    if not path.exists():
        return None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        return None
    except OSError as e:
        return e.errno


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free} bytes free"
    except OSError:
        return "free space unknown"


def classify(path: Path, e: BaseException) -> tuple[str, str]:
    """(reason, message) for a failure of the ledger at `path`; reason is disk-full, read-only, corrupt, io."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    low = text.lower()
    folder = path.parent
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in low or "not a database" in low:
        return "corrupt", (
            f"{path}: the ledger file is corrupt ({text}); move it aside (a new ledger starts on the next "
            "open) or restore it from a copy"
        )
    folder_err = _probe_folder(folder)
    if name.startswith("SQLITE_FULL") or folder_err in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in low:
        return "disk-full", f"{path}: the disk holding {folder} is full ({_free(folder)}); free space there"
    if folder_err in _READ_ONLY:
        return "read-only", (
            f"{path}: the folder {folder} is read-only ({os.strerror(folder_err)}); the ledger needs to write "
            "there (its -wal and -shm files); make it writable or set ledger.path to a writable folder"
        )
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        file_err = _probe_file(f)
        if file_err in _READ_ONLY:
            return "read-only", f"{path}: the file {f} is read-only ({os.strerror(file_err)}); make it writable"
    if name.startswith("SQLITE_READONLY"):
        return "read-only", f"{path}: the ledger file is read-only ({text}); make it and its folder writable"
    return "io", f"{path}: the ledger could not be read or written ({text})"


def error_for(path: Path, e: sqlite3.Error) -> LedgerError:
    """The LedgerError to raise for a sqlite3 error (busy errors are handled by the caller)."""
    if isinstance(e, sqlite3.IntegrityError):
        return LedgerError(f"{path}: the ledger refused a row ({e})")
    if isinstance(e, sqlite3.DatabaseError):
        reason, msg = classify(path, e)
        return LedgerUnwritable(msg, path=str(path), reason=reason)
    return LedgerError(f"{path}: {e}")
