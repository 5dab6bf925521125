"""Who holds a budget reservation: this host and a process identity that survives pid reuse.

A reservation records (host, pid, proc_start). `host` is the host name plus the PID namespace, so two
containers with the same name never judge each other's processes. `proc_start` is the boot id and the
process's start time in clock ticks (Linux /proc), so a pid reused after a crash, or any pid after a
reboot, is not taken for the process that reserved. A budget check releases the reservations of this host
whose process is gone, instead of waiting for `reservation_ttl_s`.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


@functools.cache
def host() -> str:
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{ns}" if ns else socket.gethostname()


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_identity(pid: int) -> str | None:
    """boot id + start time of process `pid`; "" where /proc does not tell; None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ("" if _exists(pid) else None)
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: fields after its last ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):  # a zombie: killed, waiting for its parent to reap it
        return None
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else ""


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _own_start(pid: int) -> str:
    return start_identity(pid) or ""


def me() -> tuple[str, int, str]:
    """(host, pid, proc_start) of the calling process, for a reservation row (cached per pid: forks differ)."""
    pid = os.getpid()
    return host(), pid, _own_start(pid)


def gone(pid: int, proc_start: str) -> bool:
    """True when the process that made a reservation on this host no longer runs."""
    if pid == os.getpid():  # this process (a fork's child has its own pid)
        return bool(proc_start) and proc_start != me()[2]
    now = start_identity(pid)
    if now is None:
        return True
    return bool(proc_start and now and now != proc_start)
