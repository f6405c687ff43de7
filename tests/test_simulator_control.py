"""Driving a running simulator from the command line: a discharge started and
stopped, any alarm forced and put back, through the control socket and
``btms-gateway simulate-control``; weak cells injected on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from btms_gateway.core.alarms.rules import RULES
from btms_gateway.core.cli import build_cli
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.bmsm.simulator.control import FORCINGS, ControlServer, Target
from click.testing import CliRunner


def _cli(sock: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(build_cli(), ["simulate-control", "--socket", str(sock), *args])
    return out.exit_code, out.output


@pytest.fixture
def running(tmp_path: Path):  # type: ignore[no-untyped-def]
    sock = tmp_path / "control.sock"
    with Simulator([1, 2], cells=12, baud=115200, weak_cells={1: [3, 8]}, frozen=True) as sim:
        server = ControlServer(sock, {"A1": Target(sim, 1), "A2": Target(sim, 2)}).start()
        try:
            yield sim, sock
        finally:
            server.stop()


def test_every_cell_and_string_rule_can_be_forced() -> None:
    rules = {n for n, r in RULES.items() if r.scope in ("cell", "string")}
    assert rules - {"string_soh_low"} == set(FORCINGS)  # string SOH: derived from the cells


def test_status_and_a_discharge_started_and_stopped(running) -> None:  # type: ignore[no-untyped-def]
    sim, sock = running
    code, out = _cli(sock, "status")
    assert code == 0
    status = json.loads(out)
    assert status["A1"]["weak_cells"] == [3, 8] and status["A1"]["discharging"] is False
    code, out = _cli(sock, "discharge", "--string", "A1", "--current", "50")
    assert code == 0 and "A1: discharging at 50 A" in out
    model = sim.model(1)
    assert model.run is not None and model.string["current_a"] == -50.0
    assert model.string["state"] == 2
    code, out = _cli(sock, "stop", "--string", "A1")
    assert code == 0 and "discharge stopped" in out
    assert model.run is None and model.string["current_a"] > 0 and model.string["state"] == 0
    code, out = _cli(sock, "stop", "--string", "A1")
    assert code == 1 and "not discharging" in out
    code, out = _cli(sock, "discharge", "--string", "NOPE", "--current", "5")
    assert code == 1 and "string: one of A1, A2" in out


def test_a_forced_alarm_changes_the_truth_and_clear_puts_it_back(running) -> None:  # type: ignore[no-untyped-def]
    sim, sock = running
    before = sim.model(2).cells[4].voltage_v
    code, out = _cli(sock, "force-alarm", "cell_voltage_high", "--string", "A2", "--cell", "5")
    assert code == 0 and "forced" in out
    assert sim.expected(2).cells[4].voltage_v == 2.45
    code, _ = _cli(sock, "force-alarm", "bmsm_soc_low", "--string", "A2")
    assert code == 0 and sim.expected(2).alarms & 16
    code, _ = _cli(sock, "force-alarm", "cell_voltage_high", "--string", "A2", "--cell", "5",
                   "--clear")  # fmt: skip
    assert code == 0 and sim.model(2).cells[4].voltage_v == before
    code, _ = _cli(sock, "force-alarm", "bmsm_soc_low", "--string", "A2", "--clear")
    assert code == 0 and not sim.expected(2).alarms
    code, out = _cli(sock, "force-alarm", "string_comm_lost", "--string", "A2", "--clear")
    assert code == 1 and "was not forced" in out


def test_weak_cells_from_the_command_line(tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    argv = ["simulate", "--cells", "10", "--baud", "115200", "--weak-cells", "3,5"]
    argv += ["--control", str(sock), "--duration", "0.3"]
    out = CliRunner().invoke(build_cli(), argv)
    assert out.exit_code == 0, out.output
    assert f"--socket {sock}" in out.output
    bad = CliRunner().invoke(build_cli(), ["simulate", "--weak-cells", "0,200", "--duration", "0"])
    assert bad.exit_code == 2 and "expected cells 1..120" in bad.output
