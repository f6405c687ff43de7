"""Real alarms of the alarm engine as a BACnet client reads them: the BM-SM
simulators, the real poller and alarm engine, and rusty-bacnet (an
independent stack) reading event-state and status-flags. The current is
served signed (+ charge, - discharge), so a discharge-current alarm is a
low-limit of it and a charge-current alarm a high-limit."""

from __future__ import annotations

import pytest
from bacnet_support import PI, SIM_CELLS, _by_name, config, rid, rusty
from btms_gateway.core.alarms.rules import RULES
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness

pytestmark = pytest.mark.peer

NORMAL, HIGH_LIMIT, LOW_LIMIT = 0, 3, 4
IN_ALARM = 0x80  # status-flags is a bit string: in-alarm is its first bit


def test_limit_side_follows_the_served_value() -> None:
    assert RULES["string_current_discharge_high"].side == "low"
    assert RULES["string_current_charge_high"].side == "high"
    assert RULES["cell_voltage_low"].side == "low"
    assert RULES["bmsm_voltage_low"].side == "flag"


async def test_discharge_alarm_is_low_limit_and_charge_alarm_high_limit() -> None:
    port = free_udp_port()
    data = config(port)
    now = {"on_delay_s": 0, "off_delay_s": 0}
    data["alarms"] = {
        "startup_grace_s": 3600,
        "rules": {
            "string_current_discharge_high": {"limit": 40, "hysteresis": 1, **now},
            "string_current_charge_high": {"limit": 10, "hysteresis": 1, **now},
        },
    }
    h = GatewayHarness(data, simulate=True, alarms=True, cells=SIM_CELLS)
    for name, amps in (("S1", -42.5), ("S2", 12.0), ("S3", 0.8)):
        sim, slave = h.sim_for(name)
        sim.set_string(slave, current_a=amps)
    async with h:
        await h.wait_quality(Quality.GOOD, "S1", "S2", "S3")
        await h.wait_until(
            lambda: (
                {"string_current_discharge_high:S1", "string_current_charge_high:S2"}
                <= {a.alarm_id for a in h.gateway.alarms.active()}
            ),
            what="the current alarms of S1 and S2",
        )
        [raised] = [
            e for e in h.gateway.events.events() if e.rule == "string_current_discharge_high"
        ]
        assert (raised.value, raised.limit) == (42.5, 40.0)  # a magnitude against a magnitude
        address = f"127.0.0.1:{port}"
        points = _by_name(h)
        async with rusty() as c:
            s1, s2, s3 = (rid(*points[f"{n}.current"].oid) for n in ("S1", "S2", "S3"))
            assert (await c.read_property(address, s1, PI.PRESENT_VALUE)).value == -42.5
            assert (await c.read_property(address, s1, PI.EVENT_STATE)).value == LOW_LIMIT
            assert (await c.read_property(address, s2, PI.EVENT_STATE)).value == HIGH_LIMIT
            assert (await c.read_property(address, s3, PI.EVENT_STATE)).value == NORMAL
            flags = (await c.read_property(address, s1, PI.STATUS_FLAGS)).value
            assert flags["data"][0] == IN_ALARM
