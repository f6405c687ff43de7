"""The alarm engine fed with model snapshots: thresholds, hysteresis, delays,
quality rules, UPS rule, acknowledge and restore (the simulator tests are in
test_alarm_simulator.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alarm_support import Rig, settings
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, Severity
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality, StringAlarm
from btms_gateway.kit import synthetic as sy

V17 = "cell_voltage_high:A:17"
NOW = {"on_delay_s": 0, "off_delay_s": 0}


def test_crossing_raises_once_after_on_delay_and_wobble_in_band_is_silent(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 10}))
    for t in range(0, 9):  # beyond the limit (2.40) for 9 s: still pending
        rig.feed(float(t), v={17: 2.45})
        rig.engine.tick(t + 0.5)
    assert rig.kinds(V17) == []
    rig.feed(10.0, v={17: 2.45})
    assert rig.kinds(V17) == [EventKind.RAISED]
    raised = rig.events[-1]
    assert (raised.value, raised.limit, raised.unit) == (2.45, 2.4, "V")
    assert raised.severity is Severity.ALARM and raised.at == 10.0 and raised.seq >= 1
    assert str(raised.path) == "UPS1/A/17"
    for t, v in enumerate([2.39, 2.41, 2.385, 2.43, 2.381] * 4, start=11):  # band: 2.38..2.40
        rig.feed(float(t), v={17: v})
        rig.engine.tick(t + 0.5)
    assert rig.kinds(V17) == [EventKind.RAISED]
    rig.feed(40.0, v={17: 2.30})  # below 2.38: off-delay (5 s) starts
    rig.feed(44.0, v={17: 2.30})
    assert rig.kinds(V17) == [EventKind.RAISED]
    rig.feed(45.0, v={17: 2.30})
    assert rig.kinds(V17) == [EventKind.RAISED, EventKind.CLEARED]
    assert raised.message == "string A cell 17: voltage high: 2.45 V (limit 2.4 V)"
    assert rig.events[-1].message == "string A cell 17: voltage high: cleared at 2.3 V"
    assert rig.engine.active() == [] and rig.log.active() == []


def test_wobble_across_the_limit_before_the_on_delay_never_raises(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 5}))
    for t in range(0, 40):
        rig.feed(float(t), v={17: 2.45 if t % 4 else 2.39})  # back in band every 4 s
        rig.engine.tick(t + 0.5)
    assert rig.events == []


def test_on_delay_expires_in_tick_without_new_readings(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_low={"on_delay_s": 10}))
    rig.feed(100.0, v={3: 1.80})
    rig.engine.tick(109.9)
    assert rig.events == []
    rig.engine.tick(110.0)
    assert rig.kinds("cell_voltage_low:A:3") == [EventKind.RAISED]
    assert rig.events[0].at == 110.0


def test_resistance_drift_learns_baseline_then_warns_then_alarms(tmp_path: Path):
    fast = {"on_delay_s": 0, "off_delay_s": 0}
    rig = Rig(
        tmp_path / "e.sqlite",
        settings(cell_resistance_warning=fast, cell_resistance_alarm=fast),
    )
    for t in range(3):  # baseline_readings = 3: median of 0.50, 0.52, 0.51
        rig.feed(float(t), r={5: 0.50 + (0.02, 0.0, 0.01)[t]})
    assert rig.engine._evals["A"].baselines.values[5] == pytest.approx(0.51)
    for t, r in enumerate([0.55, 0.60, 0.65, 0.70, 0.78, 0.80], start=3):
        rig.feed(float(t), r={5: r})
    warn, alarm = "cell_resistance_warning:A:5", "cell_resistance_alarm:A:5"
    assert rig.kinds(warn) == [EventKind.RAISED]  # 0.65 = +27.5 %
    assert rig.kinds(alarm) == [EventKind.RAISED]  # 0.78 = +52.9 %
    order = [e.alarm_id for e in rig.events]
    assert order.index(warn) < order.index(alarm)
    assert rig.events[-1].unit == "%" and rig.events[-1].limit == 50.0
    rig.log.close()
    # persisted: a new engine on the same file compares against the same baseline
    rig2 = Rig(tmp_path / "e.sqlite", settings())
    rig2.feed(100.0, r={5: 0.51})
    assert rig2.engine._evals["A"].baselines.values[5] == pytest.approx(0.51)


def test_comm_lost_raises_on_offline_holds_on_stale_clears_on_good(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings())
    rig.feed(1.0)
    rig.publish("A", rig.plant.strings["A"].reading, Quality.STALE, changed_at=5.0)
    assert rig.events == []
    rig.publish("A", rig.plant.strings["A"].reading, Quality.OFFLINE, changed_at=9.0)
    assert rig.kinds("string_comm_lost:A") == [EventKind.RAISED]
    assert rig.events[0].at == 9.0
    rig.publish("A", rig.plant.strings["A"].reading, Quality.STALE, changed_at=12.0)
    rig.publish("A", rig.plant.strings["A"].reading, Quality.OFFLINE, changed_at=13.0)
    assert rig.kinds("string_comm_lost:A") == [EventKind.RAISED]
    rig.feed(20.0)
    assert rig.kinds("string_comm_lost:A") == [EventKind.RAISED, EventKind.CLEARED]


def test_stale_values_neither_raise_nor_clear(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 0}))
    bad = sy.reading(1.0, sy.cells(v={2: 2.6}))
    rig.publish("A", bad, Quality.STALE, changed_at=1.0)
    rig.engine.tick(100.0)
    assert rig.events == []
    rig.publish("A", bad, Quality.GOOD, changed_at=2.0)
    assert rig.kinds("cell_voltage_high:A:2") == [EventKind.RAISED]
    good = sy.reading(3.0, sy.cells())
    rig.publish("A", good, Quality.STALE, changed_at=3.0)
    rig.engine.tick(200.0)
    assert rig.kinds("cell_voltage_high:A:2") == [EventKind.RAISED]


def test_pending_transition_is_cancelled_when_the_string_goes_stale(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 10}))
    rig.feed(0.0, v={9: 2.5})
    rig.publish("A", rig.plant.strings["A"].reading, Quality.STALE, changed_at=1.0)
    rig.engine.tick(50.0)
    assert rig.events == []


def test_cells_without_values_are_skipped(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 0}))
    rig.feed(0.0, v={4: None, 5: 2.5}, t={4: None}, soc={4: None}, soh={4: None}, r={4: None})
    assert [e.alarm_id for e in rig.events] == ["cell_voltage_high:A:5"]


def test_block_type_scales_voltage_limits(tmp_path: Path):
    s = AlarmsSection.model_validate(
        {
            "rules": {"cell_voltage_high": {"on_delay_s": 0}},
            "strings": {"B": {"block": "12V"}},
        }
    )
    rig = Rig(tmp_path / "e.sqlite", s, names=("A", "B"))
    rig.feed(0.0, "B", volts=13.6, v={1: 14.5})  # 12 V block: limit 6 x 2.40 = 14.4 V
    assert [e.alarm_id for e in rig.events] == ["cell_voltage_high:B:1"]
    assert rig.events[0].limit == pytest.approx(14.4)


def test_string_rules_alarm_word_and_ups(tmp_path: Path):
    now = {"on_delay_s": 0, "off_delay_s": 0}
    s = settings(string_voltage_high=now, string_current_discharge_high=now, ups_string_error=now)
    rig = Rig(tmp_path / "e.sqlite", s, names=("A", "B"))
    rig.feed(0.0, "B")
    rig.feed(0.0, "A", volts=2.39)  # 120 x 2.39 = 286.8 V > 120 x 2.38 = 285.6 V
    assert rig.kinds("string_voltage_high:A") == [EventKind.RAISED]
    assert rig.events[-1].limit == pytest.approx(285.6)
    rig.feed(1.0, "A", current=-600.0, alarms=StringAlarm.VOLTAGE_LOW | StringAlarm.SOC_LOW)
    ids = [e.alarm_id for e in rig.events if e.kind is EventKind.RAISED]
    assert "string_current_discharge_high:A" in ids
    assert {"bmsm_voltage_low:A", "bmsm_soc_low:A", "ups_string_error:UPS1"} <= set(ids)
    rig.feed(2.0, "A")
    cleared = {e.alarm_id for e in rig.events if e.kind is EventKind.CLEARED}
    assert {"bmsm_voltage_low:A", "bmsm_soc_low:A", "ups_string_error:UPS1"} <= cleared
    assert {e.seq for e in rig.events} == set(range(1, len(rig.events) + 1))


def test_ups_rule_ignores_strings_not_yet_polled_at_startup(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(), names=("A", "B"))
    rig.feed(0.0, "A")  # B is still OFFLINE from the store's start, never polled
    assert rig.events == []


def test_never_read_string_is_lost_after_the_startup_grace(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", AlarmsSection(startup_grace_s=0.0), names=("A", "B"))
    rig.feed(0.0, "A")
    rig.engine.tick(time.time() + 1)
    assert rig.kinds("string_comm_lost:B") == [EventKind.RAISED]
    assert rig.kinds("string_comm_lost:A") == []


def test_acknowledge_records_who_and_is_restored(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_temperature_high={"on_delay_s": 0}))
    rig.feed(0.0, t={7: 45.0})
    aid = "cell_temperature_high:A:7"
    assert rig.engine.acknowledge("nope", "ann") is None
    assert rig.engine.acknowledge(aid, "ann") == "ann"
    assert rig.engine.acknowledge(aid, "bob") == "ann"  # already acknowledged: no new event
    assert rig.kinds(aid) == [EventKind.RAISED, EventKind.ACKNOWLEDGED]
    assert rig.events[-1].by == "ann"
    [active] = rig.engine.active()
    assert active.acknowledged and active.acknowledged_by == "ann"
    rig.log.close()
    rig2 = Rig(tmp_path / "e.sqlite", settings(cell_temperature_high={"on_delay_s": 0}))
    [restored] = rig2.engine.active()
    assert restored.acknowledged_by == "ann" and restored.raised_at == 0.0


def test_restart_restores_active_alarms_without_raising_them_again(tmp_path: Path):
    s = settings(cell_voltage_high={"on_delay_s": 0, "off_delay_s": 0})
    rig = Rig(tmp_path / "e.sqlite", s)
    rig.feed(0.0, v={1: 2.5, 2: 2.5})
    assert len(rig.events) == 2
    rig.log.close()
    rig2 = Rig(tmp_path / "e.sqlite", s)
    assert {a.alarm_id for a in rig2.engine.active()} == {
        "cell_voltage_high:A:1",
        "cell_voltage_high:A:2",
    }
    rig2.feed(10.0, v={1: 2.5})  # cell 1 still high: no second RAISED; cell 2 normal
    assert [(e.kind, e.alarm_id) for e in rig2.events] == [
        (EventKind.CLEARED, "cell_voltage_high:A:2")
    ]
    assert rig2.events[0].seq == 3


def test_restored_alarm_of_a_disabled_rule_is_cleared(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"on_delay_s": 0}))
    rig.feed(0.0, v={1: 2.5})
    rig.log.close()
    rig2 = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high={"enabled": False}))
    assert rig2.kinds("cell_voltage_high:A:1") == [EventKind.CLEARED]
    [cleared] = rig2.events
    assert cleared.rule == "cell_voltage_high" and cleared.severity is Severity.ALARM
    assert cleared.message.endswith("(cleared: rule or object no longer configured)")
    assert rig2.engine.active() == [] and rig2.log.active() == []


def test_a_failing_consumer_does_not_stop_the_next_alarm(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    seen: list[int] = []

    def emit(e: AlarmEvent, active: object) -> None:
        seen.append(e.seq)
        raise RuntimeError("consumer broke")

    engine = AlarmEngine(settings(cell_voltage_high={"on_delay_s": 0}), log, emit)
    p = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
    engine.restore(p)
    for t, cell in enumerate((1, 2, 3)):
        s = sy.string("A", sy.reading(float(t), sy.cells(v={cell: 2.5})))
        engine.on_string(s, sy.with_string(p, s))
    assert seen == [1, 2, 3]  # every alarm was committed and offered despite the failures
    assert [e.seq for e in log.events()] == [1, 2, 3]


def test_plugins_acknowledging_from_threads_while_readings_arrive(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high=NOW, cell_voltage_low=NOW))
    rig.feed(0.0, v={i: 2.5 for i in range(1, 41)})
    ids = [a.alarm_id for a in rig.engine.active()]
    assert len(ids) == 40
    results: list[tuple[str, str | None]] = []  # (who acknowledged, who is recorded)

    def acker(part: list[str]) -> None:
        me = threading.current_thread().name
        for aid in part:
            results.append((me, rig.engine.acknowledge(aid, me)))

    threads = [threading.Thread(target=acker, args=(ids[k::4],)) for k in range(4)]
    for th in threads:
        th.start()
    high = {i: 2.5 for i in range(1, 41)}
    for t in range(1, 30):  # meanwhile cells 41..60 go low and back, 1..40 stay high
        low = {i: 1.5 for i in range(41, 61)} if t % 2 else {}
        rig.feed(float(t), v=high | low)
    for th in threads:
        th.join(timeout=30)
    assert len(results) == 40 and all(me == recorded for me, recorded in results)
    assert all(a.acknowledged for a in rig.engine.active() if a.alarm_id in ids)
    seqs = [e.seq for e in rig.events]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))  # emitted in commit order
    stored = [(e.seq, e.kind, e.alarm_id) for e in rig.log.events()]
    assert stored == [(e.seq, e.kind, e.alarm_id) for e in rig.events]


def test_disabled_alarms_raise_nothing_and_clear_what_was_active(tmp_path: Path):
    rig = Rig(tmp_path / "e.sqlite", settings(cell_voltage_high=NOW))
    rig.feed(0.0, v={1: 2.5})
    rig.log.close()
    off = AlarmsSection(enabled=False, startup_grace_s=0)
    rig2 = Rig(tmp_path / "e.sqlite", off, names=("A", "B"))
    assert rig2.kinds("cell_voltage_high:A:1") == [EventKind.CLEARED]
    rig2.feed(1.0, v={2: 2.6})
    rig2.engine.tick(time.time() + 10)  # B never answered: still no comm-lost alarm
    assert len(rig2.events) == 1 and rig2.engine.active() == []
