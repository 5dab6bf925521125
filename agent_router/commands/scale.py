"""Commands for a shared ledger: `migrate` (either backend) and `ledger copy` (SQLite into PostgreSQL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..hookspecs import hookimpl
from ..ledger import LedgerError
from ._common import get_settings, settings_option


@hookimpl(trylast=True)
def register_commands(cli: click.Group) -> None:
    # trylast: the ledger commands' `ledger` group exists by now; `copy` joins it rather than replacing it.
    cli.add_command(migrate_cmd)
    group = cli.commands.get("ledger")
    if isinstance(group, click.Group):
        group.add_command(copy_cmd)
    else:
        fallback = click.Group("ledger", help="The cost ledger.")
        fallback.add_command(copy_cmd)
        cli.add_command(fallback)


@click.command("migrate")
@settings_option
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite ledger file (default: the backend and path the settings name).")
@click.option("--status", is_flag=True, help="Only list applied and pending migrations; change nothing.")
def migrate_cmd(settings_path: str | None, db_path: str | None, status: bool) -> None:
    """Apply the ledger's schema migrations to the configured backend (SQLite file or PostgreSQL server)."""
    s = get_settings(settings_path)
    if db_path is None and s.ledger.backend == "postgresql":
        from ..ledger.stores.postgresql import PostgresStore, dsn_from_settings

        store = PostgresStore(dsn_from_settings(s), migrate=False)
        where, applied, pending = store.where, store.applied(), store.pending()
        ran = [] if status else store.migrate()
        store.close()
    else:
        import sqlite_utils

        from ..ledger import default_path
        from ..ledger.migrations import sqlite as m
        from ..ledger.stores.sqlite import SQLiteStore

        path = Path(db_path) if db_path else default_path(s)
        where = str(path)
        if path.exists():
            db = sqlite_utils.Database(path)
            applied, pending = sorted(m.applied(db)), m.pending(db)
            db.close()
        else:
            applied, pending = [], [fn.__name__ for fn in m.MIGRATIONS]
        ran = []
        if not status and pending:
            SQLiteStore(path).close()  # opening applies pending migrations under the write lock
            ran = pending
    if status:
        click.echo(f"{where}: {len(applied)} applied; pending: {', '.join(pending) or 'none'}")
    elif ran:
        click.echo(f"{where}: applied {', '.join(ran)}")
    else:
        click.echo(f"{where}: up to date ({len(applied)} migrations)")


def _target_dsn(to: str, settings_path: str | None) -> str:
    kind, _, env = to.partition(":")
    if kind != "postgresql":
        raise LedgerError(f"--to: expected 'postgresql' or 'postgresql:ENV_VAR', got {kind!r}")
    if env:
        if not env.replace("_", "").isalnum():
            raise LedgerError("--to postgresql:ENV_VAR: give the name of an environment variable holding "
                              "the DSN, not the DSN itself (value not shown)")
        dsn = os.environ.get(env)
        if not dsn:
            raise LedgerError(f"--to: environment variable {env} is not set")
        return dsn
    from ..ledger.stores.postgresql import dsn_from_settings

    s = get_settings(settings_path)
    if not s.ledger.dsn_env:
        raise LedgerError("--to postgresql: the settings have no ledger.dsn_env; set it (and ledger.backend "
                          "'postgresql'), or pass --to postgresql:ENV_VAR")
    return dsn_from_settings(s)


@click.command("copy")
@click.option("--from", "src", required=True, metavar="sqlite:PATH", help="The SQLite ledger file to copy.")
@click.option("--to", "dst", default="postgresql", show_default=True, metavar="postgresql[:ENV_VAR]",
              help="The PostgreSQL ledger: from ledger.dsn_env in settings, or the DSN in ENV_VAR.")
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def copy_cmd(src: str, dst: str, settings_path: str | None, as_json: bool) -> None:
    """Copy an SQLite ledger (calls, feedback, alerts) into PostgreSQL; safe to re-run."""
    from ..ledger.copy import copy_sqlite_to_postgres
    from ..ledger.stores.postgresql import PostgresStore

    kind, _, path = src.partition(":")
    if kind != "sqlite" or not path:
        raise LedgerError(f"--from: expected sqlite:PATH, got {src!r}")
    store = PostgresStore(_target_dsn(dst, settings_path))
    try:
        counts = copy_sqlite_to_postgres(path, store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"from": path, "to": store.where, **counts}))
        return
    click.echo(f"copied {counts['calls_copied']} calls ({counts['calls_already_there']} already there, ids "
               f"{counts['ids']}), {counts['feedback_copied']} feedback, {counts['alerts_copied']} alerts "
               f"from {path} to {store.where}")
