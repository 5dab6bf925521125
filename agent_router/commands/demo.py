"""`agent-router demo`: a scripted multi-turn agent session, offline (agent_router.demo.session)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..hookspecs import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(demo_cmd)


@click.command("demo")
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the ledger here (default: a temporary file, removed afterwards).",
)
@click.option(
    "--budget",
    "budget_usd",
    type=float,
    default=None,
    help="Per-conversation budget in USD for the session (default: sized so the last turn is downgraded).",
)
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take routing.experiments and escalation from this settings file (models stay the demo's).",
)
def demo_cmd(ledger_path: str | None, budget_usd: float | None, settings_path: str | None) -> None:
    """Run a scripted agent session offline against a local OpenAI-compatible server (127.0.0.1)."""
    from ..demo.session import DEFAULT_BUDGET, run_demo
    from ..settings import load

    overlay = load(settings_path) if settings_path else None
    budget_usd = DEFAULT_BUDGET if budget_usd is None else budget_usd
    if ledger_path is not None:
        run_demo(ledger_path, budget_usd, echo=click.echo, overlay=overlay)
        return
    with tempfile.TemporaryDirectory(prefix="agent-router-demo-") as tmp:
        run_demo(str(Path(tmp) / "ledger.db"), budget_usd, echo=click.echo, keep=False, overlay=overlay)
