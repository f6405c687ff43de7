"""``btms-gateway events`` / ``alarms``: reading the log, and requests that a
CLI process hands to a running engine through the db."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms import inbox
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.alarms_cli import alarms, events
from btms_gateway.core.model import Quality
from btms_gateway.kit import synthetic as sy
from click.testing import CliRunner

NOW = {"on_delay_s": 0, "off_delay_s": 0}


def running_engine(path: Path) -> tuple[AlarmEngine, list]:
    """An engine with cell 3 high, cell 4 hot and a second reading that clears cell 3."""
    seen = sy.Emitted()
    s = AlarmsSection.model_validate(
        {"rules": {"cell_voltage_high": NOW, "cell_temperature_high": NOW}, "baseline_readings": 1}
    )
    engine = AlarmEngine(s, EventLog(path), seen)
    plant = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
    engine.restore(plant)
    t0 = time.time()
    for i, cells in enumerate([sy.cells(v={3: 2.5}, t={4: 50.0}), sy.cells(t={4: 50.0})]):
        snap = sy.string("A", sy.reading(t0 + i, cells))
        plant = sy.with_string(plant, snap)
        engine.on_string(snap, plant)
    return engine, seen


def cli_process(*args: str) -> subprocess.Popen[str]:
    """``btms-gateway alarms ...`` as its own process, as an operator runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "btms_gateway.core", "alarms", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def serve_until_exit(engine: AlarmEngine, proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Tick the engine (as the gateway does once a second) until the CLI exits."""
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        assert time.monotonic() < deadline, "CLI did not finish within 30 s"
        engine.tick(time.time())
        time.sleep(0.05)
    return proc.returncode, proc.stdout.read() if proc.stdout else ""


def test_events_list_and_export_with_filters(tmp_path: Path):
    db = tmp_path / "events.sqlite"
    engine, seen = running_engine(db)
    assert [e.kind for e in seen] == [EventKind.RAISED, EventKind.RAISED, EventKind.CLEARED]
    r = CliRunner().invoke(events, ["list", "--db", str(db)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == 3 and "cell_voltage_high:A:3" in lines[0] and "cleared" in lines[2]

    r = CliRunner().invoke(
        events, ["export", "--db", str(db), "--format", "jsonl", "--kind", "raised"]
    )
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [x["alarm_id"] for x in rows] == ["cell_voltage_high:A:3", "cell_temperature_high:A:4"]
    assert rows[1]["value"] == 50.0 and rows[1]["path"]["cell"] == 4

    r = CliRunner().invoke(
        events, ["export", "--db", str(db), "--format", "csv", "--alarm", "cell_voltage_high:A:3"]
    )
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert [(x["seq"], x["kind"]) for x in table] == [("1", "raised"), ("3", "cleared")]

    r = CliRunner().invoke(events, ["list", "--db", str(db), "--limit", "1"])
    assert len(r.output.splitlines()) == 1 and r.output.split()[0] == "3"
    r = CliRunner().invoke(
        events, ["list", "--db", str(db), "--since", "1h", "--severity", "warning"]
    )
    assert r.exit_code == 0 and r.output == ""
    r = CliRunner().invoke(events, ["list", "--db", str(db), "--since", "yesterday-ish"])
    assert r.exit_code == 2 and "ISO time" in r.output
    engine.close()


def test_events_without_a_log_is_a_clear_error(tmp_path: Path):
    r = CliRunner().invoke(events, ["list", "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 1 and "no event log at" in r.output
    r = CliRunner().invoke(events, ["list"])
    assert r.exit_code == 2 and "-c CONFIG" in r.output


def test_config_file_locates_the_db_in_data_dir(tmp_path: Path):
    data = tmp_path / "var"
    running_engine(data / "events.sqlite")[0].close()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f"""
[gateway]
data_dir = "{data}"
[[buses]]
name = "bus1"
port = "/dev/ttyUSB-absent"
wait_for_port = true
[[strings]]
name = "A"
bus = "bus1"
slave_id = 1
"""
    )
    r = CliRunner().invoke(alarms, ["-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "cell_temperature_high:A:4" in r.output and "unacknowledged" in r.output
    assert "cell_voltage_high:A:3" not in r.output


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_ack_from_another_process_reaches_the_running_engine(tmp_path: Path):
    db = tmp_path / "events.sqlite"
    engine, seen = running_engine(db)
    aid = "cell_temperature_high:A:4"
    code, out = serve_until_exit(engine, cli_process("--db", str(db), "ack", aid, "--by", "ann"))
    assert code == 0, out
    assert "acknowledged by ann" in out
    assert seen[-1].kind is EventKind.ACKNOWLEDGED and seen[-1].by == "ann"
    assert engine.active()[0].acknowledged_by == "ann"
    code, out = serve_until_exit(engine, cli_process("--db", str(db), "ack", "nope:A", "--by", "x"))
    assert code == 1 and "no active alarm 'nope:A'" in out
    r = CliRunner().invoke(alarms, ["--db", str(db), "list"])
    assert "ack by ann" in r.output
    engine.close()


def test_ack_without_a_running_gateway_times_out_and_later_expires(tmp_path: Path):
    db = tmp_path / "events.sqlite"
    engine, _ = running_engine(db)
    aid = "cell_temperature_high:A:4"
    r = CliRunner().invoke(alarms, ["--db", str(db), "ack", aid, "--by", "ann", "--timeout", "0.3"])
    assert r.exit_code == 1 and "is the gateway running?" in r.output
    engine.tick(time.time() + engine.settings.request_ttl_s + 1)  # the gateway comes back late
    assert engine.active()[0].acknowledged_by is None
    [row] = engine.log.read("SELECT ok, result FROM requests")
    assert row == (0, "expired before the gateway picked it up")
    engine.close()


def test_baseline_set_show_learn_and_capture(tmp_path: Path):
    db = tmp_path / "events.sqlite"
    engine, _ = running_engine(db)  # baseline_readings = 1: learned from the first reading
    ev = engine._evals["A"]
    assert ev.baselines.values[7] == 0.5
    r = CliRunner().invoke(
        alarms, ["--db", str(db), "baseline", "set", "A", "--cell", "7", "--mohm", "0.8"]
    )
    assert r.exit_code == 0, r.output
    engine.tick(time.time())  # picks up the reload request
    assert ev.baselines.values[7] == 0.8
    r = CliRunner().invoke(alarms, ["--db", str(db), "baseline", "show", "A"])
    assert any(
        " 7 " in line and "0.800" in line and "set" in line for line in r.output.splitlines()
    )
    r = CliRunner().invoke(alarms, ["--db", str(db), "baseline", "learn", "A", "--cell", "7"])
    assert r.exit_code == 0 and "1 baseline(s) of A forgotten" in r.output
    engine.tick(time.time())
    assert 7 not in ev.baselines.values and ev.learn_pending
    code, out = serve_until_exit(engine, cli_process("--db", str(db), "baseline", "set", "A"))
    assert code == 0 and "baselines of 120 cells re-taken by cli:" in out, out  # who: the login
    assert ev.baselines.values[7] == 0.5
    rows = engine.log.read("SELECT COUNT(*) FROM baseline WHERE string='A' AND source='set'")
    assert rows == [(120,)]
    engine.close()


def test_requests_are_applied_once(tmp_path: Path):
    db = tmp_path / "events.sqlite"
    engine, seen = running_engine(db)
    rid = inbox.submit(engine.log, inbox.ACK, alarm_id="cell_temperature_high:A:4", by="bob")
    engine.tick(time.time())
    engine.tick(time.time())
    assert inbox.outcome(engine.log, rid).ok
    assert [e.kind for e in seen].count(EventKind.ACKNOWLEDGED) == 1
    engine.close()
