"""Property test of the threshold state machine through the whole engine:
random readings around a limit, random ticks in between."""

from __future__ import annotations

import tempfile
from pathlib import Path

from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality
from btms_gateway.kit import synthetic as sy
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
        events = sy.Emitted()
        engine = AlarmEngine(s, EventLog(Path(d) / "e.sqlite", synchronous="normal"), events)
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
