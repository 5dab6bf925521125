"""Ledger errors: each names the file and what is wrong."""

from __future__ import annotations

from ..errors import AgentRouterError


class LedgerError(AgentRouterError):
    """The ledger cannot be opened, read or written, or an argument to it is invalid."""


class LedgerBusy(LedgerError):
    """The database stayed locked through every retry (the row goes to the spool file instead)."""
