"""Small helpers every northbound plugin needs, so plugins stay hook-thin.

``PerGateway`` keeps the service a plugin started for each gateway (tests run
several gateways in one process, one after another or side by side); the
runtime hooks receive the gateway, so a reading reaches the service of the
gateway that polled it and no other. ``add_export_commands`` puts generated
documentation under ``btms-gateway export``.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

import click

S = TypeVar("S")


class PerGateway(Generic[S]):
    def __init__(self) -> None:
        self._services: weakref.WeakKeyDictionary[Any, S] = weakref.WeakKeyDictionary()

    def __getitem__(self, gateway: Any) -> S:
        return self._services[gateway]

    def get(self, gateway: Any) -> S | None:
        return self._services.get(gateway)

    def add(self, gateway: Any, service: S) -> S:
        self._services[gateway] = service
        return service

    def pop(self, gateway: Any) -> S | None:
        return self._services.pop(gateway, None)


def add_export_commands(cli: click.Group, *commands: click.Command) -> None:
    export = cli.commands.get("export")
    if isinstance(export, click.Group):
        for command in commands:
            export.add_command(command)
