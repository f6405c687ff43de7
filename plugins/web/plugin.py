"""The web northbound plugin: hook implementations only.

Registered through the ``btms_gateway`` entry point ``web`` like any
third-party plugin; enabled by a ``[plugins.web]`` table.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from btms_gateway.core.api import (
    ActiveAlarms,
    AlarmEvent,
    Gateway,
    PerGateway,
    StringSnapshot,
    hookimpl,
)

from .commands import web_group
from .service import WebService
from .settings import WebSettings

NAME = "web"
_services: PerGateway[WebService] = PerGateway()


def service(gateway: Gateway) -> WebService:
    """The running service of ``gateway`` (tests read its port and URL)."""
    return _services[gateway]


@hookimpl
def register_config_sections(register: Callable[[str, type], None]) -> None:
    register(NAME, WebSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(web_group)


@hookimpl
async def startup(gateway: Gateway) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, WebSettings)
    svc = WebService(settings, gateway)
    await svc.start()
    _services.add(gateway, svc)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    svc = _services.pop(gateway)
    if svc is not None:
        await svc.stop()


@hookimpl
async def string_reading(string: StringSnapshot, gateway: Gateway) -> None:
    # on the gateway's loop (both hooks are async def): a history sample at most
    # and a note to the live hub, too little to be worth a thread switch per reading
    if (svc := _services.get(gateway)) is not None:
        svc.on_reading(string)


@hookimpl
async def alarm_event(event: AlarmEvent, active: ActiveAlarms, gateway: Gateway) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_alarm(event, active)
