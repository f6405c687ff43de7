"""The BACnet image (plugins/bacnet/image.py) against a plain reference model.

The device serves its objects as views resolved from the image, which keeps
no copy of a reading unless the reading has gaps (a lost sensor, a value not
measured, fewer cells than objects). This checks, over random sequences of
readings and qualities, that every object serves exactly what the
straightforward rule gives: the last measured value (never invented), and
reliability from the string quality, no-sensor for what is not measured now.
It also checks that a subscribed (live) object tells its monitors about every
change, old and new value, once. No network: the wire is tested in
test_bacnet_device.py and test_bacnet_cov.py.
"""

from __future__ import annotations

import time
from dataclasses import replace
from statistics import fmean
from typing import Any

import pytest
from bacpypes3.primitivedata import ObjectIdentifier
from btms_gateway.core import api
from btms_gateway.core.alarm_types import ObjectPath
from btms_gateway.core.model import CellReading, CellStatus, Quality, StringSnapshot
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.bacnet.image import (
    COMM_FAILURE,
    NO_FAULT,
    NO_SENSOR,
    NORMAL,
    QUALITY_RELIABILITY,
    Image,
)
from btms_gateway.plugins.bacnet.objects import Layout, build_points
from hypothesis import given, settings
from hypothesis import strategies as st

CELLS = 6
LAYOUT = Layout(ups=(("UPS1", 1),), strings=(("S1", 1, "UPS1"), ("S2", 2, "UPS1")))
POINTS = build_points(LAYOUT, cells_per_string=CELLS)
SUMMARY = build_points(LAYOUT, cells="summary")
CELL_FIELDS = ("voltage_v", "resistance_mohm", "temperature_c", "soc_pct", "soh_pct")


def _cell_energy(c: CellReading) -> float | None:
    return None if c.voltage_v is None else round(3 * c.voltage_v, 3)


#: a plugin's cell quantity (registered through register_quantities): an object per
#: cell read by its ``read``, not by a reading field
ENERGY = api.Quantity("energy", api.Level.CELL, "", 0.001, False, "number", api.Role.MEASURED,
                      "stored energy", _cell_energy)  # fmt: skip
TABLE = (*api.QUANTITIES, ENERGY)
REGISTERED = build_points(LAYOUT, cells_per_string=CELLS, table=TABLE)
REGISTERED_SUMMARY = build_points(LAYOUT, cells="summary", table=TABLE)
DEFAULTS = {"analogInput": 0.0, "binaryInput": False}


class Reference:
    """The rule, object by object, the way the first image applied it. A status
    object (quality, status) serves its value with no fault whatever the string's
    quality; a data-age object (its value is the age when read) is checked apart."""

    def __init__(self, points: list[Any]) -> None:
        self.points = points
        self.value: dict[int, Any] = {}
        self.reliability: dict[int, Any] = {}
        for k, p in enumerate(points):
            if p.quantity is not None and not p.quantity.age:
                self.value[k] = DEFAULTS.get(p.kind, len(p.quantity.states))
                # the gateway's own objects are never a string's: never unreliable
                self.reliability[k] = NO_FAULT if p.scope == "gateway" else COMM_FAILURE

    def apply(self, string: StringSnapshot) -> None:
        points = self.points
        mine = [k for k in self.value if points[k].string == string.name]
        status = [k for k in mine if points[k].quantity.status]
        for k in status:
            self.value[k], self.reliability[k] = points[k].quantity.source(string), NO_FAULT
        mine = [k for k in mine if k not in status]
        r = string.reading
        if r is None:
            for k in mine:
                self.reliability[k] = COMM_FAILURE
            return
        fault = QUALITY_RELIABILITY[string.quality]
        cells = {c.index: c for c in r.cells}  # a repeated index: the last one counts
        for k in mine:
            p = points[k]
            q = p.quantity
            assert q is not None
            if p.scope == "string":
                assert callable(q.source)
                v = q.source(string)
                missing = v is None
            elif p.scope == "summary":
                found = [x for c in r.cells if (x := _cell_value(q, c)) is not None]
                stats = {"min": min, "max": max, "mean": fmean}
                v = stats[str(p.stat)](found) if found else None
                missing = v is None
            else:
                cell = cells.get(p.cell)
                v = None if cell is None else _cell_value(q, cell)
                missing = cell is None or v is None or bool(cell.status & CellStatus.SENSOR_LOST)
            if v is not None:
                self.value[k] = v
            self.reliability[k] = fault or (NO_SENSOR if missing else NO_FAULT)


def _cell_value(q: Any, cell: CellReading) -> Any:
    """A cell object's value: a field of the cell (core's), or the quantity's read (a plugin's)."""
    return q.source(cell) if callable(q.source) else getattr(cell, str(q.source))


@st.composite
def cell_tuples(draw: Any) -> tuple[CellReading, ...]:
    """Cells as a poll may deliver them: complete (the usual case), complete
    but with lost sensors (values kept or all None, as the decoder does),
    with values not measured, fewer or more cells than objects, or a
    repeated index."""
    how = draw(st.sampled_from(["complete", "lost", "gaps", "count", "repeat"]))
    count = draw(st.integers(0, CELLS + 2)) if how in ("count", "gaps") else CELLS
    base = draw(st.floats(1.9, 2.4))
    cells = list(make_reading(max(count, 1), cell_voltage_v=base).cells[:count])
    for i, cell in enumerate(cells):
        if how == "lost" and draw(st.integers(0, 2)) == 0:
            cleared = dict.fromkeys(CELL_FIELDS) if draw(st.booleans()) else {}
            cells[i] = replace(cell, status=CellStatus.SENSOR_LOST, **cleared)
        elif how == "gaps":
            gaps = draw(st.sets(st.sampled_from(CELL_FIELDS), max_size=2))
            cells[i] = replace(cell, status=draw(st.sampled_from(list(CellStatus))),
                               **dict.fromkeys(gaps))  # fmt: skip
    if how == "repeat" and cells:
        cells.append(replace(cells[0], voltage_v=1.5))  # index 1 twice: the last one counts
    return tuple(cells)


@st.composite
def snapshots(draw: Any) -> StringSnapshot:
    name = draw(st.sampled_from(["S1", "S2"]))
    quality = draw(st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.STALE, Quality.OFFLINE]))
    base = StringSnapshot(name, int(name[1]), "UPS1", 1, 1, "b", quality, None, 0.0)
    if draw(st.integers(0, 9)) == 0:
        return base  # never read
    reading = replace(
        make_reading(1),
        cells=draw(cell_tuples()),
        ambient_temperature_c=draw(st.one_of(st.none(), st.floats(-10, 40))),
        relay_closed=draw(st.one_of(st.none(), st.booleans())),
    )
    return replace(base, reading=reading)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([POINTS, SUMMARY, REGISTERED, REGISTERED_SUMMARY]),
    st.lists(snapshots(), min_size=1, max_size=12),
    st.data(),
)
@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_every_object_serves_what_the_reference_rule_gives(
    points: list[Any], steps: list[Any], data: Any
) -> None:
    image, ref = Image(points), Reference(points)
    watched = data.draw(st.sets(st.sampled_from(sorted(ref.value)), max_size=6))
    calls: dict[tuple[int, str], list[tuple[Any, Any]]] = {}
    views = {}
    for k in watched:  # a COV subscriber binds to the view's monitors
        view = views[k] = image.view(k)
        for attr in ("presentValue", "reliability"):
            log = calls[(k, attr)] = []
            view._property_monitors[attr].append(lambda old, new, log=log: log.append((old, new)))
    for snap in steps:
        before = {k: (views[k].presentValue, views[k].reliability) for k in watched}
        image.apply_string(snap)
        ref.apply(snap)
        for k in ref.value:
            name = points[k].name
            assert image.view(k).presentValue == _typed(points[k].kind, ref.value[k]), name
            assert image.reliability(k) == ref.reliability[k], name
        for k in watched:
            assert image.view(k) is views[k]  # the live view is the one served
            for n, attr in enumerate(("presentValue", "reliability")):
                now = getattr(views[k], attr)
                log = calls[(k, attr)]
                if now != before[k][n]:
                    assert log == [(before[k][n], now)], (points[k].name, attr)
                else:
                    assert log == [], (points[k].name, attr)
                log.clear()


def _typed(kind: str, value: Any) -> Any:
    if kind == "binaryInput":
        return 1 if value else 0
    return float(value) if kind == "analogInput" else int(value)


def test_a_registered_cell_quantity_has_an_object_per_cell() -> None:
    """At the next offset of each cell's block (5), an analog input named after its
    key; in summary mode its min, max and mean per string."""
    names = {p.name: p for p in REGISTERED}
    p = names["S2.cell003.energy"]
    assert (p.kind, p.instance) == ("analogInput", 1_000_000 + 10_000 * 2 + 10 * 3 + 5)
    assert len(REGISTERED) == len(POINTS) + 2 * CELLS
    assert {"S1.cells.energy.min", "S1.cells.energy.max", "S1.cells.energy.mean"} <= {
        q.name for q in REGISTERED_SUMMARY
    }


def test_alarms_set_and_clear_event_state_by_object() -> None:
    image = Image(POINTS)
    by_name = {p.name: k for k, p in enumerate(POINTS)}
    cell = by_name["S2.cell004.temperature"]
    view = image.view(cell)
    seen: list[tuple[Any, Any]] = []
    view._property_monitors["eventState"].append(lambda old, new: seen.append((old, new)))
    path = ObjectPath(ups="UPS1", string="S2", cell=4)
    image.raise_alarm("a", "cell_temperature_high", path)
    assert view.eventState == 3 and list(view.statusFlags) == [1, 1, 0, 0]  # never read: fault
    image.raise_alarm("b", "ups_string_error", ObjectPath(ups="UPS1"))
    assert {POINTS[k].name for k in image.alarms} == {
        "S2.cell004.temperature", "UPS1.voltage", "UPS1.current", "UPS1.soc"
    }  # fmt: skip
    image.clear_alarm("a")
    assert view.eventState == NORMAL and seen == [(NORMAL, 3), (3, NORMAL)]
    assert image.objects_for("cell_voltage_high", ObjectPath(string="S2", cell=99)) == []
    assert image.objects_for("string_comm_lost", ObjectPath(string="S2")) == []


def test_gateway_alarm_sets_the_gateway_object_active_and_in_alarm() -> None:
    image = Image(POINTS)
    k = next(k for k, p in enumerate(POINTS) if p.name == "gateway.event_log_failing")
    assert POINTS[k].oid == ("binaryInput", 1)
    view = image.view(k)
    seen: list[tuple[Any, Any]] = []
    view._property_monitors["presentValue"].append(lambda old, new: seen.append((old, new)))
    assert str(view.presentValue) == "inactive" and view.eventState == NORMAL
    assert list(view.statusFlags) == [0, 0, 0, 0]  # no string behind it: never a fault
    image.raise_alarm("event_log_failing:gateway", "event_log_failing", ObjectPath())
    assert str(view.presentValue) == "active" and view.eventState == 2  # offnormal
    assert list(view.statusFlags) == [1, 0, 0, 0]
    image.clear_alarm("event_log_failing:gateway")
    assert str(view.presentValue) == "inactive" and view.eventState == NORMAL
    assert len(seen) == 2  # a COV subscriber hears both


def test_lookups_by_identifier_and_name() -> None:
    image = Image(POINTS)
    for k, p in enumerate(POINTS):
        assert image.index_of_id(p.oid) == k
        assert image.index_of_name(p.name) == k
        assert image.object_identifier(k) == ObjectIdentifier(p.oid)
    assert image.index_of_id(("analog-input", POINTS[0].instance)) == 0
    assert image.index_of_id(("analogInput", 5)) is None
    assert image.index_of_id("nonsense") is None
    assert image.index_of_name("S9.voltage") is None
    assert image.index_of_name(17) is None


def test_a_view_is_kept_while_bound_and_let_go_after() -> None:
    """Only objects with COV detection bound stay in memory between requests."""
    image = Image(POINTS)
    k = next(k for k, p in enumerate(POINTS) if p.name == "S1.cell002.soc")
    assert image.view(k) is not image.view(k)  # unwatched: made per request
    view = image.view(k)
    monitor = view._property_monitors["presentValue"]
    monitor.append(print)
    assert image.view(k) is view and k in image.live
    monitor.remove(print)  # the subscription ended (bacpypes3 unbinds its monitors)
    reading = make_reading(CELLS)
    image.apply_string(StringSnapshot("S1", 1, "UPS1", 1, 1, "b", Quality.GOOD, reading, 0.0))
    assert k not in image.live and image.view(k) is not view


def test_status_objects_and_the_data_age_serve_while_the_string_is_stale() -> None:
    """The gaps the quantity table filled (string status, quality, data age, SOH,
    cell count): status values and the age are current (no fault) while the string
    is stale; its measured values (SOH, cell count) say unreliable."""
    image = Image(POINTS)
    k = {p.name: k for k, p in enumerate(POINTS)}
    reading = make_reading(CELLS, read_at=time.time() - 100)
    image.apply_string(StringSnapshot("S1", 1, "UPS1", 1, 1, "b", Quality.STALE, reading, 0.0))
    assert 100 <= image.view(k["S1.data_age"]).presentValue < 160
    assert image.view(k["S1.quality"]).presentValue == 2  # good, stale, offline
    assert image.view(k["S1.status"]).presentValue == 3  # disabled, ok, error
    for name in ("S1.data_age", "S1.quality", "S1.status"):
        assert image.reliability(k[name]) == NO_FAULT, name
    assert image.view(k["S1.soh"]).presentValue == reading.soh_pct
    assert image.view(k["S1.cell_count"]).presentValue == CELLS
    stale = QUALITY_RELIABILITY[Quality.STALE]
    assert image.reliability(k["S1.soh"]) == image.reliability(k["S1.cell_count"]) == stale
    never = StringSnapshot("S2", 2, "UPS1", 1, 1, "b", Quality.OFFLINE, None, 0.0)
    image.apply_string(never)
    assert image.reliability(k["S2.data_age"]) == COMM_FAILURE  # no age: never read
    assert image.view(k["S2.quality"]).presentValue == 3
    assert image.reliability(k["S2.quality"]) == NO_FAULT
