"""The data model: UPS aggregation rules, the snapshot store, derived values."""

from __future__ import annotations

import dataclasses

import pytest
from btms_gateway.core.model import (
    DeviceStatus,
    Quality,
    StringAlarm,
    StringSnapshot,
    StringState,
)
from btms_gateway.core.store import SnapshotStore
from btms_gateway.kit.testing import make_reading


def snap(name: str, index: int, ups: str | None, quality: Quality, reading=None) -> StringSnapshot:
    return StringSnapshot(name, index, ups, 1 if ups else 0, index, "bus1", quality, reading, 0.0)


def store() -> SnapshotStore:
    strings = [
        snap("A1", 1, "UPS-A", Quality.OFFLINE),
        snap("A2", 2, "UPS-A", Quality.OFFLINE),
        snap("B1", 3, None, Quality.OFFLINE),
    ]
    return SnapshotStore(strings, [("UPS-A", 1)])


def test_ups_is_mean_voltage_summed_current_mean_soc():
    s = store()
    s.publish(
        snap(
            "A1",
            1,
            "UPS-A",
            Quality.GOOD,
            make_reading(2, voltage_v=540.0, current_a=-10.5, soc_pct=80),
        )
    )
    plant = s.publish(
        snap(
            "A2",
            2,
            "UPS-A",
            Quality.GOOD,
            make_reading(2, voltage_v=542.0, current_a=-11.0, soc_pct=90),
        )
    )
    ups = plant.ups["UPS-A"]
    assert ups.voltage_v == pytest.approx(541.0)
    assert ups.current_a == pytest.approx(-21.5)
    assert ups.soc_pct == pytest.approx(85.0)
    assert ups.status is DeviceStatus.OK and ups.quality is Quality.GOOD


def test_ups_is_error_and_worst_quality_if_any_string_is():
    s = store()
    s.publish(snap("A1", 1, "UPS-A", Quality.GOOD, make_reading(2)))
    plant = s.publish(snap("A2", 2, "UPS-A", Quality.STALE, make_reading(2)))
    assert plant.ups["UPS-A"].status is DeviceStatus.ERROR
    assert plant.ups["UPS-A"].quality is Quality.STALE
    plant = s.publish(
        snap("A2", 2, "UPS-A", Quality.GOOD, make_reading(2, alarms=StringAlarm.VOLTAGE_LOW))
    )
    assert plant.ups["UPS-A"].status is DeviceStatus.ERROR


def test_never_read_ups_has_no_values():
    ups = store().snapshot.ups["UPS-A"]
    assert (ups.voltage_v, ups.current_a, ups.soc_pct) == (None, None, None)
    assert ups.quality is Quality.OFFLINE


def test_publish_replaces_one_string_and_keeps_the_rest_by_reference():
    s = store()
    before = s.snapshot
    after = s.publish(snap("B1", 3, None, Quality.GOOD, make_reading(120)))
    assert after.strings["A1"] is before.strings["A1"]
    assert after.ups["UPS-A"] is before.ups["UPS-A"]  # B1 belongs to no UPS
    assert list(after.strings) == ["A1", "A2", "B1"]
    assert before.strings["B1"].reading is None  # old snapshots never change


def test_readings_are_immutable():
    reading = make_reading(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.voltage_v = 1.0  # type: ignore[misc]


def test_string_soh_is_the_lowest_cell_soh_and_state_decoding():
    reading = make_reading(10)
    assert reading.soh_pct == min(c.soh_pct for c in reading.cells)
    assert StringState.from_raw(2) is StringState.DISCHARGE
    assert StringState.from_raw(4) is StringState.UNKNOWN


def test_age_is_measured_from_the_read_time():
    s = snap("A1", 1, None, Quality.STALE, make_reading(1, read_at=100.0))
    assert s.age_s(now=112.5) == pytest.approx(12.5)
    assert snap("A1", 1, None, Quality.OFFLINE).age_s(now=1.0) is None
