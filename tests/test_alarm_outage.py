"""The alarm engine when its event log cannot be written, fed model snapshots.

The failure is SQLite's own: ``PRAGMA max_page_count`` at the file's current
size makes every commit that needs a new page fail with SQLITE_FULL
("database or disk is full"), the error a full disk gives, through the same
code path, with no mount needed. The same story on a real full file system
(tmpfs), through the simulator and to snmptrapd, the web and a plugin, is in
test_alarm_outage_wire.py; a damaged file is in test_eventlog_verify.py.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind
from btms_gateway.core.alarms import inbox
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import LOG_ALARM, AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import PlantSnapshot, Quality
from btms_gateway.kit import synthetic as sy

NOW = {"on_delay_s": 0, "off_delay_s": 0}
UNLIMITED = 1_073_741_823  # SQLite's default max_page_count


class Rig:
    def __init__(self, path: Path, **rules: dict[str, object]) -> None:
        self.log = EventLog(path)
        self.events = sy.Emitted()
        rules = {"cell_voltage_high": NOW, "cell_temperature_high": NOW, **rules}
        settings = AlarmsSection.model_validate({"rules": rules})
        self.engine = AlarmEngine(settings, self.log, self.events)
        self.engine.outage.retry_every_s = 0.0  # every tick tries to write again
        self.plant: PlantSnapshot = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
        self.engine.restore(self.plant)

    def feed(self, at: float, **cells: object) -> None:
        r = sy.reading(at, sy.cells(**cells))  # type: ignore[arg-type]
        s = sy.string("A", r, changed_at=at)
        self.plant = sy.with_string(self.plant, s)
        self.engine.on_string(s, self.plant)

    def fill_disk(self) -> None:
        """No page more for the file: the next commit that needs one fails."""
        pages = self.log.db.execute("PRAGMA page_count").fetchone()[0]
        self.log.db.execute(f"PRAGMA max_page_count = {pages}")

    def free_disk(self) -> None:
        self.log.db.execute(f"PRAGMA max_page_count = {UNLIMITED}")


def summary(events: list[AlarmEvent]) -> list[tuple[str, str, float, str]]:
    return [(e.kind.value, e.alarm_id, e.at, e.message) for e in events]


def test_disk_full_alarms_still_delivered_then_the_log_catches_up(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="btms_gateway.alarms")
    rig = Rig(tmp_path / "e.sqlite")
    rig.feed(1.0, v={1: 2.5})  # written as usual
    assert [e.persisted for e in rig.events] == [True]
    rig.fill_disk()
    # every cell too hot at once: far more rows than the last page holds
    rig.feed(2.0, v={1: 2.5}, t={i: 45.0 for i in range(1, 121)})
    hot = [e for e in rig.events if e.rule == "cell_temperature_high"]
    assert len(hot) == 120 and not any(e.persisted for e in hot)
    assert {e.seq for e in hot} == {0}
    failing = [e for e in rig.events if e.alarm_id == LOG_ALARM]
    assert [(e.kind, e.persisted) for e in failing] == [(EventKind.RAISED, False)]
    assert failing[0].message.startswith("gateway: event log cannot be written (")
    assert "full" in failing[0].message
    health = rig.engine.log_health()
    assert health.failing and health.unwritten == 121 and health.write_failures == 1
    # the engine's state goes on: the alarms are active, a clear clears, an ack acks
    active = {a.alarm_id for a in rig.engine.active()}
    assert {LOG_ALARM, "cell_voltage_high:A:1", "cell_temperature_high:A:7"} <= active
    rig.feed(3.0, v={1: 2.2}, t={i: 45.0 for i in range(2, 121)})  # cell 1 back to normal
    assert rig.engine.acknowledge("cell_temperature_high:A:7", "noc") == "noc"
    for k in range(4, 30):  # many polls and ticks while the disk stays full
        rig.feed(float(k), t={i: 45.0 for i in range(2, 121)})
        rig.engine.tick(float(k))
    health = rig.engine.log_health()
    assert health.failing and health.write_failures > 2
    assert health.unwritten == 124  # 120 raises, the gateway alarm, 2 clears, 1 ack
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # once, and no traceback
    assert "cannot be written" in errors[0].getMessage()

    rig.free_disk()
    rig.engine.tick(100.0)
    assert not rig.engine.log_health().failing
    assert rig.engine.log_health().unwritten == 0
    assert rig.events[-1].alarm_id == LOG_ALARM and rig.events[-1].kind is EventKind.CLEARED
    assert rig.events[-1].persisted and rig.events[-1].seq > 0
    # the log holds every delivered event, in order, with the time it happened
    logged = rig.log.events()
    assert summary(logged) == summary(rig.events)
    assert [e.seq for e in logged] == sorted({e.seq for e in logged})
    assert {a.alarm_id: a.acknowledged_by for a in rig.log.active()} == {
        a.alarm_id: a.acknowledged_by for a in rig.engine.active()
    }
    assert LOG_ALARM not in {a.alarm_id for a in rig.engine.active()}
    recovered = [r for r in caplog.records if "written again" in r.getMessage()]
    assert len(recovered) == 1 and "124 event(s) written late" in recovered[0].getMessage()
    # and a restart restores exactly what the engine held
    rig.engine.close()
    again = Rig(tmp_path / "e.sqlite")
    assert len(again.engine.active()) == 119
    assert again.events == []


def test_a_failed_commit_leaves_no_transaction_open(tmp_path):
    """SQLITE_FULL on COMMIT must not leave the connection inside a dead
    transaction: the next write would fail for that reason alone."""
    rig = Rig(tmp_path / "e.sqlite")
    rig.fill_disk()
    rig.feed(1.0, t={i: 45.0 for i in range(1, 121)})
    assert rig.engine.log_health().failing
    assert not rig.log.db.in_transaction
    rig.free_disk()
    rig.engine.tick(10.0)
    assert not rig.engine.log_health().failing
    assert len(rig.log.events()) == 122  # 120 raises, event_log_failing raised and cleared


def test_unwritten_events_are_bounded_and_the_drop_counted(tmp_path):
    rig = Rig(tmp_path / "e.sqlite")
    rig.engine.outage.limit = 50
    rig.fill_disk()
    rig.feed(1.0, t={i: 45.0 for i in range(1, 121)})
    health = rig.engine.log_health()
    assert health.unwritten == 50 and health.dropped == 71
    assert len([e for e in rig.events if not e.persisted]) == 121  # all delivered anyway
    rig.free_disk()
    rig.engine.tick(10.0)
    assert len(rig.log.events()) == 51  # what was kept, and the clear
    assert {a.alarm_id for a in rig.log.active()} == {a.alarm_id for a in rig.engine.active()}


def test_disabled_gateway_rule_still_delivers_and_catches_up(tmp_path):
    rig = Rig(tmp_path / "e.sqlite", event_log_failing={"enabled": False})
    rig.fill_disk()
    rig.feed(1.0, t={i: 45.0 for i in range(1, 121)})
    assert rig.engine.log_health().failing
    assert LOG_ALARM not in {e.alarm_id for e in rig.events}
    rig.free_disk()
    rig.engine.tick(10.0)
    assert len(rig.log.events()) == 120


@pytest.mark.parametrize("where", ["ack", "request"])
def test_writes_outside_evaluation_fail_into_the_same_outage(tmp_path, where):
    rig = Rig(tmp_path / "e.sqlite")
    rig.feed(1.0, t={7: 45.0})
    cli = EventLog(tmp_path / "e.sqlite")  # the command line's own connection
    inbox.submit(cli, inbox.ACK, alarm_id="cell_temperature_high:A:7", by="cli")
    cli.close()
    rig.log.db.execute("PRAGMA query_only = ON")  # every write now fails
    if where == "ack":
        assert rig.engine.acknowledge("cell_temperature_high:A:7", "noc") == "noc"
        assert rig.events[-2].kind is EventKind.ACKNOWLEDGED and not rig.events[-2].persisted
    else:
        rig.engine.tick(2.0)  # the CLI request inbox is read and answered in the tick
    assert rig.engine.log_health().failing
    assert [e.kind for e in rig.events if e.alarm_id == LOG_ALARM] == [EventKind.RAISED]
    assert isinstance(rig.engine.log_health().error, str)
    rig.log.db.execute("PRAGMA query_only = OFF")
    rig.engine.tick(20.0)
    assert not rig.engine.log_health().failing
    assert summary(rig.log.events()) == summary(rig.events)


def test_query_only_really_refuses_writes(tmp_path):
    """The fixture of the test above: a write on a query-only connection fails."""
    log = EventLog(tmp_path / "e.sqlite")
    log.db.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError):
        log.commit([], delete=["x"])
