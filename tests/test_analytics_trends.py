"""Resistance trends and the projected date a cell crosses its alarm limit,
on a history store filled in simulated time (months of hourly readings in
seconds), both from the files (CLI, reports) and in the running service."""

from __future__ import annotations

from pathlib import Path

import pytest
from analytics_support import history_service, site_settings
from btms_gateway.core.alarms import baseline
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.analytics.health import from_files
from btms_gateway.core.analytics.resistance import MONTH_S
from btms_gateway.protocols.bmsm.simulator.model import StringModel

DAY = 86400.0
START = 1_790_000_000.0
DAYS = 120
CREEP = 0.001  # mOhm a day on the ageing cell: +50 % after about 220 days


def _fill(data_dir: Path) -> tuple[StringModel, float]:
    """Six-hourly readings for 120 days: cell 5 creeps up, the others stay."""
    model = StringModel.create(1, 24, seed=2, weak_cells=[], frozen=True)
    base5 = model.cells[4].resistance_mohm
    h = history_service(data_dir)
    t = START
    for step in range(DAYS * 4):
        t = START + step * DAY / 4
        model.set_cell(5, resistance_mohm=round(base5 + CREEP * (t - START) / DAY, 3))
        h.write("S1", model.expected_reading(read_at=t))
    assert h.sync(120)
    h.close()
    log = EventLog(data_dir / "events.sqlite")
    with log.transaction() as db:  # the baselines learned at commissioning
        rows = [
            baseline.BaselineRow(
                "S1", c, base5 if c == 5 else round(m.resistance_mohm, 3), "learned", START
            )
            for c, m in enumerate(model.cells, start=1)
        ]
        baseline.save(db, rows)
    log.close()
    return model, base5


def test_trend_and_projected_crossing_from_the_history(tmp_path: Path) -> None:
    _, base5 = _fill(tmp_path)
    now = START + DAYS * DAY
    h = from_files(tmp_path, site_settings(tmp_path), "S1", now=now)
    cells = {c.cell: c for c in h.cells}
    five = cells[5]
    assert five.trend_mohm_per_month == pytest.approx(CREEP * MONTH_S / DAY, rel=0.03)
    for c, ch in cells.items():
        if c != 5:
            assert ch.trend_mohm_per_month is None or abs(ch.trend_mohm_per_month) < 1e-3
    # the line meets baseline x 1.5 (the alarm limit) where the creep says it will
    limit = base5 * 1.5
    assert five.limit_mohm == pytest.approx(limit, abs=1e-6)
    expected = START + (limit - base5) / CREEP * DAY
    assert five.crosses_at == pytest.approx(expected, abs=2 * DAY)
    assert five.vs_baseline_pct == pytest.approx((five.mohm / base5 - 1) * 100, abs=0.01)
    assert all(cells[c].crosses_at is None for c in cells if c != 5)


def test_too_short_a_history_has_no_trend(tmp_path: Path) -> None:
    _fill(tmp_path)
    settings = site_settings(tmp_path, analytics={"trend_days": 3, "trend_min_days": 7})
    h = from_files(tmp_path, settings, "S1", now=START + DAYS * DAY)
    assert all(c.trend_mohm_per_month is None for c in h.cells)


def test_the_running_service_serves_the_trend_per_cell(tmp_path: Path) -> None:
    from analytics_support import rig

    _fill(tmp_path)
    h = history_service(tmp_path)
    try:
        r = rig(24, seed=2, weak=[], data_dir=tmp_path)
        r.service.history = h
        r.t = START + DAYS * DAY
        r.feed()
        r.service.refresh_trends(now=r.t)
        r.t += 1
        trend = r.feed().cell_derived["resistance_trend_mohm_per_month"]
        assert trend[4] == pytest.approx(CREEP * MONTH_S / DAY, rel=0.03)
        assert all(t is None or abs(t) < 1e-3 for i, t in enumerate(trend) if i != 4)
    finally:
        h.close()
