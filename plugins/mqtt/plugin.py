"""The MQTT northbound plugin: hook implementations only.

Registered through the ``btms_gateway`` entry point ``mqtt``; enabled by a
``[plugins.mqtt]`` table. The runtime hooks are ``async def`` so the
gateway runs them on its loop without a thread of their own, and all they
do is hand the reading or event to the plugin's session thread (session.py),
where the encoding, the disk buffer and paho's client live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import click
from btms_gateway.core.api import (
    ActiveAlarms,
    AlarmEvent,
    Gateway,
    PerGateway,
    StringSnapshot,
    __version__,
    event_dict,
    hookimpl,
)

from .commands import mqtt_group
from .session import MqttSession
from .settings import MqttSettings

NAME = "mqtt"
#: seconds the stop may take of the gateway's shutdown budget
STOP_TIMEOUT_S = 1.2
_sessions: PerGateway[MqttSession] = PerGateway()


def session(gateway: Gateway) -> MqttSession:
    """The running session of ``gateway`` (tests and benches read its status)."""
    return _sessions[gateway]


@hookimpl
def register_config_sections(register: Callable[[str, type], None]) -> None:
    register(NAME, MqttSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(mqtt_group)


@hookimpl
async def startup(gateway: Gateway) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, MqttSettings)
    svc = MqttSession(
        settings,
        gateway_name=gateway.name,
        data_dir=gateway.data_dir,
        version=__version__,
        active=tuple(gateway.alarms.active()),  # at start; then each event brings its own
    )
    svc.plant.configured = frozenset(gateway.store.snapshot.strings)
    svc.start()
    _sessions.add(gateway, svc)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    svc = _sessions.pop(gateway)
    if svc is not None:
        await asyncio.to_thread(svc.stop, STOP_TIMEOUT_S)


@hookimpl
async def string_reading(string: StringSnapshot, gateway: Gateway) -> None:
    if (svc := _sessions.get(gateway)) is not None:
        svc.offer_reading(string)


@hookimpl
async def alarm_event(event: AlarmEvent, active: ActiveAlarms, gateway: Gateway) -> None:
    if (svc := _sessions.get(gateway)) is not None:
        svc.offer_event(event_dict(event), active)
