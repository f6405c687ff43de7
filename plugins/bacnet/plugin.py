"""The BACnet/IP northbound plugin: hook implementations only.

Registered through the ``btms_gateway`` entry point ``bacnet`` like any
third-party plugin; enabled by a ``[plugins.bacnet]`` table. The runtime
hooks are ``async def`` so they run on the gateway's event loop, where
bacpypes3 lives.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from btms_gateway.core.api import (
    ActiveAlarms,
    Gateway,
    PerGateway,
    PlantSnapshot,
    StringSnapshot,
    add_export_commands,
    hookimpl,
)

from .export import bacnet_objects_command, ede_command
from .service import BacnetService
from .settings import BacnetSettings

NAME = "bacnet"
_services: PerGateway[BacnetService] = PerGateway()


def service(gateway: Gateway) -> BacnetService:
    """The running device of ``gateway`` (tests and benchmarks read it)."""
    return _services[gateway]


@hookimpl
def register_config_sections(register: Callable[[str, type], None]) -> None:
    register(NAME, BacnetSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    add_export_commands(cli, ede_command, bacnet_objects_command)


@hookimpl
async def startup(gateway: Gateway) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, BacnetSettings)
    svc = BacnetService(settings)
    await svc.start(
        gateway.store.snapshot, gateway.alarms.active(), gateway
    )  # then from each event
    _services.add(gateway, svc)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    svc = _services.pop(gateway)
    if svc is not None:
        svc.stop()


@hookimpl
async def string_reading(string: StringSnapshot, plant: PlantSnapshot, gateway: Gateway) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_reading(string, plant)


@hookimpl
async def alarm_event(active: ActiveAlarms, gateway: Gateway) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_alarm(active)
