"""Several UPS with several faults, end to end: BM-SM simulators on a
pseudo-terminal, the real poller and engine, the alarm engine, and the SNMP
notifications as snmptrapd receives them. Each faulty UPS gets one raise
trap and no clear while its fault lasts, however many polls pass; a UPS
that recovers clears on its own."""

from __future__ import annotations

import pytest
from btms_gateway.core.model import Quality, StringAlarm
from btms_gateway.kit.testing import GatewayHarness, plant_config
from snmp_support import V2C, TrapReceiver, agent_address, net_snmp, snmp_settings

pytestmark = pytest.mark.peer

ENGINE_ID = "80001f88046274657374"
RAISED, CLEARED = "btmsTrapAlarmRaised", "btmsTrapAlarmCleared"


def traps(rx: TrapReceiver, trap: str, alarm_id: str) -> int:
    """How many notifications of ``trap`` for ``alarm_id`` snmptrapd logged."""
    needle = f"btmsNotifAlarmId.0 = STRING: {alarm_id}"
    return sum(1 for r in rx.text().split("\n20") if trap in r and needle in r)


async def cycles(h: GatewayHarness, n: int) -> None:
    """Wait until the bus has polled every string ``n`` more times."""
    start = h.gateway.bus_status()[0].cycles
    await h.wait_until(
        lambda: h.gateway.bus_status()[0].cycles >= start + n, timeout=60, what=f"{n} bus cycles"
    )


@pytest.mark.slow  # ~9 s on a shared 2-core box
async def test_two_faulty_ups_one_alarm_each_no_flapping_cleared_per_ups() -> None:
    async with TrapReceiver() as rx:
        snmp = snmp_settings(receivers=[rx.receiver("noc")], engine_id=ENGINE_ID)
        # S1, S3 on UPS1; S2, S4 on UPS2 (plant_config spreads strings round robin)
        config = plant_config(strings=4, ups=2, plugins={"snmp": snmp})
        config["alarms"] = {"startup_grace_s": 3600}
        h = GatewayHarness(config, simulate=True, alarms=True, cells=12)
        async with h:
            await h.wait_quality(Quality.GOOD)
            set_alarms = {
                "S1": StringAlarm.VOLTAGE_LOW,  # UPS1: one string in error
                "S2": StringAlarm.SOC_LOW,  # UPS2: two strings, two causes
                "S4": StringAlarm.VOLTAGE_HIGH,
            }
            for name, bits in set_alarms.items():
                sim, slave = h.sim_for(name)
                sim.set_string(slave, alarms=int(bits))
            for ups in ("UPS1", "UPS2"):
                await rx.wait_for(RAISED, f"STRING: ups_string_error:{ups}")
            await cycles(h, 25)  # every string polled 25 more times with its fault
            for ups in ("UPS1", "UPS2"):
                assert traps(rx, RAISED, f"ups_string_error:{ups}") == 1, rx.text()
                assert traps(rx, CLEARED, f"ups_string_error:{ups}") == 0, rx.text()
            ups_events = [
                (e.kind.value, e.alarm_id)
                for e in h.gateway.events.events()
                if e.rule == "ups_string_error"
            ]
            assert sorted(ups_events) == [
                ("raised", "ups_string_error:UPS1"),
                ("raised", "ups_string_error:UPS2"),
            ]

            sim, slave = h.sim_for("S1")  # UPS1 recovers; UPS2 keeps S4's fault
            sim.set_string(slave, alarms=0)
            sim, slave = h.sim_for("S2")
            sim.set_string(slave, alarms=0)
            await rx.wait_for(CLEARED, "STRING: ups_string_error:UPS1")
            await cycles(h, 10)
            assert traps(rx, CLEARED, "ups_string_error:UPS1") == 1
            assert traps(rx, CLEARED, "ups_string_error:UPS2") == 0
            assert traps(rx, RAISED, "ups_string_error:UPS2") == 1
            walk = await net_snmp(
                "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmId"
            )
            assert walk.returncode == 0, walk.stderr
            active = [ln.split("STRING: ")[1] for ln in walk.stdout.splitlines()]
            assert [a for a in active if a.startswith("ups_")] == ["ups_string_error:UPS2"]
