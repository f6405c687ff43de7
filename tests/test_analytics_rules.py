"""The alarm rules analytics feed, in simulated time: the simulator's string,
the analytics service and the real alarm engine on a real event log, reading
by reading. Resistance against the string median (a cell installed weak),
hotter than the median or the room, the thermal-runaway signature; each with
its delay and hysteresis."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from analytics_support import T0, rig
from btms_gateway.core.alarm_types import AlarmEvent, EventKind
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.analytics import AnalyticsSection, AnalyticsService
from btms_gateway.core.analytics.resistance import percent_over
from btms_gateway.core.model import PlantSnapshot, Quality, StringSnapshot
from btms_gateway.protocols.bmsm.simulator.model import StringModel


class Plant:
    """One simulated string through analytics and the alarm engine."""

    def __init__(self, tmp: Path, model: StringModel, alarms: dict, **analytics) -> None:
        self.model = model
        self.events: list[AlarmEvent] = []
        self.log = EventLog(tmp / "events.sqlite")
        self.engine = AlarmEngine(
            AlarmsSection.model_validate({"baseline_readings": 3, **alarms}),
            self.log,
            lambda event, active: self.events.append(event),
        )
        self.analytics = AnalyticsService(
            AnalyticsSection(**analytics),
            self.engine.settings,
            tmp,
            baselines=self.engine.baselines,
            note=self.engine.note,
        )
        self.t = T0

    def step(self, seconds: float = 1.0, count: int = 1) -> StringSnapshot:
        for _ in range(count):
            self.model.step(seconds)
            self.t += seconds
            raw = StringSnapshot(
                "A", 1, None, 0, 1, "b", Quality.GOOD, self.model.expected_reading(self.t), T0
            )
            snap = self.analytics.update(raw)
            self.engine.on_string(snap, PlantSnapshot({"A": snap}, {}))
            self.engine.tick(self.t)
        return snap

    def raised(self, rule: str) -> list[int | None]:
        return [e.path.cell for e in self.events if e.rule == rule and e.kind is EventKind.RAISED]

    def kinds(self, alarm_id: str) -> list[EventKind]:
        return [e.kind for e in self.events if e.alarm_id == alarm_id]


def _model(seed: int = 1, weak: list[int] | None = None, cells: int = 24) -> StringModel:
    return StringModel.create(1, cells, seed, weak_cells=weak, frozen=True)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_cell_installed_weak_is_flagged_against_the_median_not_its_baseline(
    tmp_path: Path, seed: int
) -> None:
    model = _model(seed)  # one cell drawn weak: +35 % resistance from the start
    p = Plant(tmp_path, model, {})
    p.step(1.0, 70)  # the 60 s on-delay of the resistance rules
    weak = model.weak_cell + 1
    assert p.raised("cell_resistance_median_warning") == [weak]
    assert p.raised("cell_resistance_median_alarm") == []
    assert p.raised("cell_resistance_warning") == []  # its own baseline is its weak value
    assert p.engine.baselines("A")[weak] == pytest.approx(model.cells[weak - 1].resistance_mohm)


def test_exactly_the_injected_weak_cells_are_flagged(tmp_path: Path) -> None:
    weak = [2, 9, 20]
    p = Plant(tmp_path, _model(7, weak), {})
    p.step(1.0, 70)
    assert sorted(p.raised("cell_resistance_median_warning")) == weak


def test_hotter_than_the_median_raises_after_its_delay_and_clears_past_the_band(
    tmp_path: Path,
) -> None:
    model = _model(3)
    p = Plant(tmp_path, model, {})
    aid = "cell_temperature_vs_median:A:5"
    median = p.step().derived["temperature_median_c"]
    model.set_cell(5, temperature_c=round(median + 6.0, 1))  # limit 5 C over the median
    p.step(1.0, 59)
    assert p.kinds(aid) == []  # the 60 s on-delay has not passed
    p.step(1.0, 2)
    assert p.kinds(aid) == [EventKind.RAISED]
    model.set_cell(5, temperature_c=round(median + 4.5, 1))  # in the 1 C hysteresis band
    p.step(1.0, 120)
    assert p.kinds(aid) == [EventKind.RAISED]
    model.set_cell(5, temperature_c=round(median + 3.0, 1))  # past the band: clears after 60 s
    p.step(1.0, 59)
    assert p.kinds(aid) == [EventKind.RAISED]
    p.step(1.0, 2)
    assert p.kinds(aid) == [EventKind.RAISED, EventKind.CLEARED]


def test_hotter_than_the_room_uses_the_ambient_sensor(tmp_path: Path) -> None:
    model = _model(3)
    fast = {"on_delay_s": 5, "off_delay_s": 5}
    p = Plant(tmp_path, model, {"rules": {"cell_temperature_vs_ambient": fast}})
    ambient = model.string["ambient_temperature_c"]
    for c in range(1, 25):  # the whole string warm: none hotter than its median
        model.set_cell(c, temperature_c=round(ambient + 11.0, 1))
    p.step(1.0, 10)
    assert sorted(p.raised("cell_temperature_vs_ambient")) == list(range(1, 25))
    assert p.raised("cell_temperature_vs_median") == []
    model.set_string(ambient_temperature_c=None)  # no room sensor: nothing to compare with
    p.step(1.0, 30)
    assert [e.kind for e in p.events if e.rule == "cell_temperature_vs_ambient"].count(
        EventKind.CLEARED
    ) == 0  # held, not cleared, without a value


def test_thermal_runaway_needs_the_float_current_rising_with_the_temperature(
    tmp_path: Path,
) -> None:
    model = _model(5)
    p = Plant(tmp_path, model, {}, runaway_window_s=400, runaway_current_rise_a=0.3)
    p.step(1.0, 420)
    assert p.raised("string_thermal_runaway") == []
    # the room warms the cells, the charger's current stays: no runaway
    for c in range(1, 25):
        model.set_cell(c, temperature_c=model.cells[c - 1].temperature_c + 4.0)
    p.step(1.0, 500)
    assert p.raised("string_thermal_runaway") == []
    model.runaway = 7  # current +0.12 A and the hot cell +0.6 C a minute
    rise = 0.0
    for _ in range(600):  # until the rise over the window passes the 3 C limit
        rise = p.step().derived["thermal_rise_c"] or 0.0
        if rise > 3.0:
            break
    assert rise > 3.0
    p.step(1.0, 58)
    assert p.raised("string_thermal_runaway") == []  # the 60 s on-delay
    p.step(1.0, 3)
    assert p.raised("string_thermal_runaway") == [None]
    model.runaway = None  # settled: the rise over the window falls past the 1 C band
    p.step(1.0, 800)
    kinds = p.kinds("string_thermal_runaway:A")
    assert kinds == [EventKind.RAISED, EventKind.CLEARED]


def test_the_demos_weak_cell_is_flagged(tmp_path: Path) -> None:
    """The demo's string A1 (slave 1, 120 cells, seed 1): its drawn weak cell,
    35 % above normal, shows about +0 % against its own learned baseline and
    is flagged against the median."""
    from btms_gateway.core.demo_plant import PLANT

    _, _, _, strings = PLANT[0]
    name, slave, cells, mode = strings[0]
    assert (name, cells, mode) == ("A1", 120, "float")
    model = StringModel.create(slave, cells, 1, mode, frozen=True)
    p = Plant(tmp_path, model, {})
    snap = p.step(1.0, 70)
    weak = model.weak_cell + 1
    assert p.raised("cell_resistance_median_warning") == [weak]
    assert snap.cell_derived["resistance_vs_median_pct"][weak - 1] > 25.0  # the limit
    assert abs(snap.cell_derived["resistance_vs_baseline_pct"][weak - 1]) < 1.0


def test_resistance_comparisons_follow_a_new_baseline_and_a_new_resistance() -> None:
    """The comparisons are reused while their inputs are equal: a baseline
    learned (changed in place) or one cell's new resistance must show at once."""
    baselines = {2: 1.0}
    rg = rig(cells=24, baselines=baselines)
    first = rg.feed()
    assert first.reading is not None
    assert first.cell_derived["resistance_vs_baseline_pct"][:3] == (
        None,
        percent_over(first.reading.cells[1].resistance_mohm, 1.0),
        None,
    )
    r1 = first.reading.cells[0].resistance_mohm
    assert r1 is not None
    baselines[1] = r1 / 2  # learned since: the same mapping, now with cell 1
    second = rg.feed(replace(first.reading, read_at=first.reading.read_at + 1))
    assert second.cell_derived["resistance_vs_baseline_pct"][0] == percent_over(r1, r1 / 2)
    cells = list(first.reading.cells)
    cells[2] = replace(cells[2], resistance_mohm=r1 * 3)
    third = rg.feed(replace(first.reading, cells=tuple(cells), read_at=first.reading.read_at + 2))
    median = third.derived["resistance_median_mohm"]
    assert third.cell_derived["resistance_vs_median_pct"] == tuple(
        percent_over(c.resistance_mohm, median) for c in cells
    )
    assert (
        third.cell_derived["resistance_vs_median_pct"][2]
        != (first.cell_derived["resistance_vs_median_pct"][2])
    )
