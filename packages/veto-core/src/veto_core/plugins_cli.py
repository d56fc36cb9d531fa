"""``veto plugins``: what the plugin manager loaded, and from where."""

from __future__ import annotations

import json

import click

from veto_core.plugins import ENV_DISABLE_PLUGINS, describe_plugins

__all__ = ["plugins_cmd"]


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins: built-ins and ``veto`` entry points, with the hooks each
    implements and the approval channels it provides. ``VETO_DISABLE_PLUGINS=1``
    skips entry points."""
    infos = describe_plugins()
    if as_json:
        for p in infos:
            click.echo(
                json.dumps(
                    {
                        "name": p.name,
                        "source": p.source,
                        "hooks": list(p.hooks),
                        "channels": list(p.channels),
                    }
                )
            )
        return
    width = max((len(p.name) for p in infos), default=4)
    for p in infos:
        extra = f"  channels: {', '.join(p.channels)}" if p.channels else ""
        click.echo(f"{p.name:<{width}}  {p.source:<30}  {', '.join(p.hooks)}{extra}")
    import os

    if os.environ.get(ENV_DISABLE_PLUGINS):
        click.echo(f"(entry points skipped: {ENV_DISABLE_PLUGINS} is set)")
