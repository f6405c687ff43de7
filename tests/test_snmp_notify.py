"""The notifier's mechanics, as snmptrapd sees them: a dead receiver, failing
informs, a burst. Alarm events are emitted with ``gateway.emit`` (what the
alarm engine does when it commits one); test_snmp_sim.py forces real alarms
and string outages in the simulator.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.kit.events import active_alarm
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.snmp import plugin
from snmp_support import (
    V2C,
    TrapReceiver,
    agent_address,
    free_udp_port,
    net_snmp,
    snmp_settings,
)

pytestmark = pytest.mark.peer

ENGINE_ID = "80001f88046274657374"  # fixed, so snmptrapd can hold the v3 trap user


def harness(*receivers: dict[str, object], **settings: object) -> GatewayHarness:
    snmp = snmp_settings(receivers=list(receivers), engine_id=ENGINE_ID, **settings)
    return GatewayHarness(plant_config(strings=2, ups=1, plugins={"snmp": snmp}))


def event(kind: EventKind, seq: int = 1, value: float = 2.451, by: str | None = None) -> AlarmEvent:
    return AlarmEvent(
        seq=seq,
        kind=kind,
        alarm_id="cell_voltage_high:S1:7",
        rule="cell_voltage_high",
        severity=Severity.ALARM,
        path=ObjectPath("UPS1", "S1", 7),
        value=value,
        limit=2.40,
        unit="V",
        message=f"cell 7 voltage {kind.value}",
        at=time.time(),
        by=by,
    )


async def raise_and_clear(h: GatewayHarness, receiver: TrapReceiver) -> None:
    h.gateway.emit(event(EventKind.RAISED))
    raised = await receiver.wait_for("btmsTrapAlarmRaised")
    for expected in (
        "btmsNotifAlarmId.0 = STRING: cell_voltage_high:S1:7",
        "btmsNotifObject.0 = STRING: UPS1/S1/7",
        "btmsNotifSeverity.0 = INTEGER: alarm(2)",
        "btmsNotifValue.0 = STRING: 2.451",
        "btmsNotifLimit.0 = STRING: 2.4",
        "btmsNotifUnit.0 = STRING: V",
        "btmsNotifTime.0 = STRING: 20",
    ):
        assert expected in raised, raised
    h.gateway.emit(event(EventKind.CLEARED, seq=2, value=2.31))
    cleared = await receiver.wait_for("btmsTrapAlarmCleared")
    assert "btmsNotifValue.0 = STRING: 2.31" in cleared


async def test_dead_receiver_does_not_delay_another_nor_the_agent() -> None:
    dead = {
        "name": "dead",
        "port": free_udp_port(),
        "kind": "inform",
        "timeout_s": 30,
        "retries": 0,
    }
    async with TrapReceiver() as rx, harness(dead, rx.receiver("alive")) as h:
        await raise_and_clear(h, rx)
        receivers = {r.settings.name: r for r in plugin.current().notifier.receivers}
        # the live receiver got both while the dead one's informs are still unanswered
        assert receivers["dead"].sent == 0 and receivers["dead"].failed == 0
        r = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysUpTime.0")
        assert r.returncode == 0, r.stderr
        for seq in range(100):  # a burst: the agent keeps answering afterwards
            h.gateway.emit(event(EventKind.RAISED if seq % 2 == 0 else EventKind.CLEARED, seq))
        await rx.wait_for("btmsTrapAlarmCleared", "btmsNotifAlarmId.0")
        await h.wait_until(lambda: receivers["alive"].sent >= 103, what="burst delivered")
        r = await net_snmp(
            "snmpget", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsGwNotificationsSent.0"
        )
        assert r.returncode == 0, r.stderr


async def test_unacknowledged_informs_are_retried_then_counted() -> None:
    dead = {
        "name": "dead",
        "port": free_udp_port(),
        "kind": "inform",
        "timeout_s": 0.3,
        "retries": 1,
    }
    async with harness(dead) as h:
        h.gateway.emit(event(EventKind.RAISED))
        await h.wait_until(lambda: plugin.current().stats.informs_failed >= 2, what="failures")
        r = await net_snmp(
            "snmpget", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsGwInformsFailed.0"
        )
        assert r.returncode == 0 and "Counter32: " in r.stdout


async def test_the_alarm_table_serves_the_active_alarms_delivered_with_each_event() -> None:
    """btmsAlarmTable is the tuple delivered with each event (the alarms active
    after its commit), not a set kept from the events: the gateway here runs
    no alarm engine, so the agent saw neither the raise of ``other`` nor any
    clear; and an alarm keeps its row index while it stays active."""
    raised = event(EventKind.RAISED)
    other = replace(raised, alarm_id="cell_voltage_low:S2:3", path=ObjectPath("UPS1", "S2", 3))

    async def rows() -> dict[str, str]:
        r = await net_snmp(
            "snmpwalk", *V2C, "-On", agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmId"
        )
        assert r.returncode == 0, r.stderr
        return {line.split(" = STRING: ")[1]: line.split(" = ")[0].rsplit(".", 1)[1]
                for line in r.stdout.splitlines() if " = STRING: " in line}  # fmt: skip

    async with harness() as h:
        h.gateway.emit(raised, active=(active_alarm(other), active_alarm(raised)))
        await h.wait_until(lambda: len(plugin.current().ctx.alarms) == 2, what="the table")
        first = await rows()
        assert set(first) == {raised.alarm_id, other.alarm_id}
        # an acknowledgement never removes a row by itself: the delivered tuple does
        h.gateway.emit(
            replace(raised, kind=EventKind.ACKNOWLEDGED, seq=2), active=(active_alarm(other),)
        )
        await h.wait_until(lambda: len(plugin.current().ctx.alarms) == 1, what="one row")
        assert await rows() == {other.alarm_id: first[other.alarm_id]}  # the same row
        r = await net_snmp(
            "snmpget", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsGwActiveAlarms.0"
        )
        assert r.returncode == 0 and r.stdout.strip().endswith("Gauge32: 1"), r.stdout
