"""Registers the RTU link for the bus transports it speaks, through the same
hook a third-party transport would use: the engine knows no protocol, it opens
each bus with the factory registered for ``BusConfig.transport``."""

from __future__ import annotations

from collections.abc import Callable

from btms_gateway.core.api import LinkFactory, hookimpl

from .link import RtuLink

#: the transports of BusConfig that one RtuLink serves (it picks its byte transport)
TRANSPORTS = ("serial", "rtu-over-tcp")


@hookimpl
def register_bus_transports(register: Callable[[str, LinkFactory], None]) -> None:
    for name in TRANSPORTS:
        register(name, RtuLink)
