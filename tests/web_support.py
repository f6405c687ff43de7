"""Helpers shared by the web plugin's tests (this module holds no tests).

``web_gateway`` starts a whole gateway with the web plugin on an ephemeral
port and, when asked, the real alarm engine writing a real SQLite event log,
so alarm tests go through the same path as production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from btms_gateway.core.model import Quality, StringReading
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.web.auth import hash_password, hash_token

PASSWORD = "correct horse battery staple"
TOKEN = "test-token-0123456789abcdef"
USERS = {"tech": hash_password(PASSWORD, n=2**10)}  # small N: fast tests, same code path
TOKENS = {"scada": hash_token(TOKEN)}


def reading(cells: int = 16, **changes: Any) -> StringReading:
    """make_reading with per-cell overrides: ``cell_5={"voltage_v": 2.6}``."""
    r = make_reading(cells)
    out = list(r.cells)
    for key in [k for k in changes if k.startswith("cell_")]:
        i = int(key[5:]) - 1
        out[i] = replace(out[i], **changes.pop(key))
    return replace(r, cells=tuple(out), **changes)


def manager() -> Any:
    """A plugin manager as the CLI builds it (every installed plugin)."""
    return create_manager()


@contextlib.asynccontextmanager
async def web_gateway(
    tmp_path: Path,
    *,
    strings: int = 4,
    ups: int = 2,
    web: dict[str, Any] | None = None,
    alarms: dict[str, Any] | None = None,
    extra_plugins: dict[str, object] | None = None,
    analytics: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[GatewayHarness, Any]]:
    """(harness, web service). ``alarms``: an ``[alarms]`` table to run the
    real alarm engine with (None: no alarm engine); ``extra_plugins``: more
    plugin objects by name (one that registers quantities, say); ``analytics``:
    an ``[analytics]`` table."""
    from btms_gateway.plugins.web.plugin import service

    config = plant_config(
        strings=strings,
        ups=ups,
        plugins={"web": {"port": 0, **(web or {})}},
        data_dir=str(tmp_path),
    )
    if alarms is not None:
        config["alarms"] = alarms
    if analytics is not None:
        config["analytics"] = analytics
    async with GatewayHarness(config, alarms=alarms is not None, extra_plugins=extra_plugins) as h:
        yield h, service(h.gateway)


async def get_json(url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:
        return r.status, await r.json(content_type=None)


async def post_json(url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, **kw) as r:
        return r.status, await r.json(content_type=None)


@contextlib.asynccontextmanager
async def sim_gateway(
    tmp_path: Path,
    cells: dict[int, int],
    *,
    ups: int = 2,
    web: dict[str, Any] | None = None,
    alarms: dict[str, Any] | None = None,
    analytics: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(gateway, web service, simulator): the BM-SM simulator on a real
    pseudo-terminal, polled by the real RTU link, poller and engine, with the
    real alarm engine; strings S1.. are slaves 1.. (``cells`` by slave) on one
    bus at 115200 baud. The simulator is frozen, so values stay exactly as set."""
    from btms_gateway.plugins.web.plugin import service

    config = plant_config(
        strings=len(cells),
        ups=ups,
        plugins={"web": {"port": 0, **(web or {})}},
        data_dir=str(tmp_path),
        stale_after_s=3.0,
    )
    config["alarms"] = alarms or {}
    if analytics is not None:
        config["analytics"] = analytics
    per_string = {f"S{slave}": n for slave, n in cells.items()}
    async with GatewayHarness(config, simulate=True, alarms=True, cells=per_string) as h:
        yield h.gateway, service(h.gateway), h.sim


#: alarms raised and cleared at once, for tests that act on an alarm
FAST = {"on_delay_s": 0, "off_delay_s": 0}
ALARMS = {"rules": {"cell_voltage_high": FAST}}
ALARM_ID = "cell_voltage_high:S1:3"


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def _raise_alarm(h) -> None:  # type: ignore[no-untyped-def]
    h.publish("S1", reading(4, cell_3={"voltage_v": 2.61}), Quality.GOOD)
    await h.wait_until(
        lambda: [a for a in h.gateway.alarms.active() if a.alarm_id == ALARM_ID],
        what="the alarm engine raises the cell alarm",
    )


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    name, data = None, None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name is not None:
            yield name, data
            name, data = None, None


async def _until(stream: AsyncIterator[tuple[str, Any]], predicate: Any) -> Any:
    """The first event for which predicate(name, data) holds (5 s deadline)."""

    async def scan() -> Any:
        async for name, data in stream:
            if predicate(name, data):
                return data
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), 5.0)
