"""`agent-router serve` (the HTTP gateway) and `agent-router keys` (its virtual keys)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click

from ..hookspecs import hookimpl
from ._common import LazyChoice, get_settings, settings_option


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(serve_cmd)
    cli.add_command(keys_group)


@click.command("serve")
@settings_option
@click.option("--host", default=None, help="Address to bind (default: gateway.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: gateway.port, 4141; 0: any free port).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes sharing the port, the ledger, budgets, limits and health.")
def serve_cmd(settings_path: str | None, host: str | None, port: int | None, workers: int) -> None:
    """Serve an OpenAI- and Anthropic-compatible gateway that routes every request (model "auto"), with
    virtual keys, a management API (/api/...) and a live cost dashboard (/)."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise click.ClickException("the gateway needs aiohttp: pip install 'agent-router[gateway]'") from None
    from ..gateway import serve

    serve(get_settings(settings_path), host, port, workers, echo=lambda s: click.echo(s, err=True))


@click.group("keys")
def keys_group() -> None:
    """Virtual keys of the gateway (stored hashed in the ledger database)."""


@contextlib.contextmanager
def _store(settings_path: str | None) -> Iterator[Any]:
    """The gateway's KeyStore on the ledger the settings name."""
    from ..gateway.keys import KeyStore
    from ..ledger import Ledger
    from ..providers.state import MemoryState

    with Ledger.from_settings(get_settings(settings_path)) as led:
        yield KeyStore(led, None, MemoryState())


@keys_group.command("create")
@click.argument("name")
@click.option("--budget", "budget_usd", type=float, default=None, help="Spend limit of the key, USD.")
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--max-tier", type=LazyChoice("..settings:TIERS"), default=None, help="Highest tier the key may reach.")
@click.option("--admin", is_flag=True, help="May use the management API (keys, usage, decisions).")
@settings_option
def keys_create(name: str, budget_usd: float | None, rpm: int | None, max_tier: str | None, admin: bool,
                settings_path: str | None) -> None:
    """Make a key; it is printed once and only its hash is kept."""
    with _store(settings_path) as ks:
        value, key = ks.create(name, budget_usd, rpm, max_tier, admin)
    click.echo(value)


@keys_group.command("list")
@settings_option
def keys_list(settings_path: str | None) -> None:
    """Keys with their limits and spend (never their values)."""
    with _store(settings_path) as ks:
        click.echo(json.dumps(ks.list(), indent=2))


@keys_group.command("revoke")
@click.argument("name")
@settings_option
def keys_revoke(name: str, settings_path: str | None) -> None:
    """Revoke a key (every worker refuses it within 2 seconds)."""
    with _store(settings_path) as ks:
        ks.revoke(name)
    click.echo(f"revoked {name}")
