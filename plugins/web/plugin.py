"""The web northbound plugin: hook implementations only.

Registered through the ``btms_gateway`` entry point ``web`` like any
third-party plugin; enabled by a ``[plugins.web]`` table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from btms_gateway.core import hookimpl
from btms_gateway.core.alarm_types import AlarmEvent
from btms_gateway.core.model import StringSnapshot
from btms_gateway.core.plugin_services import PerGateway

from .commands import web_group
from .service import WebService
from .settings import WebSettings

NAME = "web"
_services: PerGateway[WebService] = PerGateway()


def service(gateway: Any) -> WebService:
    """The running service of ``gateway`` (tests read its port and URL)."""
    return _services[gateway]


@hookimpl
def register_config_sections(register: Callable[[str, type], None]) -> None:
    register(NAME, WebSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(web_group)


@hookimpl
async def startup(gateway: Any) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, WebSettings)
    svc = WebService(settings, gateway)
    await svc.start()
    _services.add(gateway, svc)


@hookimpl
async def shutdown(gateway: Any) -> None:
    svc = _services.pop(gateway)
    if svc is not None:
        await svc.stop()


@hookimpl
async def string_reading(string: StringSnapshot, gateway: Any) -> None:
    # on the gateway's loop (both hooks are async def): a history sample at most
    # and a note to the live hub, too little to be worth a thread switch per reading
    if (svc := _services.get(gateway)) is not None:
        svc.on_reading(string)


@hookimpl
async def alarm_event(event: AlarmEvent, gateway: Any) -> None:
    if (svc := _services.get(gateway)) is not None:
        svc.on_alarm(event)
