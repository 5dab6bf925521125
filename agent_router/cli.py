"""The `agent-router` command. Subcommands come from plugins through the `register_commands` hook."""

from __future__ import annotations

import os
import sys

import click

from .errors import AgentRouterError, clip
from .plugins import load_plugins
from .secrets import redact


def _line(e: BaseException) -> str:
    """One line for an error we did not raise on purpose (each source should raise an AgentRouterError that
    names the file or argument; this is the net under them)."""
    if isinstance(e, RecursionError):
        return "input nested too deeply to process"
    if isinstance(e, MemoryError):
        return "out of memory (the input is too large)"
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or type(e).__name__}"
    return f"{type(e).__name__}: {e}"  # UnicodeError


class _Group(click.Group):
    """Turns errors from bad input into one clear line on stderr and exit status 2, never a traceback.
    The line is clipped and has secrets masked."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `agent-router ... | head`: the reader left; nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except AgentRouterError as e:
            _fail(str(e))
        except (OSError, RecursionError, UnicodeError, MemoryError) as e:
            _fail(" ".join(_line(e).split()))


def _fail(message: str) -> None:
    click.echo(f"error: {redact(clip(message, 4000))}", err=True)
    sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="agent-router")
def cli() -> None:
    """agent-router: route each LLM request to the cheapest model that will do the job."""


load_plugins().hook.register_commands(cli=cli)
