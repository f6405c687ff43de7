"""Changes of shape (cells appearing and going, strings read for the first
time or losing their reading, alarm rows raised, acknowledged and cleared)
never let a request see an index of another shape, or half of one: after
each change, the very next requests (GETBULK over the whole subtree, GETNEXT
and GET of OIDs that exist before or after the change) are answered with
exactly the instances and values of the plant and alarms the plugin holds,
as test_snmp_index's sorted list of every instance enumerates them. The
change is applied through the plugin's own hooks and the request sent on a
UDP endpoint opened beforehand, so nothing else runs on the loop between
the change and the answer: an index rebuilt later, in steps or elsewhere,
would be caught serving the old shape or a mixture."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import pytest
from attack.snmp import v2c_message
from btms_gateway.core.alarm_types import ActiveAlarm, AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.model import Quality
from btms_gateway.kit.events import active_alarm
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.snmp import plugin
from btms_gateway.plugins.snmp.agent import READ_VIEW
from btms_gateway.plugins.snmp.image import ENCODERS
from btms_gateway.plugins.snmp.tables import DEFAULT_BASE, object_oids, parse_oid
from pyasn1.codec.ber import encoder
from pysnmp.entity import config
from snmp_rig import Answer, V2cEndpoint, model
from snmp_support import COMMUNITY, snmp_settings

pytestmark = pytest.mark.peer

BASE = parse_oid(DEFAULT_BASE)
OIDS = object_oids(BASE)
VOLATILE = (OIDS["btmsGwUptime"], OIDS["btmsStringDataAge"], OIDS["btmsUpsDataAge"])
STRINGS = ("S1", "S2", "S3", "S4")
VACM_MIB = (1, 3, 6, 1, 6, 3, 16)


def event(kind: EventKind, n: int) -> AlarmEvent:
    return AlarmEvent(
        seq=n, kind=kind, alarm_id=f"cell_voltage_high:S1:{n}", rule="cell_voltage_high",
        severity=Severity.WARNING, path=ObjectPath("UPS1", "S1", n), value=2.45 + n / 1000,
        limit=2.4, unit="V", message=f"cell {n}", at=time.time(), by="noc" if n % 2 else None,
    )  # fmt: skip


def masked(oid: tuple[int, ...], ber: bytes) -> tuple[tuple[int, ...], bytes]:
    """(name, value BER); of a value that changes by itself, its tag only."""
    return oid, ber[:1] if any(oid[: len(v)] == v for v in VOLATILE) else ber


def expected(ctx: Any) -> list[tuple[tuple[int, ...], bytes]]:
    return [masked(oid, encoder.encode(ENCODERS[base](raw))) for oid, raw, base in model(ctx)]


def ours(answer: Answer) -> list[tuple[tuple[int, ...], bytes]]:
    return [masked(oid, ber) for oid, _kind, ber in answer[3] if oid[: len(BASE)] == BASE]


async def walk(endpoint: V2cEndpoint) -> list[tuple[tuple[int, ...], bytes]]:
    """Our subtree, by GETBULKs of 120 repetitions (within one datagram)."""
    out: list[tuple[tuple[int, ...], bytes]] = []
    oid = BASE
    while True:
        answer = await endpoint.ask(v2c_message(COMMUNITY, "bulk", [oid], 0, 120))
        out += ours(answer)
        oid = answer[3][-1][0]
        if oid[: len(BASE)] > BASE:
            return out


class Plant:
    """Random changes of shape, applied through the plugin's hooks."""

    def __init__(self, h: GatewayHarness, rng: random.Random) -> None:
        self.h, self.rng = h, rng
        self.active: dict[int, ActiveAlarm] = {}  # the alarm engine's, by n

    def change(self) -> str:
        snmp, rng = plugin.current(), self.rng
        if rng.random() < 0.5:
            name = rng.choice(STRINGS)
            cells = rng.choice([None, 0, 1, 2, 5, 9])
            reading = None
            if cells is not None:
                reading = make_reading(cells, cell_voltage_v=2.0 + rng.random() / 4)
                if rng.random() < 0.3:  # a gap in the cell indexes (a sensor not found)
                    reading = replace(reading, cells=reading.cells[1:])
            self.h.publish(name, reading, rng.choice([Quality.GOOD, Quality.STALE]))
            store = self.h.gateway.store
            snmp.on_string(store.string(name), store.snapshot)  # as the hook does
            return f"{name}: {cells} cells"
        n = rng.randint(1, 60)
        if n in self.active:
            kind = rng.choice([EventKind.CLEARED, EventKind.ACKNOWLEDGED])
        else:
            kind = EventKind.RAISED
        e = event(kind, n)
        if kind is EventKind.CLEARED:
            del self.active[n]
        else:
            self.active[n] = active_alarm(e, e.by if kind is EventKind.ACKNOWLEDGED else None)
        snmp.on_alarm(e, tuple(self.active.values()))  # as the hook does
        return f"alarm {n} {kind.value}"


@pytest.mark.slow  # ~12 s on a shared 2-core box
async def test_every_answer_after_a_change_of_shape_is_of_the_new_shape() -> None:
    rng = random.Random(20240611)
    cfg = plant_config(
        strings=len(STRINGS), ups=2, stale_after_s=3600,
        plugins={"snmp": snmp_settings()},
    )  # fmt: skip
    async with GatewayHarness(cfg) as h:
        snmp = plugin.current()
        endpoint = await V2cEndpoint.open(snmp.agent.bound)  # type: ignore[arg-type]
        plant = Plant(h, rng)
        seen: list[tuple[int, ...]] = []
        try:
            for step in range(150):
                what = plant.change()
                whole = await walk(endpoint)
                want = expected(snmp.ctx)
                assert whole == want, f"step {step}, after {what}"
                seen = sorted(set(seen) | {oid for oid, _ber in want})
                probes = rng.sample(seen, min(3, len(seen)))
                get = await endpoint.ask(v2c_message(COMMUNITY, "get", probes, 0, 0))
                values = dict(want)
                for oid, kind, ber in get[3]:
                    if oid in values:
                        assert masked(oid, ber)[1] == values[oid], (step, what, oid)
                    else:  # gone with the change
                        assert kind in ("NoSuchInstance", "NoSuchObject"), (step, what, oid)
                start = rng.choice([*seen, BASE])
                nxt = await endpoint.ask(v2c_message(COMMUNITY, "next", [start], 0, 0))
                later = [w for w in want if w[0] > start]
                if later:
                    assert ours(nxt) == later[:1], (step, what, start)
        finally:
            endpoint.close()
        assert len(seen) > 300  # the changes did reach many shapes


async def test_the_end_of_pysnmps_tree_is_remembered_until_its_tree_changes() -> None:
    """A GETBULK past snmpEngineMaxMessageSize.0 (pysnmp's last readable
    object) ends in endOfMibView after a walk through all of pysnmp's hidden
    tables; the fast path remembers that, and forgets it when a view changes
    (here: the read view gains pysnmp's VACM tables)."""
    cfg = plant_config(strings=1, ups=1, stale_after_s=3600, plugins={"snmp": snmp_settings()})
    last = (1, 3, 6, 1, 6, 3, 10, 2, 1, 4, 0)
    async with GatewayHarness(cfg) as h:
        snmp = plugin.current()
        h.publish("S1", make_reading(2), Quality.GOOD)
        endpoint = await V2cEndpoint.open(snmp.agent.bound)  # type: ignore[arg-type]

        async def both(m: int) -> Answer:
            message = v2c_message(COMMUNITY, "bulk", [last], 0, m)
            snmp.agent.bulk.fast = False
            reference = await endpoint.ask(message)
            snmp.agent.bulk.fast = True
            answer = await endpoint.ask(message)
            assert answer == reference
            return answer

        try:
            ends = snmp.agent.controller.end_of_view
            first = await both(3)
            assert [kind for _o, kind, _b in first[3]] == ["EndOfMibView"] * 3
            before = ends.remembered
            assert (await both(3)) == first and ends.remembered == before + 1
            config.add_vacm_view(snmp.agent.engine, READ_VIEW, "included", VACM_MIB, "")
            later = await both(5)
            assert all(oid[: len(VACM_MIB)] == VACM_MIB for oid, _k, _b in later[3])
            assert ends.remembered == before + 1
        finally:
            endpoint.close()
