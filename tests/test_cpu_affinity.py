"""``[gateway] cpu``: the gateway's threads on one CPU by default (core/affinity.py
says why), on any with ``"any"``, on a named one with a number; a CPU the
machine does not allow is a config error naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.affinity import allowed_cpus, chosen_cpus
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import load_config
from conftest import waiting_gateway_config

CLI = [sys.executable, "-m", "btms_gateway.core"]


def config(tmp_path: Path, cpu: str | None) -> Path:
    return waiting_gateway_config(tmp_path, "" if cpu is None else f"cpu = {cpu}")


def thread_cpus(pid: int) -> list[set[int]]:
    """The CPUs each thread of ``pid`` may run on (/proc/PID/task/*/status)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            line = next(x for x in f if x.startswith("Cpus_allowed_list:"))
        cpus: set[int] = set()
        for part in line.split(":", 1)[1].strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        out.append(cpus)
    return out


def test_the_choice() -> None:
    assert chosen_cpus("one", {0, 1, 3}) == {3}
    assert chosen_cpus("any", {0, 1, 3}) == {0, 1, 3}
    assert chosen_cpus(1, {0, 1, 3}) == {1}
    with pytest.raises(ValueError, match="CPU 2 is not one"):
        chosen_cpus(2, {0, 1, 3})


@pytest.mark.parametrize(("cpu", "expected"), [(None, "one"), ('"any"', "any"), ("0", "0")])
def test_every_thread_of_a_running_gateway_is_where_the_setting_says(
    tmp_path: Path, cpu: str | None, expected: str
) -> None:
    allowed = allowed_cpus()
    assert allowed is not None  # Linux: the gateway's platform
    want = {"one": {max(allowed)}, "any": allowed, "0": {0}}[expected]
    proc = subprocess.Popen(
        [*CLI, "run", "-c", str(config(tmp_path, cpu))],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "running" in line or time.monotonic() > deadline:
                break
        assert any("running" in line for line in lines), "".join(lines)
        per_thread = thread_cpus(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(per_thread) >= 2  # the loop and the bus thread at least
    assert all(cpus == want for cpus in per_thread), per_thread


def test_a_cpu_the_machine_does_not_allow_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, "4096"), create_manager())
    message = str(info.value)
    assert "gateway.cpu" in message and "not 4096" in message


def test_a_cpu_set_that_changed_since_the_check_is_a_warning_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from btms_gateway.core.affinity import pin_process

    with caplog.at_level("WARNING", logger="btms_gateway"):
        assert pin_process(4096) is None
    assert "not applied" in caplog.text and "CPU 4096" in caplog.text
