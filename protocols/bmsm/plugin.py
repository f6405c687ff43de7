"""Registers the BM-SM device profile and the ``simulate`` command through the
same hooks a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable

import click
from btms_gateway.core import hookimpl
from btms_gateway.core.profiles import DeviceProfile

from .profile import BmsmProfile


@hookimpl
def register_device_profiles(register: Callable[[DeviceProfile], None]) -> None:
    register(BmsmProfile())


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .simulator.cli import simulate

    cli.add_command(simulate)
