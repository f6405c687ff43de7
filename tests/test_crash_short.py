"""bench/crash.py, shortened: kill -9 of a gateway process during alarm
bursts and a config reload; the event log checked with sqlite3 each time."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import crash


def test_checks_catch_lost_doubled_and_reraised_events(tmp_path: Path) -> None:
    """The checks themselves can fail."""
    log = {
        "integrity": "ok",
        "events": [(1, "raised", "a"), (2, "raised", "b"), (4, "cleared", "a")],
        "active": {"a", "b"},
    }
    bad = crash.check_after_kill(log, seen=[(3, "raised", "c")])
    assert any("contiguous" in b for b in bad)
    assert any("not in the log" in b for b in bad)
    assert any("active table disagrees" in b for b in bad)
    before = {"events": [(1, "raised", "a")], "active": {"a"}}
    now = {"events": [(1, "raised", "a"), (2, "raised", "a")], "active": {"a"}}
    assert crash.check_after_restart(before, now, rest_active={"a"}) == [
        "a raised again after restart"
    ]
    assert "not restored" in crash.check_after_restart(before, before, rest_active=set())[0]
    # and a real file read with sqlite3
    db = tmp_path / "x.sqlite"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT, alarm_id TEXT);"
        "CREATE TABLE active (alarm_id TEXT PRIMARY KEY);"
        "INSERT INTO events VALUES (1, 'raised', 'a'); INSERT INTO active VALUES ('a');"
    )
    con.commit()
    con.close()
    got = crash.read_log(db)
    assert crash.check_after_kill(got, seen=[(1, "raised", "a")]) == []


@pytest.mark.slow  # ~30 s: kill -9 rounds
def test_short_kill9_rounds_keep_the_event_log_whole() -> None:
    r = crash.run(rounds=5, strings=2, cells=40, log=lambda *a: None)
    s = r["stats"]
    assert s["kills"] == 5 and s["reloads"] == 1
    assert s["events"] > 20 and s["seen_by_plugin"] > 0 and s["restarts_checked"] >= 3
    assert r["problems"] == []
