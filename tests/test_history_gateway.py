"""History inside a running gateway fed by the BM-SM simulator over a real
pseudo-terminal: every GOOD reading is recorded once, a string that vanishes
leaves a gap (its STALE and OFFLINE snapshots are never recorded), and the
gateway's restart keeps what was recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.kit.testing import GatewayHarness, plant_config


def _harness(tmp_path: Path) -> GatewayHarness:
    config = plant_config(strings=2, ups=1, data_dir=str(tmp_path), stale_after_s=1.0)
    config["history"] = {"commit_interval_s": 0.5}
    return GatewayHarness(config, simulate=True, cells=12, frozen=False)


@pytest.mark.slow  # ~3 s on a shared 2-core box
async def test_good_readings_only_and_a_vanished_string_is_a_gap(tmp_path: Path) -> None:
    offered: list[tuple[str, Quality, float | None, int]] = []
    h = _harness(tmp_path)
    history = h.gateway.history
    assert history is not None
    original = history.offer

    def spy(s: StringSnapshot) -> None:
        r = s.reading
        offered.append((s.name, s.quality, r.read_at if r else None, id(r)))
        original(s)

    history.offer = spy  # type: ignore[method-assign]
    async with h:
        await h.wait_quality(Quality.GOOD)
        await h.wait_until(
            lambda: sum(1 for o in offered if o[0] == "S1" and o[1] is Quality.GOOD) >= 5,
            what="five GOOD readings of S1",
        )
        sim, slave = h.sim_for("S1")
        sim.vanish(slave)
        await h.wait_quality(Quality.OFFLINE, "S1", timeout=20)
        last_good = h.gateway.store.string("S1").reading.read_at
        s2_before = max(o[2] for o in offered if o[0] == "S2" and o[1] is Quality.GOOD)
        await h.wait_until(
            lambda: any(o[0] == "S2" and o[2] and o[2] > s2_before + 1 for o in offered),
            what="S2 carries on",
        )
        assert history.sync(30)
        recorded = history.queries.series(
            "S1", ["voltage_v", "cell_voltage_v"], 0, last_good + 3600, resolution="raw"
        )
        s2 = history.queries.series("S2", ["voltage_v"], 0, last_good + 3600, resolution="raw")
    good = sorted({o[2] for o in offered if o[0] == "S1" and o[1] is Quality.GOOD})
    assert any(o[1] is Quality.STALE for o in offered if o[0] == "S1")
    assert any(o[1] is Quality.OFFLINE for o in offered if o[0] == "S1")
    # exactly the GOOD readings, each once; nothing after the last good read (a gap)
    assert [round(t, 3) for t in recorded.t] == [round(t, 3) for t in good]
    assert recorded.t.max() == round(last_good, 3)
    assert not any(v != v for v in recorded.stats["value"][:, 0])  # no NaN: values measured
    assert s2.t.max() > last_good + 1  # the other string went on being recorded
    assert history.status().counters["dropped_clock"] == 0


async def test_restart_keeps_history(tmp_path: Path) -> None:
    async with _harness(tmp_path) as h:
        await h.wait_quality(Quality.GOOD)
        history = h.gateway.history
        await h.wait_until(lambda: history.status().counters["recorded"] >= 6, what="readings")
        assert history.sync()
        first = history.queries.series("S1", ["cell_voltage_v"], 0, 2e9, resolution="raw")
    assert len(first.t) >= 3
    async with _harness(tmp_path) as h:
        history = h.gateway.history
        await h.wait_until(lambda: history.status().counters["recorded"] >= 4, what="readings")
        assert history.sync()
        again = history.queries.series("S1", ["cell_voltage_v"], 0, 2e9, resolution="raw")
    assert again.t[: len(first.t)].tolist() == first.t.tolist()
    assert (again.stats["value"][: len(first.t)] == first.stats["value"]).all()
    assert len(again.t) > len(first.t)
