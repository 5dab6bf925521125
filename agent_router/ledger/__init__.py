"""The cost ledger: one SQLite row per model call, budgets enforced from it, reports people can read.

from agent_router.ledger import Ledger
ledger = Ledger.from_settings(settings)          # or Ledger("path/to/ledger.db")
chk = ledger.check(decision.estimated_cost_usd, conversation_id="c1")
call_id = ledger.record("gpt-4.1-mini", response_json, provider="openai", conversation_id="c1",
                        decision=decision, latency_ms=812, reservation_id=chk.reservation_id)

A call that cannot be written (disk full, read-only folder or file, corrupt file) raises LedgerWriteError after
its row was kept in a spool (`err.kept_in`) that is replayed when the ledger can be written again.
"""

from .budgets import BudgetCheck
from .core import KINDS, Ledger, default_path
from .errors import LedgerBusy, LedgerError, LedgerUnwritable, LedgerWriteError
from .reports import BY_CHOICES, costs, parse_since

__all__ = [
    "BY_CHOICES",
    "KINDS",
    "BudgetCheck",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "LedgerUnwritable",
    "LedgerWriteError",
    "costs",
    "default_path",
    "parse_since",
]
