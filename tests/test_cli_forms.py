"""`check-config` and `run` take the gateway's file the same two ways: FILE or -c FILE."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_support import CLI, RunningGateway
from conftest import waiting_gateway_config


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
    gw = RunningGateway(*form, str(waiting_gateway_config(tmp_path)))
    try:
        gw.wait_for("gateway 'btms-gateway' running")
    finally:
        assert gw.stop() == 0, "\n".join(gw.log)


@pytest.mark.slow  # ~12 s on a shared 2-core box
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
