"""Ledger commands: costs, report, feedback, and `ledger` (path, schema, budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..hookspecs import hookimpl
from ._common import LazyChoice, get_settings, settings_option

if TYPE_CHECKING:
    from ..ledger import Ledger

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Ledger file (default: ledger.path from settings, else $AGENT_ROUTER_HOME/ledger.db).",
)


def open_ledger(settings_path: str | None, db_path: str | None, must_exist: bool = True) -> Ledger:
    from ..ledger import Ledger, LedgerError

    s = get_settings(settings_path)
    if db_path is None and s.ledger.backend == "postgresql":
        return Ledger.from_settings(s)  # the shared server named by ledger.dsn_env
    led_path = Path(db_path) if db_path else None
    from ..ledger import default_path

    p = led_path or default_path(s)
    if must_exist and not p.exists():
        raise LedgerError(f"{p}: no ledger there yet (nothing recorded); pass --db or set ledger.path")
    return Ledger(p, s)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(costs_cmd)
    cli.add_command(report_cmd)
    cli.add_command(feedback_cmd)
    cli.add_command(ledger_group)


@click.command("costs")
@click.option(
    "--by", type=LazyChoice("..ledger.reports:BY_CHOICES"), default="model", show_default=True, help="Group rows by."
)
@click.option(
    "--since", default=None, help="Only calls since: 30m, 24h, 7d, 2w, today, month, or an ISO date."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_option
@db_option
def costs_cmd(
    by: str, since: str | None, as_json: bool, settings_path: str | None, db_path: str | None
) -> None:
    """Tokens, calls, cost, error rate, latency, and the saving against every call on the premium tier."""
    from ..ledger.reports import costs, format_table

    with open_ledger(settings_path, db_path) as led:
        rep = costs(led, by, since)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        click.echo(format_table(rep), nl=False)


@click.command("report")
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False), required=True, help="Write the page here."
)
@click.option(
    "--since", default=None, help="Only calls since: 30m, 24h, 7d, 2w, today, month, or an ISO date."
)
@settings_option
@db_option
def report_cmd(html_path: str, since: str | None, settings_path: str | None, db_path: str | None) -> None:
    """Write a self-contained HTML cost report with charts (opens offline in any browser)."""
    from ..ledger import LedgerError
    from ..ledger.html import render

    with open_ledger(settings_path, db_path) as led:
        page = render(led, since)
    try:
        Path(html_path).write_text(page, encoding="utf-8")
    except OSError as e:
        raise LedgerError(f"{html_path}: cannot write the report ({e.strerror})") from None
    click.echo(f"wrote {html_path}")


@click.command("feedback")
@click.argument("call_id", type=int)
@click.argument("verdict", type=click.Choice(["good", "bad"]))
@click.option("--signal", default="cli", show_default=True, help="What prompted the verdict.")
@settings_option
@db_option
def feedback_cmd(
    call_id: int, verdict: str, signal: str, settings_path: str | None, db_path: str | None
) -> None:
    """Mark the call CALL_ID (the `id` column of the ledger) as good or bad, for learned routing."""
    with open_ledger(settings_path, db_path) as led:
        fid = led.add_feedback(call_id, verdict == "good", "explicit", signal)
    click.echo(f"feedback {fid}: call {call_id} {verdict}")


@click.group("ledger")
def ledger_group() -> None:
    """The cost ledger file: where it is, its schema, the budgets' state."""


@ledger_group.command("path")
@settings_option
def path_cmd(settings_path: str | None) -> None:
    """Print the ledger file's path (PostgreSQL: the server and database, without the password)."""
    from ..ledger import default_path

    s = get_settings(settings_path)
    if s.ledger.backend == "postgresql":
        from ..ledger.stores.postgresql import dsn_from_settings, safe_dsn

        click.echo(safe_dsn(dsn_from_settings(s)))
        return
    click.echo(str(default_path(s)))


@ledger_group.command("schema")
@settings_option
@db_option
def schema_cmd(settings_path: str | None, db_path: str | None) -> None:
    """Print the schema (Markdown), documented from the migrations themselves; migrates the file first."""
    from ..ledger.migrations.sqlite import schema_markdown

    with open_ledger(settings_path, db_path, must_exist=False) as led:
        db = getattr(led.store, "db", None)
        if db is None:  # PostgreSQL: the same migrations build the same tables; document them from SQLite's
            import sqlite_utils

            from ..ledger.migrations.sqlite import migrate

            db = sqlite_utils.Database(memory=True)
            migrate(db)
        click.echo(schema_markdown(db), nl=False)


@ledger_group.command("budget")
@click.option("--conversation", default=None, help="Conversation id, for its per-conversation budget.")
@settings_option
@db_option
def budget_cmd(conversation: str | None, settings_path: str | None, db_path: str | None) -> None:
    """USD left before the tightest budget (daily, monthly, per conversation)."""
    with open_ledger(settings_path, db_path, must_exist=False) as led:
        rem = led.remaining(conversation)
    click.echo("no budget set" if rem is None else f"${rem:.4f} left")


@ledger_group.command("copy")
@click.option("--from", "src", required=True, metavar="sqlite:PATH", help="The SQLite ledger file to copy.")
@click.option("--to", "dst", default="postgresql", show_default=True, metavar="postgresql[:ENV_VAR]",
              help="The PostgreSQL ledger: from ledger.dsn_env in settings, or the DSN in ENV_VAR.")
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def copy_cmd(src: str, dst: str, settings_path: str | None, as_json: bool) -> None:
    """Copy an SQLite ledger (calls, feedback, alerts) into PostgreSQL; safe to re-run."""
    from ..ledger import LedgerError
    from ..ledger.copy import copy_sqlite_to_postgres, target_dsn
    from ..ledger.stores.postgresql import PostgresStore

    kind, _, path = src.partition(":")
    if kind != "sqlite" or not path:
        raise LedgerError(f"--from: expected sqlite:PATH, got {src!r}")
    store = PostgresStore(target_dsn(dst, settings_path))
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
