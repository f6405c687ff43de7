"""Property test of the threshold state machine through the whole engine:
random readings around a limit, random ticks in between."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from btms_gateway.core.alarm_types import AlarmEvent, EventKind
from btms_gateway.core.alarms import synthetic as sy
from btms_gateway.core.alarms.baseline import CellBaselines
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.evaluate import StringEval
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.alarms.rules import resolve
from btms_gateway.core.model import CellReading, Quality
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LIMIT, HYST, ON, OFF = 2.40, 0.05, 2.0, 1.0
VALUES = [2.30, 2.34, 2.35, 2.36, 2.38, 2.40, 2.401, 2.45, 2.60]
steps = st.lists(
    st.tuples(
        st.sampled_from([0.1, 0.3, 0.5, 1.0, 2.0, 3.0]),  # seconds to the next reading
        st.sampled_from(VALUES),
        st.booleans(),  # a tick halfway
    ),
    min_size=1,
    max_size=40,
)


def holds(raising: bool, v: float) -> bool:
    """Beyond the limit (for a raise) or past the hysteresis band (for a clear)."""
    return v > LIMIT if raising else v <= LIMIT - HYST


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_events_follow_the_readings(seq: list[tuple[float, float, bool]]):
    rule = {"limit": LIMIT, "hysteresis": HYST, "on_delay_s": ON, "off_delay_s": OFF}
    s = AlarmsSection.model_validate({"rules": {"cell_voltage_high": rule}})
    with tempfile.TemporaryDirectory() as d:
        events: list[AlarmEvent] = []
        engine = AlarmEngine(s, EventLog(Path(d) / "e.sqlite", synchronous="normal"), events.append)
        plant = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
        engine.restore(plant)
        t, readings = 1e9, []
        for dt, v, tick in seq:
            if tick:
                engine.tick(t + dt / 2)
            t += dt
            readings.append((t, v))
            snap = sy.string("A", sy.reading(t, sy.cells(4, v={1: v})))
            plant = sy.with_string(plant, snap)
            engine.on_string(snap, plant)
        engine.close()

    mine = [e for e in events if e.alarm_id == "cell_voltage_high:A:1"]
    assert len(mine) == len(events)
    # raised and cleared alternate, starting with a raise
    assert [e.kind for e in mine] == [
        EventKind.RAISED if i % 2 == 0 else EventKind.CLEARED for i in range(len(mine))
    ]
    for e in mine:
        upto = [(rt, v) for rt, v in readings if rt <= e.at]
        raising = e.kind is EventKind.RAISED
        delay = ON if raising else OFF
        # the condition held on every reading of the last `delay` seconds...
        run = []
        for rt, v in reversed(upto):
            if not holds(raising, v):
                break
            run.append(rt)
        assert run, f"{e.kind} at {e.at} without the condition in the last reading"
        assert e.at - min(run) >= delay - 1e-9, f"{e.kind} before its delay"
    # ...and the engine's view agrees with the log
    active = [a.alarm_id for a in engine.active()]
    assert active == (["cell_voltage_high:A:1"] if len(mine) % 2 else [])


class RecordingEval(StringEval):
    """Records which cells the per-cell loop sends down the slow path."""

    def __init__(self) -> None:
        super().__init__("S1", "UPS1", resolve(AlarmsSection(), "S1"), CellBaselines("S1", 3))
        self.slow: list[int] = []

    def _cell_slow(self, c: Any, t: float, out: list[Any]) -> None:
        self.slow.append(c.index)


def loop_only(ev: RecordingEval, cells: tuple[CellReading, ...]) -> list[int]:
    """What the per-cell loop alone would send down the slow path."""
    ev.slow = []
    quiet, ev._quiet = ev._quiet, lambda _cells: False  # type: ignore[method-assign]
    try:
        ev._cells(cells, 0.0, [])
    finally:
        ev._quiet = quiet  # type: ignore[method-assign]
    return ev.slow


INSIDE = {  # well inside every default raise limit
    "voltage_v": 2.2, "resistance_mohm": 0.05, "temperature_c": 25.0, "soc_pct": 80.0,
    "soh_pct": 95.0,
}  # fmt: skip


def edge(limit: float) -> st.SearchStrategy[float | None]:
    """Not measured, NaN, on the limit or just either side of it, or anything."""
    edges = [None, math.nan, limit, limit - 0.001, limit + 0.001]
    return st.one_of(st.sampled_from(edges), st.floats(-10.0, 200.0, allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), busy=st.sets(st.integers(1, 6), max_size=1))
def test_the_column_check_agrees_with_the_cell_loop(
    data: st.DataObject, n: int, busy: set[int]
) -> None:
    """Every value inside its limit but for up to two, each on an edge of it."""
    ev = RecordingEval()
    ev.busy = set(busy)
    ev.r_on = data.draw(st.dictionaries(st.integers(1, 6), st.floats(0.1, 5.0), max_size=6))
    values: list[dict[str, float | None]] = [dict(INSIDE) for _ in range(n)]
    for _ in range(data.draw(st.integers(0, 2))):
        i, name = data.draw(st.integers(0, n - 1)), data.draw(st.sampled_from(sorted(INSIDE)))
        limit = {
            "voltage_v": data.draw(st.sampled_from([ev.v_hi, ev.v_lo])),
            "resistance_mohm": ev.r_on.get(i + 1, 1.0),
            "temperature_c": ev.t_hi, "soc_pct": ev.soc_lo, "soh_pct": ev.soh_lo,
        }[name]  # fmt: skip
        values[i][name] = data.draw(edge(limit))
    cells = tuple(CellReading(index=i + 1, **v) for i, v in enumerate(values))  # type: ignore[arg-type]
    slow = loop_only(ev, cells)
    measured = None not in (x for v in values for x in v.values())
    if measured and not busy:  # decided in C: exactly when the loop finds nothing
        assert ev._quiet(cells) == (not slow)
    else:  # a value not measured or a condition in progress: the loop decides
        assert not ev._quiet(cells)
    ev.slow = []
    ev._cells(cells, 0.0, [])
    assert ev.slow == slow  # with the column check in front: the same cells


def limits_of(ev: StringEval) -> list[tuple[str, float]]:
    return [
        ("voltage_v", ev.v_hi), ("voltage_v", ev.v_lo), ("resistance_mohm", 0.5),
        ("temperature_c", ev.t_hi), ("soc_pct", ev.soc_lo), ("soh_pct", ev.soh_lo),
    ]  # fmt: skip


def test_each_value_on_each_side_of_its_limit_is_decided_as_the_loop_decides() -> None:
    """Every raise limit, one value at a time on it, just inside, just past, far
    either side, NaN and not measured; in a string of three, at the last cell."""
    ev = RecordingEval()
    ev.r_on = {1: 0.5, 2: 0.5, 3: 0.5}
    decided = 0
    for name, limit in limits_of(ev):
        for x in (None, math.nan, limit, limit - 0.001, limit + 0.001, -1e6, 1e6):
            values = [dict(INSIDE) for _ in range(3)]
            values[2][name] = x
            cells = tuple(CellReading(index=i + 1, **v) for i, v in enumerate(values))  # type: ignore[arg-type]
            slow = loop_only(ev, cells)
            assert ev._quiet(cells) == (x is not None and not slow), (name, limit, x)
            ev.slow = []
            ev._cells(cells, 0.0, [])
            assert ev.slow == slow
            decided += bool(slow)
    assert decided >= 12  # each limit crossed both ways at least
