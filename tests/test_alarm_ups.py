"""The UPS rule (`ups_string_error`) with several UPS and several faults: each
UPS has its own alarm, raised once and cleared on its own, however many
polls pass. The engine is fed model snapshots here; the same plant through
the simulator, with the traps snmptrapd receives, is in
test_alarm_ups_wire.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import PlantSnapshot, Quality, StringAlarm
from btms_gateway.kit import synthetic as sy

#: string -> UPS: three UPS, two strings each
MEMBERS = {"A": "U1", "B": "U1", "C": "U2", "D": "U2", "E": "U3", "F": "U3"}


class Plant:
    def __init__(self, path: Path) -> None:
        self.log = EventLog(path)
        self.events = sy.Emitted()
        settings = AlarmsSection.model_validate({"startup_grace_s": 3600})
        self.engine = AlarmEngine(settings, self.log, self.events)
        self.plant: PlantSnapshot = sy.plant(
            *(
                sy.string(n, None, quality=Quality.OFFLINE, ups=u, index=i + 1)
                for i, (n, u) in enumerate(MEMBERS.items())
            )
        )
        self.engine.restore(self.plant)

    def poll(self, at: float, faults: dict[str, StringAlarm | None]) -> None:
        """One bus cycle: every string polled in order; a string mapped to None
        does not answer (OFFLINE), one mapped to bits reports them."""
        for i, (name, ups) in enumerate(MEMBERS.items()):
            fault = faults.get(name, StringAlarm.NONE)
            if fault is None:
                s = sy.string(name, None, quality=Quality.OFFLINE, ups=ups, index=i + 1,
                              changed_at=at)  # fmt: skip
            else:
                r = sy.reading(at + i * 0.01, sy.cells(8), alarms=fault)
                s = sy.string(name, r, ups=ups, index=i + 1, changed_at=at)
            self.plant = sy.with_string(self.plant, s)
            self.engine.on_string(s, self.plant)
        self.engine.tick(at + 0.5)

    def ups_events(self) -> list[tuple[EventKind, str]]:
        return [(e.kind, e.alarm_id) for e in self.events if e.rule == "ups_string_error"]


def test_each_faulty_ups_has_one_alarm_that_does_not_flap_and_clears_on_its_own(tmp_path):
    p = Plant(tmp_path / "e.sqlite")
    faults: dict[str, StringAlarm | None] = {
        "A": StringAlarm.VOLTAGE_LOW,  # U1: one string in error
        "C": StringAlarm.SOC_LOW,  # U2: both strings in error, for different reasons
        "D": StringAlarm.VOLTAGE_HIGH | StringAlarm.SOH_LOW,
    }
    for k in range(60):
        p.poll(float(k), faults)
    assert Counter(p.ups_events()) == {
        (EventKind.RAISED, "ups_string_error:U1"): 1,
        (EventKind.RAISED, "ups_string_error:U2"): 1,
    }
    active = {a.alarm_id for a in p.engine.active() if a.rule == "ups_string_error"}
    assert active == {"ups_string_error:U1", "ups_string_error:U2"}

    # U2 loses one fault (still in error through D), U3 gets one: U3 raises, nothing else moves
    faults = {"A": StringAlarm.VOLTAGE_LOW, "D": StringAlarm.VOLTAGE_HIGH, "F": None}
    for k in range(60, 120):
        p.poll(float(k), faults)
    assert p.ups_events()[2:] == [(EventKind.RAISED, "ups_string_error:U3")]

    # U1 recovers: only U1 clears
    faults = {"D": StringAlarm.VOLTAGE_HIGH, "F": None}
    for k in range(120, 180):
        p.poll(float(k), faults)
    assert p.ups_events()[3:] == [(EventKind.CLEARED, "ups_string_error:U1")]
    active = {a.alarm_id for a in p.engine.active() if a.rule == "ups_string_error"}
    assert active == {"ups_string_error:U2", "ups_string_error:U3"}
    # the log holds what was emitted, and its active table what the engine says
    assert [(e.seq, e.kind, e.alarm_id) for e in p.log.events()] == [
        (e.seq, e.kind, e.alarm_id) for e in p.events
    ]
    assert {a.alarm_id for a in p.log.active()} == {a.alarm_id for a in p.engine.active()}


def test_restart_restores_each_ups_alarm_under_its_own_key(tmp_path):
    p = Plant(tmp_path / "e.sqlite")
    faults: dict[str, StringAlarm | None] = {"A": StringAlarm.SOC_LOW, "E": StringAlarm.SOC_LOW}
    for k in range(5):
        p.poll(float(k), faults)
    p.log.close()
    again = Plant(tmp_path / "e.sqlite")
    restored = {a.alarm_id for a in again.engine.active() if a.rule == "ups_string_error"}
    assert restored == {"ups_string_error:U1", "ups_string_error:U3"}
    for k in range(5, 20):  # still faulty: nothing raised again
        again.poll(float(k), faults)
    assert again.ups_events() == []
    for k in range(20, 30):  # E recovers: U3 clears, U1 stays
        again.poll(float(k), {"A": StringAlarm.SOC_LOW})
    assert again.ups_events() == [(EventKind.CLEARED, "ups_string_error:U3")]
