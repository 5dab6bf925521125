"""`agent-router compress`: fit a JSON list of messages into a token budget."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import messages as msgs
from ..errors import InputError
from ..hookspecs import hookimpl
from ._common import get_settings, settings_option


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(compress_cmd)


@click.command("compress")
@click.argument("path", metavar="IN.json", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--budget", "budget_arg", default=None, metavar="N",
              help="Token budget for the compressed messages (required).")
@click.option("--model", default=None, help="Model alias or name: its encoding counts tokens, its price "
              "values the saving (default: none; counted as gpt-4o).")
@click.option("--json", "as_json", is_flag=True, help="Print {messages, before, after, actions, ...}.")
@settings_option
def compress_cmd(path: str, budget_arg: str | None, model: str | None, as_json: bool,
                 settings_path: str | None) -> None:
    """Compress the messages in IN.json ('-' for stdin) to at most --budget tokens; print them as JSON."""
    budget = _budget(budget_arg)
    if path == "-":
        raw = click.get_binary_stream("stdin").read()
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
    messages = msgs.from_json_text(msgs.decode(raw, path), path)
    settings = get_settings(settings_path)
    from ..catalog import Catalog
    from ..compression.compressor import compress

    info = Catalog(settings).get(model) if model else None
    res = compress(messages, budget, info, settings=settings)
    if as_json:
        click.echo(json.dumps({"messages": res.messages, **res.to_dict()}, indent=2, ensure_ascii=False))
    else:
        click.echo(json.dumps(res.messages, indent=2, ensure_ascii=False))
    if not res.fits:
        click.echo(f"warning: {res.after:,} tokens remain above the budget of {budget:,}: the system prompt, "
                   "first request and newest turn are never removed", err=True)


def _budget(arg: str | None) -> int:
    # Parsed here rather than by click so that a bad value is one clear line, as every other input error.
    if arg is None:
        raise InputError("--budget: required; give the token budget, e.g. --budget 8000")
    try:
        n = int(arg.replace("_", "").replace(",", ""))
    except ValueError:
        raise InputError(f"--budget: expected a whole number of tokens, got {arg!r}") from None
    if n <= 0:
        raise InputError(f"--budget: must be a positive number of tokens, got {n}")
    return n
