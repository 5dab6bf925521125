"""`agent-router migrate`: the ledger's schema migrations, on either backend (agent_router.ledger.migrate)."""

from __future__ import annotations

import click

from ..hookspecs import hookimpl
from ._common import get_settings, settings_option


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(migrate_cmd)


@click.command("migrate")
@settings_option
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite ledger file (default: the backend and path the settings name).")
@click.option("--status", is_flag=True, help="Only list applied and pending migrations; change nothing.")
def migrate_cmd(settings_path: str | None, db_path: str | None, status: bool) -> None:
    """Apply the ledger's schema migrations to the configured backend (SQLite file or PostgreSQL server)."""
    from ..ledger.migrate import migrate

    r = migrate(get_settings(settings_path), db_path, status_only=status)
    if status:
        click.echo(f"{r.where}: {len(r.applied)} applied; pending: {', '.join(r.pending) or 'none'}")
    elif r.ran:
        click.echo(f"{r.where}: applied {', '.join(r.ran)}")
    else:
        click.echo(f"{r.where}: up to date ({len(r.applied)} migrations)")
