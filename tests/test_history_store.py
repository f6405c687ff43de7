"""The history store on its own, in simulated time: readings with given
timestamps go in through the writer thread and come back through the queries,
equal to what went in, in every tier, across restarts."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from btms_gateway.core.history import HistoryQueries, HistorySection, QueryError
from btms_gateway.core.history.codec import decode_block, encode_block
from btms_gateway.core.history.quantities import QUANTITIES
from btms_gateway.core.history.store import FILE_NAME
from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.kit.testing import make_reading
from history_support import T0, reading_at, service, write_all

KEYS = [q.key for q in QUANTITIES]


def _expected(readings, key: str, cell: int | None) -> list[float | None]:
    q = next(q for q in QUANTITIES if q.key == key)
    out = []
    for r in readings:
        if cell is None:
            v = getattr(r, q.attr)
        else:
            c = r.cells[cell - 1] if cell <= len(r.cells) else None
            v = getattr(c, q.attr) if c is not None else None
        out.append(None if v is None else float(v))
    return out


def test_raw_readings_come_back_exactly_with_gaps_as_gaps(tmp_path: Path) -> None:
    rng = random.Random(1)
    times = [T0 + i * 1.5 for i in range(2000)] + [T0 + 4000 + i for i in range(600)]  # a gap
    readings = [reading_at(t, rng) for t in times]
    with service(tmp_path) as svc:
        write_all(svc, "S1", readings)
        s = svc.queries.series("S1", KEYS, T0, T0 + 5000, resolution="raw")
    assert s.t.tolist() == pytest.approx(times, abs=1e-3)  # no row invented in the gap
    for j, col in enumerate(s.columns):
        got = [None if np.isnan(v) else v for v in s.stats["value"][:, j]]
        want = _expected(readings, col.quantity.key, col.cell)
        assert got == pytest.approx(want), col


@pytest.mark.slow  # ~18 s: months of readings rolled up
def test_rollups_are_exact_against_the_raw_data(tmp_path: Path) -> None:
    rng = random.Random(2)
    # 30 hours at 10 s, with a cell added after 20 h (auto-addressing) and a sensor lost
    readings = [reading_at(T0 + 10 * i, rng, cells=4 if i < 7200 else 5) for i in range(10_800)]
    with service(tmp_path) as svc:
        write_all(svc, "S1", readings)
        q = svc.queries
        raw = q.series("S1", KEYS, T0, T0 + 30 * 3600, resolution="raw")
        for resolution, step in (("minute", 60), ("hour", 3600)):
            agg = q.series("S1", KEYS, T0, T0 + 30 * 3600, resolution=resolution)
            assert agg.step_s == step
            # most of the range is closed into blocks: the test covers them, not only segments
            buckets = (raw.t // step) * step
            assert agg.t.tolist() == sorted(set(buckets.tolist()))[: len(agg.t)]
            assert len(agg.t) >= (27 * 3600) // step  # the open periods are not rolled up yet
            for j, col in enumerate(agg.columns):
                k = raw.columns.index(col)
                for i, b in enumerate(agg.t):
                    values = raw.stats["value"][buckets == b, k]
                    values = values[~np.isnan(values)]
                    assert agg.stats["count"][i, j] == len(values), (resolution, col, b)
                    if len(values):
                        assert agg.stats["min"][i, j] == pytest.approx(values.min())
                        assert agg.stats["max"][i, j] == pytest.approx(values.max())
                        assert agg.stats["mean"][i, j] == pytest.approx(values.mean(), rel=1e-12)
                    else:
                        assert np.isnan(agg.stats["mean"][i, j])


@pytest.mark.slow  # ~11 s: a year of readings
def test_a_year_of_hourly_readings_in_seconds_and_retention_per_tier(tmp_path: Path) -> None:
    rng = random.Random(3)
    settings = {"raw_retention_hours": 72, "minute_retention_days": 30, "hour_retention_days": 200}
    end = T0 + 365 * 86400
    readings = [reading_at(T0 + 3600 * i, rng, current_a=0.8) for i in range(365 * 24)]
    with service(tmp_path, **settings) as svc:
        write_all(svc, "S1", readings)
        q = svc.queries
        tiers = {t["tier"]: t for t in q.info()["tiers"]}
        newest = T0 + 3600 * (365 * 24 - 1)
        # each tier keeps about its own retention, in data time, never less
        assert newest - tiers["raw"]["from"] == pytest.approx(72 * 3600, abs=1800 + 3600)
        assert newest - tiers["minute"]["from"] == pytest.approx(30 * 86400, abs=4 * 3600)
        assert newest - tiers["hour"]["from"] == pytest.approx(200 * 86400, abs=31 * 86400)
        assert newest - tiers["raw"]["from"] >= 72 * 3600
        assert newest - tiers["hour"]["from"] >= 200 * 86400
        old = q.series("S1", ["voltage_v"], T0, T0 + 86400, resolution="raw")
        assert len(old.t) == 0  # gone with its tier
        year = q.series("S1", ["cell_resistance_mohm"], T0, end, cells=[2])
        assert year.resolution == "hour" and len(year.t) > 190 * 24
        # resistance changes are kept for the battery's life, older than every tier
        changes = q.resistance_changes("S1", cells=[2])
        assert changes[2][0][0] == T0
        assert len(changes[2][0]) > 5


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_discharge_periods_stay_raw_past_the_raw_retention(tmp_path: Path) -> None:
    rng = random.Random(4)
    readings = []
    for i in range(4 * 86400 // 20):  # 4 days at 20 s
        t = T0 + 20 * i
        discharging = 3600 <= 20 * i < 5400  # 30 minutes in the first day
        current = -42.5 if discharging else 0.8
        readings.append(reading_at(t, rng, current_a=current))
    with service(tmp_path, raw_retention_hours=24, discharge_current_a=-5.0) as svc:
        write_all(svc, "S1", readings)
        q = svc.queries
        (d,) = q.discharges("S1")
        assert (d.start, d.end) == (T0 + 3600, T0 + 5380)
        kept = q.series("S1", ["current_a"], T0, T0 + 86400, resolution="raw")
        assert {round(v, 2) for v in kept.stats["value"][:, 0]} >= {-42.5}
        assert kept.t.min() <= d.start and kept.t.max() >= d.end  # the whole event, raw
        assert len(kept.t) < 86400 / 20 / 4  # but not the rest of the day


def test_discharges_stay_until_deleted_by_the_command(tmp_path: Path) -> None:
    from btms_gateway.core.cli import build_cli
    from click.testing import CliRunner

    rng = random.Random(13)
    data = [reading_at(T0 + 20 * i, rng, current_a=-30.0 if i < 30 else 0.8) for i in range(9000)]
    with service(tmp_path, raw_retention_hours=24) as svc:
        write_all(svc, "S1", data[:4500])
        assert len(svc.queries.discharges("S1")) == 1
        result = CliRunner().invoke(
            build_cli(),
            [
                "history",
                "delete-discharges",
                "--db",
                str(tmp_path / FILE_NAME),
                "--before",
                str(T0 + 86400),
            ],
        )
        assert result.exit_code == 0 and "1 discharge period(s)" in result.output
        write_all(svc, "S1", data[4500:])  # two days on: the raw retention now applies
        assert svc.queries.discharges("S1") == []
        kept = svc.queries.series("S1", ["current_a"], T0, T0 + 3600, resolution="raw")
    assert len(kept.t) == 0


def test_a_damaged_block_is_a_gap_in_that_quantity_only(tmp_path: Path) -> None:
    rng = random.Random(14)
    with service(tmp_path) as svc:
        write_all(svc, "S1", [reading_at(T0 + i, rng) for i in range(1300)])
    db = sqlite3.connect(tmp_path / FILE_NAME)
    with db:
        db.execute(
            "UPDATE blocks SET data = X'0102030405' WHERE tier = 0 AND quantity = 1 AND t0 = "
            "(SELECT MIN(t0) FROM blocks WHERE tier = 0)"
        )
    db.close()
    q = HistoryQueries(tmp_path / FILE_NAME)
    s = q.series("S1", ["voltage_v", "current_a"], T0, T0 + 1300, resolution="raw")
    first = s.t < T0 + 600
    assert np.isnan(s.stats["value"][first, 0]).all()  # voltage of the damaged block: missing
    assert not np.isnan(s.stats["value"][first, 1]).any()  # current of the same period: there
    assert not np.isnan(s.stats["value"][~first, 0]).all()


def test_clock_step_back_neither_reorders_nor_overwrites(tmp_path: Path) -> None:
    rng = random.Random(5)
    first = [reading_at(T0 + i, rng) for i in range(100)]
    stepped = [reading_at(T0 + 50 + i, rng, voltage_v=1.0) for i in range(60)]  # 50 s back
    with service(tmp_path) as svc:
        write_all(svc, "S1", first + stepped)
        s = svc.queries.series("S1", ["voltage_v"], T0, T0 + 200, resolution="raw")
        assert svc.status().counters["dropped_clock"] == 50  # T0+50 .. T0+99 again
    assert np.all(np.diff(s.t) > 0)
    assert s.t.tolist() == pytest.approx(
        [T0 + i for i in range(100)] + [T0 + 100 + i for i in range(10)]
    )
    assert s.stats["value"][:100, 0].tolist() == [r.voltage_v for r in first]  # not overwritten


def test_restart_keeps_history_and_carries_on(tmp_path: Path) -> None:
    rng = random.Random(6)
    before = [reading_at(T0 + i, rng) for i in range(700)]
    after = [reading_at(T0 + 700 + i, rng) for i in range(700)]
    with service(tmp_path) as svc:
        write_all(svc, "S1", before)
    with service(tmp_path) as svc:
        s = svc.queries.series("S1", ["cell_voltage_v"], T0, T0 + 2000, resolution="raw")
        assert len(s.t) == 700
        svc.write("S1", before[-1])  # already there: not written twice
        write_all(svc, "S1", after)
        assert svc.status().counters["dropped_clock"] == 1
        s = svc.queries.series("S1", ["cell_voltage_v"], T0, T0 + 2000, resolution="raw")
    assert len(s.t) == 1400
    assert np.all(np.diff(s.t) > 0)


def test_only_good_new_readings_are_offered(tmp_path: Path) -> None:
    r = make_reading(4, read_at=T0)
    snap = StringSnapshot("S1", 1, None, 0, 1, "b", Quality.GOOD, r, T0)
    with service(tmp_path) as svc:
        svc.offer(snap)
        svc.offer(snap)  # the same reading object again: once
        svc.offer(replace(snap, quality=Quality.STALE, reading=make_reading(4, read_at=T0 + 5)))
        svc.offer(replace(snap, quality=Quality.OFFLINE, reading=make_reading(4, read_at=T0 + 6)))
        svc.offer(replace(snap, reading=None))
        assert svc.sync()
        s = svc.queries.series("S1", ["voltage_v"], T0 - 10, T0 + 10, resolution="raw")
        assert svc.status().counters["recorded"] == 1
    assert s.t.tolist() == [T0]


@pytest.mark.slow  # ~12 s: a store filled to its budget
def test_budget_deletes_the_least_valuable_oldest_data_first(tmp_path: Path) -> None:
    rng = random.Random(7)
    readings = [reading_at(T0 + 10 * i, rng, cells=16, current_a=0.8) for i in range(4 * 8640)]
    settings = {"raw_retention_hours": 24 * 30, "budget_mb": 2}  # 4 days at 10 s: 4 MB
    with service(tmp_path, **settings) as svc:
        for r in readings:
            svc.write("S1", r)
        assert svc.sync(300)
        info = svc.queries.info()
        tiers = {t["tier"]: t for t in info["tiers"]}
        assert svc.store.used_bytes() <= 2_000_000
        # raw went first: its oldest day is gone, the minute tier still has the start
        assert tiers["raw"]["from"] > T0 + 86400
        assert tiers["minute"]["from"] <= T0 + 60


def test_a_damaged_file_is_served_read_only(tmp_path: Path) -> None:
    rng = random.Random(8)
    with service(tmp_path) as svc:
        write_all(svc, "S1", [reading_at(T0 + i, rng, cells=120) for i in range(1300)])
    path = tmp_path / FILE_NAME
    db = sqlite3.connect(path)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'blocks_key'").fetchone()[0]
    db.close()
    assert pages > 10
    with open(path, "r+b") as f:  # scribble over an index's root page
        f.seek((root - 1) * size + 8)
        f.write(b"\xff" * 200)
    with service(tmp_path) as svc:
        svc.write("S1", reading_at(T0 + 5000, rng))
        assert svc.sync()
        st = svc.status()
        assert st.state == "read_only", st
        assert "integrity" in st.reason or "malformed" in st.reason
        assert st.counters["dropped_error"] == 1
    assert path.stat().st_size == pages * size  # never written


def test_block_codec_round_trip_with_nulls_and_wide_values() -> None:
    rng = np.random.default_rng(9)
    values = rng.integers(-(2**40), 2**40, size=(300, 7))
    values[:, 3] = 450  # constant
    values[:, 4] = np.cumsum(rng.integers(-1, 2, 300))  # small steps
    present = rng.random((300, 7)) > 0.1
    present[:, 5] = True
    out, got = decode_block(encode_block(values, present))
    assert (got == present).all()
    assert (out[0][present] == values[present]).all()
    some, got = decode_block(encode_block(values, present), [6, 2, 9])
    assert (some[0][:, 0][present[:, 6]] == values[:, 6][present[:, 6]]).all()
    assert not got[:, 2].any()  # a column the block does not have: missing


def test_queries_say_what_is_wrong(tmp_path: Path) -> None:
    rng = random.Random(10)
    with service(tmp_path) as svc:
        write_all(svc, "S1", [reading_at(T0 + i, rng) for i in range(10)])
    q = HistoryQueries(tmp_path / FILE_NAME, HistorySection())
    with pytest.raises(QueryError, match="no history for string 'NOPE'"):
        q.series("NOPE", ["voltage_v"], T0, T0 + 10)
    with pytest.raises(QueryError, match="quantities: one of"):
        q.series("S1", ["volts"], T0, T0 + 10)
    with pytest.raises(QueryError, match="to must be after from"):
        q.series("S1", ["voltage_v"], T0 + 10, T0)
    with pytest.raises(QueryError, match="no history at"):
        HistoryQueries(tmp_path / "missing.sqlite").strings()
