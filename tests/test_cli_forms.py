"""`check-config` and `run` take the gateway's file the same two ways: FILE or -c FILE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import waiting_gateway_config

CLI = [sys.executable, "-m", "btms_gateway.core"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("form", [[], ["-c"], ["--config"]], ids=["FILE", "-c", "--config"])
def test_check_config_takes_the_file_both_ways(tmp_path: Path, form: list[str]) -> None:
    config = waiting_gateway_config(tmp_path)
    result = cli("check-config", *form, str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: OK: 1 bus(es)")


@pytest.mark.parametrize("form", [[], ["-c"]], ids=["FILE", "-c"])
def test_run_takes_the_file_both_ways(tmp_path: Path, form: list[str]) -> None:
    config = waiting_gateway_config(tmp_path)
    proc = subprocess.Popen(
        [*CLI, "run", *form, str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "running" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, "".join(seen)
    assert any("gateway 'btms-gateway' running" in line for line in seen), "".join(seen)


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_no_file_or_two_files_is_a_usage_error(tmp_path: Path, command: str) -> None:
    config = waiting_gateway_config(tmp_path)
    none = cli(command)
    assert none.returncode == 2
    assert "give the gateway's TOML file, as FILE or -c FILE" in none.stderr
    other = tmp_path / "other.toml"
    two = cli(command, "-c", str(config), str(other))
    assert two.returncode == 2
    assert f"two configuration files given ({config} and {other}): give one" in two.stderr
    same = cli("check-config", "-c", str(config), str(config))
    assert same.returncode == 0, same.stderr
