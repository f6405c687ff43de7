"""Helpers shared by the Modbus TCP tests (no tests here): config, mbpoll, decoding.

Expected values always come from what the gateway holds (its snapshot),
decoded with the same map the server uses, so a test compares the wire
against the model, never against constants copied from the implementation.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.map import Point, decode, point
from conftest import require_tool

LINE = re.compile(r"^\[(\d+)\]:\s+(-?\d+)", re.M)
#: a test that talks to the server both ways: ``fast_path`` true (the plugin's
#: own answers, answer.py) and false (pymodbus's request handling): same wire
BOTH_PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "library"])


def modbus_config(strings: int = 4, ups: int = 2, **settings: Any) -> dict[str, Any]:
    """Published readings stay GOOD for a minute (the engine would mark them
    STALE after the default 2 s, making value tests depend on machine load)."""
    return plant_config(
        strings=strings,
        ups=ups,
        plugins={"modbus_tcp": {"port": 0, **settings}},
        stale_after_s=60.0,
    )


def port_of(harness: Any) -> int:
    return plugin.service(harness.gateway).port


async def mbpoll(
    port: int, unit: int, ref: int, count: int | None, *extra: str
) -> tuple[int, dict[int, int], str]:
    """Run Debian's mbpoll once (0-based references) and parse ``[ref]: value`` lines;
    ``count=None`` with values after "--" in ``extra`` writes them."""
    exe = require_tool("mbpoll", "mbpoll")
    proc = await asyncio.create_subprocess_exec(
        exe, "-m", "tcp", "-0", "-1", "-o", "2", "-p", str(port), "-a", str(unit),
        "-r", str(ref), *(["-c", str(count)] if count else []), "127.0.0.1", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode() + err.decode()
    values = {int(m[1]): int(m[2]) for m in LINE.finditer(out.decode())}
    return proc.returncode or 0, values, text


async def good_read(port: int, timeout: float = 3) -> list[int] | None:
    """A fresh well-behaved client (pymodbus): string 1's registers 0..1, or
    None when it was not served (refused, closed, timed out)."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    try:
        if not await client.connect():
            return None
        rr = await client.read_holding_registers(0, count=2, device_id=101)
        return None if rr.isError() else list(rr.registers)
    except Exception:  # refused: the server closed the connection
        return None
    finally:
        client.close()


def wire(name: str, regs: list[int], offset: int = 0, high_first: bool = True) -> float | int:
    """Decode one map point out of a block of registers read starting at ``offset``."""
    p: Point = point(name)
    start = p.offset - offset
    return decode(p, regs[start : start + p.words], high_first)


def close_to(value: float | int, expected: float | None, name: str) -> bool:
    """Equal within half a count of the point's resolution (the encoder rounds)."""
    p = point(name)
    assert expected is not None, f"{name}: the gateway holds no value"
    tolerance = (p.scale or 1) / 2 + 1e-9
    return abs(value - expected) <= tolerance


async def _publish_good(h: GatewayHarness) -> None:
    """S1: 120 cells discharging; S2 (same UPS): 4 cells charging."""
    h.publish("S1", make_reading(cells=120, current_a=-123.45, soc_pct=76.0), Quality.GOOD)
    h.publish("S2", make_reading(4, current_a=20.5), Quality.GOOD)
    svc = plugin.service(h.gateway)

    def units() -> dict:
        return svc.store.units

    await h.wait_until(
        lambda: units()[101].regs[1] == units()[102].regs[1] == units()[1].regs[0] == 1,
        what="status OK in the images of S1, S2 and UPS1",
    )
