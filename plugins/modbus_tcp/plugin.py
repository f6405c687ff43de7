"""The Modbus TCP northbound plugin: hook implementations only.

Registered through the ``btms_gateway`` entry point ``modbus_tcp`` like any
third-party plugin; enabled by a ``[plugins.modbus_tcp]`` table.
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

from .export import modbus_map_command
from .service import ModbusService
from .settings import ModbusTcpSettings

NAME = "modbus_tcp"
_services: PerGateway[ModbusService] = PerGateway()


def service(gateway: Gateway) -> ModbusService:
    """The running service of ``gateway`` (tests and benchmarks read its port and stats)."""
    return _services[gateway]


@hookimpl
def register_config_sections(register: Callable[[str, type], None]) -> None:
    register(NAME, ModbusTcpSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    add_export_commands(cli, modbus_map_command)


@hookimpl
async def startup(gateway: Gateway) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, ModbusTcpSettings)
    svc = ModbusService(settings, gateway)
    await svc.start()
    _services.add(gateway, svc)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    svc = _services.pop(gateway)
    if svc is not None:
        await svc.stop()


# async def, so both run on the gateway's loop, where the image store is used
# (marking an image out of date is all they do: it is built on the next request)
@hookimpl
async def string_reading(string: StringSnapshot, plant: PlantSnapshot, gateway: Gateway) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_reading(string, plant)


@hookimpl
async def alarm_event(active: ActiveAlarms, gateway: Gateway) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_alarm(active)
