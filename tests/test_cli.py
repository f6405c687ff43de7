"""The command line: version, plugin discovery through entry points, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.version import __version__
from conftest import waiting_gateway_config

CLI = [sys.executable, "-m", "btms_gateway.core"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"btms-gateway, version {__version__}"


def test_plugins_lists_the_example_package_found_through_its_entry_point():
    lines = run("plugins").stdout.splitlines()
    jsonl = next(line for line in lines if line.startswith("jsonl "))
    assert "btms-jsonl-logger 1.0.0" in jsonl
    assert "string_reading" in jsonl and "register_commands" in jsonl
    assert any(line.startswith("bmsm ") for line in lines)


def test_a_plugin_adds_a_command(tmp_path):
    data = tmp_path / "r.jsonl"
    data.write_text('{"type":"reading","string":{"name":"A1"}}\n{"type":"alarm"}\n')
    result = run("jsonl-summary", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["alarm:alarm\t1", "reading:A1\t1"]


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_sigterm_and_sigint_stop_the_gateway_cleanly_within_2_s(tmp_path):
    config = waiting_gateway_config(tmp_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(
            [*CLI, "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        for line in proc.stderr:
            if "running" in line or time.monotonic() > deadline:
                break
        proc.send_signal(sig)
        sent = time.monotonic()
        returncode = proc.wait(timeout=10)
        assert returncode == 0
        assert time.monotonic() - sent < 2.0, f"{sig!r} took too long to stop the gateway"
        assert Path(tmp_path / "out.jsonl").exists()
