"""The agent's index against the plainest possible model of it: every instance
OID of every present value, enumerated from the MIB tables and sorted (what
the index held until it was split per table). Random plants (strings never
read, cells with gaps in their indexes and absent values, alarm indexes past
127, whose BER takes two octets), random OIDs anywhere; and an incremental
rebuild after a change of plant or alarms equals a rebuild from scratch."""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import replace
from typing import Any

import pytest
from btms_gateway.core.alarm_types import ActiveAlarm, ObjectPath, Severity
from btms_gateway.core.model import (
    DeviceStatus,
    PlantSnapshot,
    Quality,
    StringSnapshot,
    UpsSnapshot,
)
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.snmp.image import (
    ENCODERS,
    ServeContext,
    after,
    build_index,
    encode,
    find,
    name_at,
    raw_at,
    segment_of,
    values,
)
from btms_gateway.plugins.snmp.tables import DEFAULT_BASE, object_oids, parse_oid
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pysnmp.proto import rfc1905
from snmp_rig import model

BASE = parse_oid(DEFAULT_BASE)
NAMES = object_oids(BASE)


def string(index: int, cells: list[int] | None, hole: int) -> StringSnapshot:
    reading = None
    if cells is not None:
        r = make_reading(len(cells))
        cs = tuple(
            replace(c, index=i, temperature_c=None if i % hole == 0 else c.temperature_c)
            for c, i in zip(r.cells, cells, strict=True)
        )
        reading = replace(r, cells=cs, ambient_humidity_pct=None if hole % 2 else 40.0)
    return StringSnapshot(f"S{index}", index, "UPS1", 1, index, "bus1", Quality.GOOD, reading, 0.0)


def alarm(n: int) -> ActiveAlarm:
    return ActiveAlarm(f"a{n}", "cell_voltage_high", Severity.ALARM, ObjectPath("UPS1", "S1", n),
                       2.5, 2.4, "V", "high", time.time())  # fmt: skip


plants = st.dictionaries(
    st.integers(1, 32),
    st.tuples(
        st.none() | st.lists(st.integers(1, 200), max_size=12, unique=True).map(sorted),
        st.integers(2, 5),
    ),
    max_size=5,
)
alarm_sets = st.lists(st.integers(1, 400), max_size=6, unique=True)


def context(plant: dict[int, Any], alarms: list[int]) -> ServeContext:
    strings = {f"S{i}": string(i, cells, hole) for i, (cells, hole) in sorted(plant.items())}
    ups = {"UPS1": UpsSnapshot("UPS1", 1, tuple(strings), 48.0, None, 80.0, Quality.GOOD,
                               DeviceStatus.OK, None)}  # fmt: skip
    return ServeContext(
        plant=PlantSnapshot(strings=strings, ups=ups),
        gateway_name="gw",
        version="0",
        uptime_s=lambda: 12.0,
        counters=lambda name: None,
        alarms={f"a{n}": (n, alarm(n)) for n in alarms},
    )


oids = st.one_of(
    st.sampled_from(sorted(NAMES.values())).flatmap(
        lambda o: st.lists(st.integers(0, 300), max_size=3).map(lambda t: (*o, *t))
    ),
    st.lists(st.integers(0, 2**32 + 5), min_size=1, max_size=16).map(lambda t: (*BASE, *t)),
    st.lists(st.integers(0, 12), min_size=2, max_size=12).map(tuple),
)


def same(index: Any, ctx: ServeContext) -> None:
    expected = model(ctx)
    names = [name_at(index, p) for p in range(index.size)]
    present = [p for p in range(index.size) if raw_at(index, p, ctx) is not None]
    assert [names[p] for p in present] == [oid for oid, _, _ in expected]
    assert [raw_at(index, p, ctx) for p in present] == [raw for _, raw, _ in expected]
    assert names == sorted(names) and len(set(names)) == len(names)
    for p in present:  # the varbinds pyasn1 decodes are the names and values
        seg = segment_of(index, p)
        raw = raw_at(index, p, ctx)
        name, prebuilt = encode(seg, p - seg.start, raw)
        decoded, rest = decoder.decode(prebuilt.ber, asn1Spec=rfc1905.VarBind())
        assert rest == b"" and name == names[p] == tuple(decoded[0])
        assert decoded[1].getComponent(True) == ENCODERS[seg.obj.base](raw)


@pytest.mark.slow  # ~3 s on a shared 2-core box
@settings(max_examples=200, deadline=None)
@given(plants, alarm_sets, st.lists(oids, max_size=20))
def test_index_finds_what_the_sorted_list_of_instances_finds(
    plant: dict[int, Any], alarms: list[int], probes: list[tuple[int, ...]]
) -> None:
    ctx = context(plant, alarms)
    index = build_index(BASE, ctx)
    same(index, ctx)
    names = [name_at(index, p) for p in range(index.size)]
    for oid in probes + names[:: max(1, len(names) // 10)]:
        assert after(index, oid) == bisect_right(names, oid)
        assert find(index, oid) == (names.index(oid) if oid in names else None)
        pos = after(index, oid)
        if pos < index.size:  # what the fast path reads of the segment from there
            seg = segment_of(index, pos)
            end = seg.start + len(seg.rows.suffixes)
            got = [(seg.start + row, raw) for row, raw in values(seg, pos, ctx)]
            want = [(p, raw_at(index, p, ctx)) for p in range(pos, end)]
            assert got == [(p, raw) for p, raw in want if raw is not None]


@settings(max_examples=100, deadline=None)
@given(plants, alarm_sets, plants, alarm_sets)
def test_a_rebuild_of_the_changed_tables_equals_one_from_scratch(
    plant: dict[int, Any], alarms: list[int], plant2: dict[int, Any], alarms2: list[int]
) -> None:
    ctx = context(plant, alarms)
    first = build_index(BASE, ctx)
    later = context(plant, alarms2)  # only the alarms changed
    index = build_index(BASE, later, first, {"alarms"})
    assert index.tables["btmsCell"] is first.tables["btmsCell"]  # reused, not re-listed
    same(index, later)
    latest = context(plant2, alarms2)  # then the plant
    rebuilt = build_index(BASE, latest, index, {"plant"})
    assert rebuilt.tables["btmsAlarm"] is index.tables["btmsAlarm"]
    same(rebuilt, latest)
