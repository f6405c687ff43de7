"""`events` and `alarms` on a file that is no usable event log, through the real CLI.

A file that is not SQLite at all, and a real event log with a damaged page
in the middle of its events (what a failing disk leaves): every command
says which file and what is wrong in one line and exits 1, never a
traceback.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.alarms.eventlog import EventLog
from cli_support import CLI

PAGE = 4096

COMMANDS = [
    ["events", "list"],
    ["events", "export", "--format", "csv"],
    ["alarms"],
    ["alarms", "baseline", "show"],
]


def damaged_in_the_middle(tmp_path: Path) -> Path:
    """A real event log of 2,000 events with four pages overwritten half-way."""
    path = tmp_path / "events.sqlite"
    log = EventLog(path)
    now = time.time()
    log.commit(
        [
            AlarmEvent(
                seq=0, at=now + i, kind=EventKind.RAISED, alarm_id=f"cell_voltage_high:S1:{i}",
                rule="cell_voltage_high", severity=Severity.ALARM,
                path=ObjectPath(ups=None, string="S1", cell=i % 120 + 1), value=2.5, limit=2.4,
                unit="V", message="cell voltage high " + "x" * 200,
            )
            for i in range(2000)
        ]
    )  # fmt: skip
    log.close()  # checkpointed: every event is in the main file
    size = path.stat().st_size
    assert size > 100 * PAGE and not Path(f"{path}-wal").exists()
    with path.open("r+b") as f:  # the events table fills the file: damage its middle
        f.seek(size // 2 // PAGE * PAGE)
        f.write(b"\xde\xad" * (2 * PAGE))
    return path


def run_all(path: Path, commands: list[list[str]]) -> list[tuple[list[str], int, str]]:
    """Each command on ``path``, side by side: (command, exit status, stderr)."""
    procs = [
        (args, subprocess.Popen([*CLI, *args, "--db", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
        for args in commands
    ]  # fmt: skip
    out = []
    for args, proc in procs:
        _, err = proc.communicate(timeout=60)
        out.append((args, proc.returncode, err))
    return out


@pytest.mark.slow  # ~9 s on a shared 2-core box
def test_a_file_that_is_not_sqlite_is_named_by_every_command(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    for args, status, err in run_all(path, COMMANDS):
        assert (status, err.splitlines()) == (
            1, [f"Error: {path}: not a usable event log (file is not a database)"]
        ), args  # fmt: skip


@pytest.mark.slow  # ~8 s on a shared 2-core box
def test_a_damaged_page_met_while_reading_is_named(tmp_path: Path) -> None:
    path = damaged_in_the_middle(tmp_path)
    for args, status, err in run_all(path, COMMANDS):
        assert "Traceback" not in err, (args, err)
        if args[0] == "events":  # these read every event, and so the damaged page
            assert (status, err.splitlines()) == (
                1, [f"Error: {path}: cannot use the event log (database disk image is malformed)"]
            ), args  # fmt: skip
        else:  # the active alarms and baselines live on pages still intact
            assert status == 0, (args, err)
