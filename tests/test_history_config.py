"""The ``[history]`` section: on by default, checked like every other section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from btms_gateway.kit.testing import GatewayHarness, plant_config

BIN = Path(sys.executable).parent / "btms-gateway"


def test_history_is_on_by_default_under_data_dir(tmp_path: Path) -> None:
    h = GatewayHarness(plant_config(strings=1, ups=1, data_dir=str(tmp_path)))
    assert h.gateway.history is not None
    assert h.gateway.history.path == tmp_path / "history.sqlite"
    config = plant_config(strings=1, ups=1, data_dir=str(tmp_path))
    config["history"] = {"enabled": False}
    assert GatewayHarness(config).gateway.history is None


@pytest.mark.slow  # ~5 s on a shared 2-core box
def test_bad_history_settings_are_reported_with_their_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[[buses]]\nname = "b"\nport = "/dev/null"\n'
        '[[strings]]\nname = "S1"\nbus = "b"\nslave_id = 1\n'
        "[history]\nhour_retention_days = 30\nbudget_mb = 0\nraw_retention_hours = 48\n"
    )
    done = subprocess.run([str(BIN), "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{path}: history.budget_mb: expected greater than or equal to 1" in done.stderr
    path.write_text(path.read_text().replace("budget_mb = 0\n", ""))
    done = subprocess.run([str(BIN), "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert (
        f"{path}: history: expected hour_retention_days to be at least minute_retention_days"
        in done.stderr
    )
