"""Registers the BM-SM device profile, the ``simulate`` command and the
register-table exporter through the same hooks a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable

import click
from btms_gateway.core import hookimpl
from btms_gateway.core.profiles import DeviceProfile

from .profile import BmsmProfile


@hookimpl
def register_device_profiles(register: Callable[[DeviceProfile], None]) -> None:
    register(BmsmProfile())


@click.command("bmsm-registers")
def export_registers() -> None:
    """Print the BM-SM register table (markdown, as docs/bmsm-registers.md)."""
    from .registers import render_markdown

    click.echo(render_markdown(), nl=False)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .simulator.cli import simulate

    cli.add_command(simulate)
    export = cli.commands.get("export")
    if isinstance(export, click.Group):
        export.add_command(export_registers)
