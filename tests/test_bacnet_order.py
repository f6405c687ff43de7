"""A UPS object's present value never steps back to an older aggregate.

The BACnet plugin applies the UPS of the plant each reading brings. Readings
of one UPS's strings that pile up in the plugin's inbox (S1 at t1, S2 at t2,
S1 at t3, published before the plugin's task runs) must reach it in time
order, or the UPS objects would serve the t2 aggregate (with S1's t1 value)
after the t3 one, marked reliable. rusty-bacnet (independent) subscribes to
the UPS voltage and reads it after each burst.
"""

from __future__ import annotations

import pytest
from bacnet_support import PI, next_for, rid, rusty
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.bacnet.plugin import service

BURSTS = 5
STEP_V = 10.0  # far above the UPS voltage's COV increment (0.5 V)


async def test_a_ups_present_value_never_steps_back_under_coalescing() -> None:
    port = free_udp_port()
    section = {"address": f"127.0.0.1/8:{port}", "device_instance": 4321, "cells": "none"}
    data = plant_config(strings=2, ups=1, plugins={"bacnet": section})
    async with GatewayHarness(data) as h, rusty() as c:
        address = f"127.0.0.1:{port}"
        point = next(p for p in service(h.gateway).points if p.name == "UPS1.voltage")
        volts = rid(*point.oid)
        notifications = await c.cov_notifications()
        await c.subscribe_cov(address, 7, volts, True, 60)
        await next_for(notifications, volts)  # the initial notification
        stats = h.gateway.channels["bacnet"].stats
        voltage = 100.0
        served: list[float] = []
        for _ in range(BURSTS):
            offered = stats.readings_delivered + stats.readings_coalesced
            # no await in between: the three readings wait in the inbox together
            for name in ("S1", "S2", "S1"):
                voltage += STEP_V
                h.publish(name, make_reading(3, voltage_v=voltage))
            await h.wait_until(
                lambda n=offered: stats.readings_delivered + stats.readings_coalesced == n + 3,
                what="the burst to be delivered",
            )
            newest = h.gateway.store.snapshot.ups["UPS1"].voltage_v
            assert newest == pytest.approx(voltage - STEP_V / 2)  # mean of S1 (newest), S2
            read = await c.read_property(address, volts, PI.PRESENT_VALUE)
            assert read.value == pytest.approx(newest)
            while not served or served[-1] != pytest.approx(newest):
                served.append((await next_for(notifications, volts))["PRESENT_VALUE"])
        assert stats.readings_coalesced >= BURSTS  # the bursts did wait in the inbox
        assert served == sorted(served), served
