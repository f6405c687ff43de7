"""The SQLite event log: WAL, sequence numbers, filters, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import ActiveAlarm, AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.alarms.eventlog import EventLog, EventLogError


def event(i: int, at: float, kind: EventKind = EventKind.RAISED, string: str = "A") -> AlarmEvent:
    return AlarmEvent(
        seq=0, kind=kind, alarm_id=f"cell_voltage_high:{string}:{i}", rule="cell_voltage_high",
        severity=Severity.ALARM if i % 2 else Severity.WARNING,
        path=ObjectPath("UPS1", string, i), value=2.45, limit=2.4, unit="V",
        message=f"cell {i} high", at=at,
    )  # fmt: skip


def test_new_log_is_wal_with_full_sync_and_sequence_from_one(tmp_path: Path):
    log = EventLog(tmp_path / "sub" / "events.sqlite")
    assert log.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    out = log.commit([event(1, 10.0), event(2, 11.0)])
    assert [e.seq for e in out] == [1, 2]
    assert log.last_seq() == 2
    log.close()
    normal = EventLog(tmp_path / "sub" / "events.sqlite", synchronous="normal")
    assert normal.db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert [e.seq for e in normal.events()] == [1, 2]


def test_event_round_trips_every_field(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    e = AlarmEvent(
        seq=0, kind=EventKind.ACKNOWLEDGED, alarm_id="string_comm_lost:A", rule="string_comm_lost",
        severity=Severity.CRITICAL, path=ObjectPath(None, "A", None), value=None, limit=None,
        unit="", message="lost", at=1234.5, by="ann",
    )  # fmt: skip
    [stored] = log.commit([e])
    assert log.events() == [stored] and stored.seq == 1


def test_filters(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    log.commit([event(i, float(i), string="A" if i < 5 else "B") for i in range(1, 11)])
    log.commit([event(3, 20.0, EventKind.CLEARED)])
    assert [e.seq for e in log.events(since=3, until=6)] == [3, 4, 5]
    assert [e.seq for e in log.events(string="B")] == [5, 6, 7, 8, 9, 10]
    assert [e.seq for e in log.events(kinds=["cleared"])] == [11]
    assert [e.seq for e in log.events(alarm_id="cell_voltage_high:A:3")] == [3, 11]
    assert [e.seq for e in log.events(severities=[1])] == [2, 4, 6, 8, 10]
    assert [e.seq for e in log.events(limit=2, newest_first=True)] == [11, 10]
    assert [e.seq for e in log.events(after_seq=9)] == [10, 11]


def test_active_table_changes_in_the_same_transaction(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    a = ActiveAlarm(
        "x:A:1", "cell_voltage_high", Severity.ALARM, ObjectPath("U", "A", 1), 2.5, 2.4, "V",
        "m", 1.0,
    )  # fmt: skip

    def boom(db: sqlite3.Connection) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        log.commit([event(1, 1.0)], upsert=[a], extra=boom)
    assert log.events() == [] and log.active() == []  # rolled back together
    log.commit([event(1, 1.0)], upsert=[a])
    assert log.active() == [a]
    log.commit([event(1, 2.0, EventKind.CLEARED)], delete=["x:A:1"])
    assert log.active() == []


def test_sequence_numbers_never_go_back_after_retention(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    log.commit([event(i, float(i)) for i in range(1, 6)])
    assert log.retain(max_age_s=100.0, max_bytes=1e9, now=1000.0) == 5
    assert log.events() == []
    [e] = log.commit([event(1, 1001.0)])
    assert e.seq == 6


def test_retention_by_age_keeps_recent_events(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    log.commit([event(i, float(i * 100)) for i in range(1, 11)])
    assert log.retain(max_age_s=450.0, max_bytes=1e9, now=1000.0) == 5
    assert [e.seq for e in log.events()] == [6, 7, 8, 9, 10]


def test_retention_by_size_drops_oldest_and_file_shrinks(tmp_path: Path):
    log = EventLog(tmp_path / "e.sqlite")
    for chunk in range(20):
        log.commit([event(i, float(chunk * 1000 + i)) for i in range(1000)])
    full = log.used_bytes()
    assert full > 2_000_000
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = (tmp_path / "e.sqlite").stat().st_size
    deleted = log.retain(max_age_s=1e12, max_bytes=full / 4, now=20_000.0)
    assert deleted > 0 and log.used_bytes() <= full / 4
    remaining = log.events()
    assert remaining[-1].seq == 20_000 and remaining[0].seq == deleted + 1  # oldest went first
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "e.sqlite").stat().st_size < size_before / 2
    assert log.integrity_ok()


def test_a_newer_schema_is_refused(tmp_path: Path):
    EventLog(tmp_path / "e.sqlite").close()
    db = sqlite3.connect(tmp_path / "e.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(EventLogError, match="schema version 99"):
        EventLog(tmp_path / "e.sqlite")


def test_a_second_process_can_read_while_the_writer_holds_the_file(tmp_path: Path):
    writer = EventLog(tmp_path / "e.sqlite")
    writer.commit([event(1, 1.0)])
    reader = EventLog(tmp_path / "e.sqlite")
    assert [e.seq for e in reader.events()] == [1]
    writer.commit([event(2, 2.0)])
    assert [e.seq for e in reader.events()] == [1, 2]


def test_a_file_that_is_not_an_event_log_is_a_clear_error(tmp_path: Path):
    (tmp_path / "e.sqlite").write_bytes(b"this is no database " * 100)
    with pytest.raises(EventLogError, match=r"e\.sqlite: not a usable event log"):
        EventLog(tmp_path / "e.sqlite")
