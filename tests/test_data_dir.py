"""A data_dir that cannot hold the event log, through the real command line.

Each case is a real file system state, not a mock: a regular file where the
directory should be, a read-only bind mount (the tests run as root, where
chmod stops no write), a full tmpfs, and an event log with a damaged page
(bytes of a b-tree page header flipped in a real events.sqlite).
``check-config`` (click's CliRunner) must report it as FILE: gateway.data_dir:
expected ..., and ``run`` (a real subprocess) must refuse with the config
exit code and no traceback, instead of crashing before any protocol is up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.alarms.eventlog import EventLog, EventLogError
from btms_gateway.core.cli import EXIT_CONFIG, build_cli
from click.testing import CliRunner
from conftest import waiting_gateway_config
from fs_support import fill, read_only, tmpfs

PAGE_SIZE = 4096
TABLE_LEAF = 0x0D  # b-tree page type byte of a table leaf page


def config(tmp_path: Path, data_dir: Path) -> Path:
    """A gateway that needs no hardware (its port appears later), storing in ``data_dir``."""
    return waiting_gateway_config(tmp_path, data_dir=data_dir)


def check_config(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), ["check-config", str(path)])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.output


def run(path: Path) -> tuple[int, str]:
    """``btms-gateway run -c FILE`` in its own process; a gateway that starts
    anyway is stopped after 20 s and fails the test."""
    cmd = [sys.executable, "-m", "btms_gateway.core", "run", "-c", str(path)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the gateway started on a bad data_dir: {exc.stderr!r}") from None
    return p.returncode, p.stderr


def refused(code: int, text: str, path: Path, found: str) -> None:
    assert code == EXIT_CONFIG, text
    assert "Traceback" not in text, text
    assert f"{path}: gateway.data_dir: expected " in text, text
    assert found in text, text


def damaged_log(directory: Path) -> Path:
    """A real event log of a few hundred pages, one table page in the middle
    with its header bytes flipped."""
    file = directory / "events.sqlite"
    log = EventLog(file)
    now = time.time()
    log.commit(
        [
            AlarmEvent(0, EventKind.RAISED, f"cell_voltage_high:S1:{i}", "cell_voltage_high",
                       Severity.ALARM, ObjectPath("UPS1", "S1", i), 2.5, 2.4, "V",
                       f"string S1 cell {i}: voltage high: 2.5 V (limit 2.4 V)", now)
            for i in range(3000)
        ]
    )  # fmt: skip
    log.close()
    data = bytearray(file.read_bytes())
    pages = len(data) // PAGE_SIZE
    page = next(i for i in range(pages // 2, pages) if data[i * PAGE_SIZE] == TABLE_LEAF)
    for j in range(8):
        data[page * PAGE_SIZE + j] ^= 0xFF
    file.write_bytes(bytes(data))
    return file


def test_a_file_where_the_directory_should_be(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.write_text("not a directory\n")
    path = config(tmp_path, data_dir)
    refused(*check_config(path), path, f"found a file: {data_dir}")
    refused(*run(path), path, f"found a file: {data_dir}")


def test_a_read_only_directory(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    path = config(tmp_path, data_dir)
    with read_only(data_dir):
        refused(*check_config(path), path, "a read-only file system")
        refused(*run(path), path, "a read-only file system")
    assert os.listdir(data_dir) == []


def test_a_read_only_parent_of_a_missing_directory(tmp_path):
    parent = tmp_path / "mnt"
    parent.mkdir()
    path = config(tmp_path, parent / "var")
    with read_only(parent):
        refused(*check_config(path), path, "a read-only file system")
        refused(*run(path), path, "a read-only file system")


def test_a_full_disk(tmp_path):
    with tmpfs(tmp_path / "var", "1m") as data_dir:
        path = config(tmp_path, data_dir)
        fill(data_dir)
        refused(*check_config(path), path, "a full disk")
        refused(*run(path), path, "a full disk")
        assert os.listdir(data_dir) == ["filler"]


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_a_damaged_event_log(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    file = damaged_log(data_dir)
    path = config(tmp_path, data_dir)
    code, text = check_config(path)
    refused(code, text, path, f"found {file}: the event log is damaged")
    assert "move the file aside" in text
    assert sorted(os.listdir(data_dir)) == ["events.sqlite"]  # read-only: nothing created
    refused(*run(path), path, str(file))


def test_the_gateway_itself_refuses_a_damaged_log(tmp_path):
    """Whatever starts it (run, demo, a test harness): the pages are checked on open."""
    from btms_gateway.kit.testing import GatewayHarness, plant_config

    file = damaged_log(tmp_path)
    with pytest.raises(EventLogError, match=str(file)):
        GatewayHarness(plant_config(strings=1, ups=1, data_dir=str(tmp_path)), alarms=True)


def test_a_sound_directory_passes_and_check_config_leaves_nothing_behind(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    log = EventLog(data_dir / "events.sqlite")
    log.close()
    path = config(tmp_path, data_dir)
    code, text = check_config(path)
    assert code == 0, text
    assert sorted(os.listdir(data_dir)) == ["events.sqlite"]
    missing = tmp_path / "new" / "var"  # created by run, never by check-config
    path = config(tmp_path, missing)
    code, text = check_config(path)
    assert code == 0, text
    assert not (tmp_path / "new").exists()
