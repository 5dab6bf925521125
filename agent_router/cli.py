"""The `agent-router` command. Subcommands come from plugins through the `register_commands` hook."""

from __future__ import annotations

import sys

import click

from .errors import AgentRouterError
from .plugins import load_plugins


class _Group(click.Group):
    """Turns our own errors into one clear line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except AgentRouterError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="agent-router")
def cli() -> None:
    """agent-router: route each LLM request to the cheapest model that will do the job."""


load_plugins().hook.register_commands(cli=cli)
