"""Adds ``btms-gateway demo`` to the command line, through the same hook a
third-party plugin uses (core's CLI never imports the kit)."""

from __future__ import annotations

import click
from btms_gateway.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .demo import demo  # the simulator's import waits for a command that needs it

    cli.add_command(demo)
