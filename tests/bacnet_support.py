"""Shared helpers of the BACnet/IP tests (no tests here): the plant a device
test runs (4 strings in 2 UPS, simulators on pseudo-terminals), the device on a
free UDP port, rusty-bacnet as the independent client, and bounded waits for
answers and COV notifications."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import rusty_bacnet as rb
from btms_gateway.core.gateway import NoAlarms
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.bacnet.plugin import service

DEVICE = 1234
CELLS = 12
PI = rb.PropertyIdentifier
OT = {"analogInput": rb.ObjectType.ANALOG_INPUT, "binaryInput": rb.ObjectType.BINARY_INPUT,
      "multiStateInput": rb.ObjectType.MULTI_STATE_INPUT,
      "structuredView": rb.ObjectType.STRUCTURED_VIEW, "device": rb.ObjectType.DEVICE,
      "networkPort": rb.ObjectType.NETWORK_PORT}  # fmt: skip


def config(port: int, offline_after: int = 2, **bacnet: Any) -> dict[str, Any]:
    section = {"address": f"127.0.0.1/8:{port}", "device_instance": DEVICE,
               "cells_per_string": CELLS, **bacnet}  # fmt: skip
    return plant_config(
        strings=4, ups=2, plugins={"bacnet": section}, offline_after_failures=offline_after
    )


#: S3 has two sensors fewer than the cell objects made per string
SIM_CELLS = {"S1": CELLS, "S2": CELLS, "S3": CELLS - 2, "S4": CELLS}


def sim(h: GatewayHarness, name: str) -> tuple[Any, int]:
    """(simulator, slave id) of a string."""
    return h.sim_for(name)


def truth(h: GatewayHarness, name: str) -> Any:
    """The reading the simulator of ``name`` holds now (its ground truth)."""
    simulator, slave = h.sim_for(name)
    return simulator.expected(slave)


@asynccontextmanager
async def device(
    offline_after: int = 2, active_alarms: tuple[Any, ...] = (), **bacnet: Any
) -> AsyncIterator[tuple[GatewayHarness, str]]:
    """A gateway polling simulators, BACnet plugin on a free port. S1
    discharges at 42.5 A with its aux input on; S4 never answers.
    ``active_alarms``: what the alarm service reports active at start-up."""
    port = free_udp_port()
    h = GatewayHarness(config(port, offline_after, **bacnet), simulate=True, cells=SIM_CELLS)
    if active_alarms:
        h.gateway.alarms = _ActiveAlarms(active_alarms)
    s1, slave1 = sim(h, "S1")
    s1.set_string(slave1, current_a=-42.5, state=2, aux_input_on=True)
    s4, slave4 = sim(h, "S4")
    s4.vanish(slave4)
    async with h:
        await h.wait_quality(Quality.GOOD, "S1", "S2", "S3")
        svc = service(h.gateway)
        await h.wait_until(lambda: _pv(svc, "S1.current") == -42.5, what="S1 served")
        yield h, f"127.0.0.1:{port}"


class _ActiveAlarms(NoAlarms):
    def __init__(self, active: tuple[Any, ...]) -> None:
        self._active = list(active)

    def active(self) -> list[Any]:
        return self._active


def _pv(svc: Any, name: str) -> Any:
    point = next(p for p in svc.points if p.name == name)
    return svc.objects[point.oid].presentValue


@asynccontextmanager
async def rusty() -> AsyncIterator[Any]:
    port = free_udp_port()
    async with rb.BACnetClient(
        interface="127.0.0.1", port=port, broadcast_address="127.255.255.255"
    ) as client:
        yield client


def rid(kind: str, instance: int) -> Any:
    return rb.ObjectIdentifier(OT[kind], instance)


def served_ids(h: GatewayHarness) -> set[tuple[str, int]]:
    points = service(h.gateway).points
    return {*(p.oid for p in points), ("device", DEVICE), ("networkPort", 1)}


async def poll(fetch: Any, timeout: float = 3.0, what: str = "an answer") -> Any:
    """Await ``fetch()`` until it returns something truthy, bounded by ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _by_name(h: GatewayHarness) -> dict[str, Any]:
    return {p.name: p for p in service(h.gateway).points}


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for plant_config() dicts (tables, arrays of tables, scalars)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(_toml(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in item.items() if v is not None)
                tables.append(f"[[{prefix}{key}]]\n{body}")
        elif value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and lines else ""
    return "\n\n".join(x for x in [head + "\n".join(lines), *tables] if x.strip())


async def next_for(it: Any, monitored: Any, timeout: float = 3.0) -> dict[str, Any]:
    """The next notification about ``monitored``: {property name: value}."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no COV notification for {monitored} within {timeout} s")
        n = await asyncio.wait_for(it.__anext__(), left)
        if n.monitored_object_identifier == monitored:
            return {str(v["property_id"]).split(".")[-1]: v["value"].value for v in n.values}
