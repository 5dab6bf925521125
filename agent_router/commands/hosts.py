"""`agent-router install agent-zero PATH` and `agent-router uninstall agent-zero PATH`."""

from __future__ import annotations

import click

from ..hookspecs import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(install_group)
    cli.add_command(uninstall_group)


@click.group("install")
def install_group() -> None:
    """Install agent_router into a host agent."""


@click.group("uninstall")
def uninstall_group() -> None:
    """Remove what `agent-router install` put into a host agent."""


@install_group.command("agent-zero")
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Settings JSON the plugin will read (default: $AGENT_ROUTER_SETTINGS, then "
    "~/.agent-router/settings.json, then built-in defaults).",
)
def install_agent_zero(path: str, settings_path: str | None) -> None:
    """Install the plugin into the Agent Zero checkout at PATH (v1.x plugin folder or v0.9.x usr/ folders).

    Agent Zero's Python environment must also have agent-router installed (pip install agent-router)."""
    from ..hosts import install as inst

    res = inst.install(path, settings_path)
    where = "usr/plugins/agent_router/" if res.layout == "v1" else "usr/extensions, usr/tools, usr/prompts"
    click.echo(
        f"installed agent_router into {res.root} (Agent Zero {res.layout} layout: {where}); "
        f"{len(res.written)} files"
    )
    for f in res.written:
        click.echo(f"  + {f}")


@uninstall_group.command("agent-zero")
@click.argument("path", type=click.Path(file_okay=False, exists=True))
def uninstall_agent_zero(path: str) -> None:
    """Remove the files `install agent-zero` wrote into PATH (files edited since are kept)."""
    from ..hosts import install as inst

    res = inst.uninstall(path)
    click.echo(f"removed agent_router from {res.root}; {len(res.removed)} files")
    for f in res.removed:
        click.echo(f"  - {f}")
    for f in res.kept:
        click.echo(f"  kept (edited since install): {f}")
