"""`btms-gateway demo` runs simulated strings through the real poller with every
plugin that runs on its defaults, prints the endpoints and a line per poll."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from cli_support import CLI, DEMO_PORTS, port_free, reading_stdout
from conftest import wait_for


def test_demo_polls_four_strings_in_two_ups_and_prints_endpoints(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "btms_gateway.core",
            "--log-level",
            "WARNING",
            "demo",
            "--duration",
            "6",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "bus demo-pty" in out and "bus demo-tcp" in out
    assert re.search(r"modbus_tcp\s+host=127\.0\.0\.1 port=5020", out)
    polls = re.findall(r"^\d\d:\d\d:\d\d  (A1|A2|B1|B2)\s+GOOD .* (\d+) cells", out, flags=re.M)
    assert {name for name, _ in polls} == {"A1", "A2", "B1", "B2"}
    assert ("A1", "120") in polls
    assert "Traceback" not in result.stderr


def _demo_env(tmpdir: Path) -> dict[str, str]:
    """The demo's own TMPDIR (``tempfile`` honours it), so what it leaves
    behind is all there is in that folder."""
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}


DEMO = [*CLI, "--log-level", "WARNING", "demo"]


def test_ctrl_c_leaves_no_folder_in_the_temporary_directory(tmp_path: Path) -> None:
    """Each run used to leave btms-demo-* (the pty's link) and btms-demo-var-*
    (the event log) behind. The demo says where its event log is, and removes
    its folder when stopped with Ctrl-C. Its simulator control socket (in that
    folder) starts a discharge from the command line, as the demo prints."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    # the demo's ports are fixed: another demo on this machine must have let go of them
    wait_for(lambda: all(port_free(k, p) for k, p in DEMO_PORTS), 60, f"demo ports {DEMO_PORTS}")
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


def test_a_failed_start_leaves_no_folder_either(tmp_path: Path) -> None:
    """The Modbus TCP port is taken (by this test, or by another demo): the
    gateway cannot start, the demo exits 1, and its folder goes all the same."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # already taken by someone else: as good
            taken.bind(("127.0.0.1", 5020))
            taken.listen()
        proc = subprocess.Popen(
            [*DEMO, "--duration", "30"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=_demo_env(tmpdir),
        )
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert list(tmpdir.iterdir()) == []
