"""Apply the ledger's schema migrations to the configured backend (`agent-router migrate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..settings import Settings


@dataclass
class MigrationStatus:
    """Where the ledger is, which migrations it had, which were pending, and which this run applied."""

    where: str
    applied: list[str]
    pending: list[str]
    ran: list[str] = field(default_factory=list)


def migrate(settings: Settings, db_path: str | Path | None = None, status_only: bool = False) -> MigrationStatus:
    """Bring the ledger named by `settings` (or the SQLite file `db_path`) to the current schema; with
    `status_only`, change nothing and report what is applied and pending."""
    if db_path is None and settings.ledger.backend == "postgresql":
        from .stores.postgresql import PostgresStore, dsn_from_settings

        store = PostgresStore(dsn_from_settings(settings), migrate=False)
        try:
            out = MigrationStatus(store.where, store.applied(), store.pending())
            if not status_only:
                out.ran = store.migrate()
        finally:
            store.close()
        return out
    import sqlite_utils

    from .core import default_path
    from .migrations import sqlite as m
    from .stores.sqlite import SQLiteStore

    path = Path(db_path) if db_path else default_path(settings)
    if path.exists():
        db = sqlite_utils.Database(path)
        applied, pending = sorted(m.applied(db)), m.pending(db)
        db.close()
    else:
        applied, pending = [], [fn.__name__ for fn in m.MIGRATIONS]
    out = MigrationStatus(str(path), applied, pending)
    if not status_only and pending:
        SQLiteStore(path).close()  # opening applies pending migrations under the write lock
        out.ran = pending
    return out
