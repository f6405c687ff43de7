"""End to end through the simulator: BM-SM simulator -> pty -> RTU poller ->
engine -> alarm engine -> SNMP plugin -> net-snmp's tools and snmptrapd."""

from __future__ import annotations

import pytest
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.snmp import plugin
from snmp_support import (
    BOTH_PATHS,
    V2C,
    V3,
    TrapReceiver,
    agent_address,
    net_snmp,
    snmp_settings,
)

pytestmark = pytest.mark.peer

ENGINE_ID = "80001f88046274657374"
ALARM = "cell_voltage_high:S1:5"
ALARM_TABLE = "BTMS-GATEWAY-MIB::btmsAlarmTable"


def sim_harness(
    *receivers: dict[str, object], cells: object = 12, fast_path: bool = True
) -> GatewayHarness:
    snmp = snmp_settings(receivers=list(receivers), engine_id=ENGINE_ID, fast_path=fast_path)
    config = plant_config(strings=2, ups=1, plugins={"snmp": snmp})
    # raise and clear at once, so the test waits for the poll and not for a delay
    config["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    return GatewayHarness(config, simulate=True, alarms=True, cells=cells)  # type: ignore[arg-type]


def hinted(value: float, decimals: int) -> str:
    """How net-snmp prints an integer with DISPLAY-HINT d-N (no leading 0)."""
    text = f"{value:.{decimals}f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


@BOTH_PATHS
async def test_v2c_and_v3_read_the_values_the_simulator_holds(fast_path: bool) -> None:
    async with sim_harness(cells={"S1": 120, "S2": 16}, fast_path=fast_path) as h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        sim.set_string(slave, current_a=-42.5)
        sim.set_cell(slave, 77, voltage_v=2.301, temperature_c=31.5)
        await h.wait_until(
            lambda: (r := h.gateway.store.string("S1").reading) is not None
            and r.cells[76].voltage_v == 2.301 and r.current_a == -42.5,
            timeout=15, what="the simulator's values to be polled",
        )  # fmt: skip
        expected = sim.expected(slave)
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsStringVoltage.1",
            "BTMS-GATEWAY-MIB::btmsStringCurrent.1",
            "BTMS-GATEWAY-MIB::btmsStringCellCount.1",
            "BTMS-GATEWAY-MIB::btmsCellVoltage.1.77",
            "BTMS-GATEWAY-MIB::btmsCellTemperature.1.77",
            "BTMS-GATEWAY-MIB::btmsStringQuality.1",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"btmsStringVoltage.1 = INTEGER: {hinted(expected.voltage_v, 2)} V" in r.stdout
        assert "btmsStringCurrent.1 = INTEGER: -42.50 A" in r.stdout
        assert "btmsStringCellCount.1 = Gauge32: 120" in r.stdout
        assert "btmsCellVoltage.1.77 = INTEGER: 2.301 V" in r.stdout
        assert "btmsCellTemperature.1.77 = INTEGER: 31.5 degrees Celsius" in r.stdout
        assert "btmsStringQuality.1 = INTEGER: good(1)" in r.stdout
        walk = await net_snmp(
            "snmpbulkwalk", *V3, "-Cr100", agent_address(), "BTMS-GATEWAY-MIB::btmsCellVoltage"
        )
        assert walk.returncode == 0, walk.stderr
        lines = walk.stdout.splitlines()
        assert len(lines) == 120 + 16
        s2 = sim.expected(h.sim_for("S2")[1])
        want = [
            f"btmsCellVoltage.1.{c.index} = INTEGER: {hinted(c.voltage_v, 3)} V"
            for c in expected.cells
        ]
        want += [
            f"btmsCellVoltage.2.{c.index} = INTEGER: {hinted(c.voltage_v, 3)} V" for c in s2.cells
        ]
        assert [ln.split("::", 1)[1] for ln in lines] == want


async def test_string_that_vanishes_goes_offline_and_comes_back() -> None:
    async with TrapReceiver() as rx, sim_harness(rx.receiver("noc")) as h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S2")
        sim.vanish(slave)
        offline = await rx.wait_for("btmsTrapStringOffline", timeout=30)
        assert "btmsStringName.2 = STRING: S2" in offline
        assert "btmsStringQuality.2 = INTEGER: offline(3)" in offline
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsStringQuality.2",
            "BTMS-GATEWAY-MIB::btmsStringStatus.2",
            "BTMS-GATEWAY-MIB::btmsCellVoltage.2.1",
        )  # fmt: skip
        assert "btmsStringQuality.2 = INTEGER: offline(3)" in r.stdout
        assert "btmsStringStatus.2 = INTEGER: error(2)" in r.stdout
        # the last good value stays readable, flagged by the row's quality
        assert "btmsCellVoltage.2.1 = INTEGER: " in r.stdout
        sim.restore(slave)
        online = await rx.wait_for("btmsTrapStringOnline", timeout=30)
        assert "btmsStringQuality.2 = INTEGER: good(1)" in online


async def alarm_round_trip(h: GatewayHarness, rx: TrapReceiver) -> None:
    """Force cell 5 of S1 over its limit in the simulator, then back."""
    await h.wait_quality(Quality.GOOD)
    sim, slave = h.sim_for("S1")
    sim.set_cell(slave, 5, voltage_v=2.55)
    raised = await rx.wait_for("btmsTrapAlarmRaised", ALARM, timeout=30)
    for expected in (
        "btmsNotifObject.0 = STRING: UPS1/S1/5",
        "btmsNotifSeverity.0 = INTEGER: alarm(2)",
        "btmsNotifValue.0 = STRING: 2.55",
        "btmsNotifLimit.0 = STRING: 2.4",
        "btmsNotifUnit.0 = STRING: V",
    ):
        assert expected in raised, raised
    sim.set_cell(slave, 5, voltage_v=2.25)
    cleared = await rx.wait_for("btmsTrapAlarmCleared", ALARM, timeout=30)
    assert "btmsNotifValue.0 = STRING: 2.25" in cleared


async def test_alarm_forced_in_simulator_v2c_trap_table_and_ack() -> None:
    async with TrapReceiver() as rx, sim_harness(rx.receiver("noc-v2c")) as h:
        await rx.wait_for("snmpTrapOID.0 = OID: SNMPv2-MIB::coldStart")
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        sim.set_cell(slave, 5, voltage_v=2.55)
        await rx.wait_for("btmsTrapAlarmRaised", ALARM, timeout=30)
        table = await net_snmp(
            "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmTable"
        )
        assert f"btmsAlarmId.1 = STRING: {ALARM}" in table.stdout, table.stdout
        assert "btmsAlarmAcknowledged.1 = INTEGER: false(2)" in table.stdout
        assert h.gateway.alarms.acknowledge(ALARM, "operator-7")
        acked = await rx.wait_for("btmsTrapAlarmAcknowledged", ALARM)
        assert "btmsNotifAckBy.0 = STRING: operator-7" in acked
        await h.wait_until(
            lambda: plugin.current().ctx.alarms[ALARM][1].acknowledged, what="ack in table"
        )
        table = await net_snmp(
            "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmTable"
        )
        assert "btmsAlarmAcknowledgedBy.1 = STRING: operator-7" in table.stdout
        sim.set_cell(slave, 5, voltage_v=2.25)
        await rx.wait_for("btmsTrapAlarmCleared", ALARM, timeout=30)
        await h.wait_until(lambda: not plugin.current().ctx.alarms, what="table emptied")
        table = await net_snmp(
            "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmTable"
        )
        assert "btmsAlarmId" not in table.stdout


async def test_alarm_forced_in_simulator_v3_trap() -> None:
    async with (
        TrapReceiver(engine_id_hex=ENGINE_ID) as rx,
        sim_harness(rx.receiver("noc", "v3")) as h,
    ):
        await alarm_round_trip(h, rx)


@pytest.mark.parametrize("version", ["v2c", "v3"])
async def test_alarm_forced_in_simulator_inform_is_acknowledged(version: str) -> None:
    async with TrapReceiver() as rx, sim_harness(rx.receiver("noc", version, "inform")) as h:
        await alarm_round_trip(h, rx)
        receiver = plugin.current().notifier.receivers[0]
        # an inform counts as sent only once snmptrapd's response arrived:
        # coldStart, raise, clear
        await h.wait_until(lambda: receiver.sent >= 3, what="acknowledged informs")
        assert receiver.failed == 0 and plugin.current().stats.informs_failed == 0
