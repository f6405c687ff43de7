"""`btms-gateway demo` runs simulated strings through the real poller with every
plugin that runs on its defaults, prints the endpoints and a line per poll."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cli_support import CLI, DEMO, demo_default_ports, demo_endpoints, occupying, reading_stdout
from conftest import wait_for


@pytest.mark.slow  # ~9 s on a shared 2-core box
def test_demo_polls_four_strings_in_two_ups_and_prints_endpoints(tmp_path):
    result = subprocess.run(
        [*DEMO, "--duration", "6", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "bus demo-pty" in out and "bus demo-tcp" in out
    assert re.search(r"modbus_tcp\s+host=127\.0\.0\.1 port=\d+", out)
    polls = re.findall(r"^\d\d:\d\d:\d\d  (A1|A2|B1|B2)\s+GOOD .* (\d+) cells", out, flags=re.M)
    assert {name for name, _ in polls} == {"A1", "A2", "B1", "B2"}
    assert ("A1", "120") in polls
    assert "Traceback" not in result.stderr


def _demo_env(tmpdir: Path) -> dict[str, str]:
    """The demo's own TMPDIR (``tempfile`` honours it), so what it leaves
    behind is all there is in that folder."""
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}


def test_demo_with_its_default_ports_taken_serves_on_free_ones(tmp_path: Path) -> None:
    """Another gateway or demo holds 8080, 5020, 1161, 47808...: `--free-ports`
    puts every listener elsewhere, says where, and each answers there."""
    defaults = demo_default_ports()
    assert {8080, 5020, 1161, 47808} <= defaults
    with (
        occupying(defaults) as held,
        reading_stdout([*DEMO, "--data-dir", str(tmp_path)]) as (proc, lines),
    ):
        wait_for(
            lambda: proc.poll() is not None or any(" GOOD " in line for line in lines),
            60,
            "a GOOD poll line",
        )
        assert proc.poll() is None, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
        served = demo_endpoints(lines)
        assert {"web", "modbus_tcp", "snmp", "bacnet"} <= served.keys(), lines
        assert not set(served.values()) & (defaults | held), served
        url = f"http://127.0.0.1:{served['web']}/health/ready"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        with socket.create_connection(("127.0.0.1", served["modbus_tcp"]), timeout=10):
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_ctrl_c_leaves_no_folder_in_the_temporary_directory(tmp_path: Path) -> None:
    """Each run used to leave btms-demo-* (the pty's link) and btms-demo-var-*
    (the event log) behind. The demo says where its event log is, and removes
    its folder when stopped with Ctrl-C. Its simulator control socket (in that
    folder) starts a discharge from the command line, as the demo prints."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with reading_stdout(DEMO, env=_demo_env(tmpdir)) as (proc, lines):
        wait_for(lambda: any(" GOOD " in line for line in lines), 60, "a GOOD poll line")
        log_line = next(line for line in lines if "event log" in line)
        assert str(tmpdir) in log_line and "removed at exit" in log_line
        assert [p.name[:10] for p in tmpdir.iterdir()] == ["btms-demo-"]  # while it runs
        control = next(line for line in lines if "simulator control:" in line)
        argv = control.split("simulator control: btms-gateway ", 1)[1].split("   ")[0].split()
        started = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=30)
        assert started.returncode == 0 and "A1: discharging at 50 A" in started.stdout
        status = subprocess.run([*CLI, *argv[:3], "status"], capture_output=True, text=True)
        assert json.loads(status.stdout)["A1"]["discharging"] is True
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    assert list(tmpdir.iterdir()) == []


@pytest.mark.slow  # ~5 s on a shared 2-core box
def test_a_failed_start_leaves_no_folder_either(tmp_path: Path) -> None:
    """The Modbus TCP port is taken (by this test, or by another demo), the
    demo told to use its defaults: the gateway cannot start, the demo exits 1,
    and its folder goes all the same."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with occupying({5020}):
        proc = subprocess.Popen(
            [*CLI, "--log-level", "WARNING", "demo", "--duration", "30"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=_demo_env(tmpdir),
        )
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert list(tmpdir.iterdir()) == []
