"""An idle gateway's event loop sleeps until there is work.

On a VM each wake-up of a sleeping thread costs tens of microseconds of CPU
whatever the thread then does (docs/performance.md, "Where the CPU goes"),
so a timer that fires ten times a second for housekeeping is a real part of
the gateway's cost. pysnmp's dispatcher did exactly that (a 0.1 s tick) until
the agent set its tick to 1 s (plugins/snmp/agent.py). This counts the
loop's timer wake-ups with every plugin on and nothing to do, and fails
when any plugin (or the core) adds a fast periodic timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config

WINDOW_S = 4.0
#: the engine's watchdog and the alarm tick (1 s each), the agent's 1 s tick
MAX_WAKES_PER_S = 4.0


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_an_idle_gateway_with_every_plugin_wakes_its_loop_a_few_times_a_second() -> None:
    plugins = {
        "modbus_tcp": {"port": 0},
        "snmp": {"port": 0, "community": "public"},
        "bacnet": {"address": f"127.0.0.1/8:{free_udp_port()}"},
        "web": {"port": 0},
    }
    async with GatewayHarness(plant_config(strings=4, ups=2, plugins=plugins), alarms=True):
        selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        select = selector.select
        wakes = 0

        def counting(timeout: float | None = None) -> Any:
            nonlocal wakes
            events = select(timeout)
            if not events and (timeout is None or timeout > 0):
                wakes += 1  # slept and woke with no I/O: a timer
            return events

        selector.select = counting
        try:
            await asyncio.sleep(WINDOW_S)
        finally:
            selector.select = select
    rate = wakes / WINDOW_S
    assert rate <= MAX_WAKES_PER_S, f"the idle loop woke for timers {rate:.1f} times a second"
