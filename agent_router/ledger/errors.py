"""Ledger errors: each names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

from ..errors import AgentRouterError


class LedgerError(AgentRouterError):
    """The ledger cannot be opened, read or written, or an argument to it is invalid."""


class LedgerBusy(LedgerError):
    """The database stayed locked through every retry (the row goes to the spool file instead)."""


class LedgerUnwritable(LedgerError):
    """The ledger's storage refused the operation; `reason` is disk-full, read-only, corrupt or io."""

    def __init__(self, message: str, *, path: str, reason: str):
        super().__init__(message)
        self.path = path
        self.reason = reason


class LedgerWriteError(LedgerError):
    """A call was NOT written to the ledger. Its row is safe in `kept_in` (a spool file, replayed when the
    ledger can be written again) or, when no spool path could be written, only in this process's memory
    (`kept_in` None; retried on the next write and on close, lost if the process exits first)."""

    def __init__(self, message: str, *, path: str, reason: str, kept_in: Path | None, rows: int):
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.kept_in = kept_in
        self.rows = rows
