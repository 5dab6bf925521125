"""`agent-router install agent-zero PATH`, `agent-router uninstall agent-zero PATH` and
`agent-router export agent-zero-plugin DIR`."""

from __future__ import annotations

import click

from ..hookspecs import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(install_group)
    cli.add_command(uninstall_group)
    cli.add_command(export_group)


@click.group("install")
def install_group() -> None:
    """Install agent_router into a host agent."""


@click.group("uninstall")
def uninstall_group() -> None:
    """Remove what `agent-router install` put into a host agent."""


@click.group("export")
def export_group() -> None:
    """Write a host's plugin as a standalone folder or zip."""


@export_group.command("agent-zero-plugin")
@click.argument("dest", type=click.Path())
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="An agent-router wheel to ship in dist/ (installed by the plugin instead of the package index's).",
)
def export_agent_zero_plugin(dest: str, wheel: str | None) -> None:
    """Write the Agent Zero plugin (plugin.yaml at its root) into folder DEST, or DEST.zip for the Plugin Hub.

    Agent Zero installs it from a git repository or a zip (Plugin Hub); its install step puts agent_router's
    Python packages into usr/agent_router/site/ without changing Agent Zero's pinned packages."""
    from ..hosts import install as inst

    files = inst.export(dest, wheel)
    click.echo(f"wrote the agent_router plugin for Agent Zero to {dest} ({len(files)} files)")


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

    PATH may hold only usr/ (a Docker volume). Agent Zero's Python must also reach agent-router: pip install it
    there, or (v1.x) run the plugin's execute.py, which installs it into usr/agent_router/site/."""
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
