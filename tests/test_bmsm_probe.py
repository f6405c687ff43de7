"""`btms-gateway probe`: one BM-SM read once, every register of its map shown
with its raw words, decoded value, range and a flag on what is not a
measurement; `--scan` finds the slave ids on a bus. Against the simulator
over a real pseudo-terminal and over RTU over TCP: a healthy map (nothing
flagged, exit 0), corrupted and shifted maps (flagged, exit 1), no answer
and usage errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bmsm_support import SHIFTED
from btms_gateway.core.cli import build_cli
from btms_gateway.core.model import CellStatus
from btms_gateway.core.profiles import ErrorKind
from btms_gateway.protocols.bmsm.overrides import load_map
from btms_gateway.protocols.bmsm.probe import ScanHit, scan
from btms_gateway.protocols.bmsm.registers import CELL_ARRAYS
from btms_gateway.protocols.bmsm.regmap import DEFAULT_MAP
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.rtu import open_link
from cli_support import CLI
from click.testing import CliRunner, Result

BAUD = "115200"


def probe(sim: Simulator, *args: str) -> Result:
    where = (
        ["--host", sim.tcp_address[0], "--tcp-port", str(sim.tcp_address[1])]
        if sim.transport == "tcp"
        else ["--port", sim.port]
    )
    return CliRunner().invoke(build_cli(), ["probe", *where, "--baud", BAUD, *args])


def probe_json(sim: Simulator, *args: str) -> tuple[int, dict[str, Any]]:
    r = probe(sim, "--format", "json", *args)
    return r.exit_code, json.loads(r.stdout)


def rows(doc: dict[str, Any], quantity: str) -> list[dict[str, Any]]:
    return [r for r in doc["registers"] if r["quantity"] == quantity]


def assert_words_are_the_devices(doc: dict[str, Any], sim: Simulator, slave: int) -> None:
    """Every register shown holds exactly the words the device serves there."""
    for r in doc["registers"]:
        assert r["words"] == sim.registers(slave, r["address"], len(r["words"])), r


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_a_healthy_map_shows_every_register_and_flags_nothing(transport: str) -> None:
    with Simulator([7], cells=12, baud=int(BAUD), seed=3, frozen=True,
                   transport=transport) as sim:  # fmt: skip
        code, doc = probe_json(sim, "--slave", "7")
        assert_words_are_the_devices(doc, sim, 7)
        truth = sim.expected(7)
    assert code == 0 and doc["status"] == 0 and doc["error"] is None
    assert doc["summary"] == {"registers": 14 + 6 * 12, "flagged": 0}
    assert doc["cell_count"] == 12 and doc["cells_read"] == 12
    assert not any(r["flags"] for r in doc["registers"])
    string = {r["quantity"]: r for r in doc["registers"] if r["cell"] is None}
    assert string["string.voltage_v"]["value"] == truth.voltage_v
    assert (
        string["string.voltage_v"]["address"] == 0 and len(string["string.voltage_v"]["words"]) == 2
    )
    assert string["string.voltage_v"]["valid"] == [[20.0, 800.0]]
    assert string["string.voltage_v"]["source"] == "documented"
    assert string["string.ambient_temperature_c"]["source"] == "assumed"
    assert [r["address"] for r in rows(doc, "reserved")] == [5, 8, 9]
    for field in ("voltage_v", "resistance_mohm", "temperature_c", "soc_pct", "soh_pct"):
        got = [r["value"] for r in rows(doc, f"cell.{field}")]
        assert got == [getattr(c, field) for c in truth.cells], field
    assert [r["address"] for r in rows(doc, "cell.status")] == list(range(2000, 2012))


def test_the_text_output_is_a_table_per_area_with_a_summary() -> None:
    """The real command, as an integrator runs it."""
    with Simulator([1], cells=12, baud=int(BAUD), seed=1, frozen=True) as sim:
        words = sim.registers(1, 1004, 1)
        r = subprocess.run([*CLI, "probe", "--port", sim.port, "--baud", BAUD, "--slave", "1"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        lines[0] == f"BM-SM probe: slave 1 on {sim.port} (115200 8N1); register map: default table"
    )
    assert "String block (HR 0..15)" in lines
    row = next(x for x in lines if x.startswith("  11 "))
    assert (
        row.split()[1:4] == ["00EB", "235", "23.5"] and row.split()[-1] == "ambient_temperature_c"
    )
    assert any(x.startswith("cell.voltage_v: HR 1000 + i, uint16, scale 0.001 V") for x in lines)
    cell5 = f"    5  1004 {words[0]:04X} {words[0]:>5}    {words[0] / 1000:.3f}"
    assert any(cell5 in x for x in lines), cell5
    assert lines[-1] == "summary: 86 registers, 0 flagged: nothing flagged"


def test_a_corrupted_map_is_flagged_register_by_register() -> None:
    """A resistance of 65 535 uOhm, a temperature of -3276.8 C, a reserved
    register holding a value, an ambient sensor's no-sensor marker, a lost
    sensor, and a cell count above what the device holds (zero-filled cells
    below it); then a count over 120."""
    with Simulator([2], cells=12, baud=int(BAUD), seed=4, frozen=True) as sim:
        sim.poke(2, 1201, [0xFFFF])  # cell 2 resistance
        sim.poke(2, 1402, [0x8000])  # cell 3 temperature: -3276.8 C
        sim.poke(2, 5, [7])  # reserved
        sim.set_string(2, ambient_temperature_c=None)  # 0x8000: no sensor fitted
        sim.set_cell(2, 4, status=CellStatus.SENSOR_LOST)
        sim.poke(2, 10, [14])  # 14 cells counted, 12 measured
        code, doc = probe_json(sim, "--slave", "2")
        assert_words_are_the_devices(doc, sim, 2)
        sim.poke(2, 10, [130])
        code130, doc130 = probe_json(sim, "--slave", "2")
    assert code == 1 and doc["status"] == 1

    def flags(quantity: str, cell: int | None = None) -> list[str]:
        (r,) = [r for r in rows(doc, quantity) if r["cell"] == cell]
        return r["flags"]

    assert flags("cell.resistance_mohm", 2) == [
        "outside 0.1..50 mOhm (raw 0xFFFF: all bits set, what firmware sends for 'no value')"
    ]
    assert flags("cell.temperature_c", 3) == [
        "outside -20..85 C (raw 0x8000: the int16 minimum, what firmware sends for 'no value')"
    ]
    assert [r["flags"] for r in rows(doc, "reserved") if r["address"] == 5] == [
        ["reserved (reads 0 in the table), but holds a value: is a quantity here?"]
    ]
    assert flags("string.ambient_temperature_c")[0].startswith("no-sensor marker 0x8000")
    assert flags("cell.status", 4) == ["sensor lost: the cell's values are not published"]
    for cell in (13, 14):
        assert any("zero-filled cell below the count" in f for f in flags("cell.soc_pct", cell))
    assert not flags("cell.voltage_v", 1) and not flags("cell.resistance_mohm", 1)
    flagged = sum(1 for r in doc["registers"] if r["flags"])
    assert doc["summary"] == {"registers": 14 + 6 * 14, "flagged": flagged}
    # a count over 120: flagged, and 120 cells read (the most a BM-SM has)
    assert code130 == 1 and doc130["cell_count"] == 130 and doc130["cells_read"] == 120
    (count,) = rows(doc130, "string.cell_count")
    assert count["flags"] == ["over 120: a BM-SM has at most 120 cells"]


def test_an_array_the_device_refuses_is_flagged_and_the_rest_read() -> None:
    with Simulator([2], cells=12, baud=int(BAUD), frozen=True, past_count="exception") as sim:
        sim.poke(2, 10, [14])  # counted past what it serves: exception 02 for every array
        code, doc = probe_json(sim, "--slave", "2")
    assert code == 1
    assert [a["quantity"] for a in doc["arrays_refused"]] == [
        f"cell.{a.field}" for a in CELL_ARRAYS
    ]
    assert doc["arrays_refused"][0]["flag"] == (
        "HR 1000..1013 answered exception 02 (illegal data address): the device has no "
        "registers there"
    )


def test_a_shifted_map_is_flagged_and_the_matching_override_reads_it(tmp_path: Path) -> None:
    """A firmware whose cell arrays start one register later: with the default
    table, cell 1 of every array reads 0 (flagged: out of range, zero-filled);
    with the override that says so, nothing is flagged and every word is the
    device's own."""
    (tmp_path / "fw.toml").write_text(SHIFTED)
    with Simulator([1], cells=12, baud=int(BAUD), seed=1, frozen=True,
                   regmap=load_map(tmp_path / "fw.toml")) as sim:  # fmt: skip
        code, doc = probe_json(sim, "--slave", "1")
        fixed_code, fixed = probe_json(
            sim, "--slave", "1", "--register-overrides", str(tmp_path / "fw.toml")
        )
        assert_words_are_the_devices(fixed, sim, 1)
        truth = sim.expected(1)
    assert code == 1
    (v1,) = [r for r in rows(doc, "cell.voltage_v") if r["cell"] == 1]
    assert v1["words"] == [0] and v1["flags"][0] == "outside 1.6..2.6 or 7.5..15.6 V"
    assert all(
        any("zero-filled" in f for f in r["flags"])
        for r in doc["registers"]
        if r["cell"] == 1 and r["quantity"] != "cell.status"
    )
    # the rest looks plausible, but is the previous cell's: only the map can tell
    assert [r["value"] for r in rows(doc, "cell.voltage_v")][1:] == [
        c.voltage_v for c in truth.cells[:-1]
    ]
    assert fixed_code == 0 and fixed["summary"]["flagged"] == 0
    assert fixed["register_map"] == str(tmp_path / "fw.toml")
    assert [r["address"] for r in rows(fixed, "cell.voltage_v")] == list(range(1001, 1013))
    assert rows(fixed, "cell.voltage_v")[0]["overridden"] == "base 1001 (was 1000)"
    assert [r["value"] for r in rows(fixed, "cell.voltage_v")] == [c.voltage_v for c in truth.cells]


def test_cells_limits_what_is_read_and_shown() -> None:
    with Simulator([1], cells=40, baud=int(BAUD), frozen=True) as sim:
        code, doc = probe_json(sim, "--slave", "1", "--cells", "5")
        text = probe(sim, "--slave", "1", "--cells", "0").output
    assert code == 0 and doc["cell_count"] == 40 and doc["cells_read"] == 5
    assert doc["summary"]["registers"] == 14 + 6 * 5
    assert doc["transactions"] == 1 + 6
    assert "Cell arrays: cell count 40, 0 cell(s) read" in text and "cell.voltage_v" not in text
    assert text.endswith("summary: 14 registers, 0 flagged: nothing flagged\n")


# -- the scan -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_scan_finds_exactly_the_simulated_slave_ids(transport: str) -> None:
    ids = {3: 12, 17: 40, 30: 120}
    with Simulator(list(ids), cells=ids, baud=int(BAUD), frozen=True, transport=transport) as sim:
        r = probe(sim, "--scan", "--range", "1-32", "--timeout", "0.05", "--format", "json")
        served = [(t.slave, t.address, t.count) for t in sim.truth_log]
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {h["slave"]: h["cell_count"] for h in doc["found"]} == ids
    assert served == [(slave, 10, 1) for slave in ids]  # HR 10 of each, once
    assert doc["ids"] == [1, 32] and doc["seconds_per_id"] > 0


def test_scan_asks_each_id_once_without_retries() -> None:
    with Simulator([2, 4], cells=12, baud=int(BAUD), frozen=True) as sim:
        link = open_link(sim.bus_config(timeout_s=0.05, retries=3, late_reply_guard_s=0))
        link.open()
        seen: list[int] = []
        try:
            hits = scan(link, range(1, 9), DEFAULT_MAP, lambda slave, _hits: seen.append(slave))
        finally:
            link.close()
    assert hits == [ScanHit(2, 12), ScanHit(4, 12)]
    assert seen == list(range(1, 9))  # progress after every id
    assert link.counters.requests == 8 and link.counters.errors[ErrorKind.TIMEOUT] == 6


@pytest.mark.slow  # ~5 s on a shared 2-core box
def test_scan_text_says_the_time_per_id_and_its_progress() -> None:
    with Simulator([5], cells=12, baud=int(BAUD), frozen=True) as sim:
        r = subprocess.run(
            [*CLI, "probe", "--port", sim.port, "--baud", BAUD, "--scan", "--range", "1-20",
             "--timeout", "0.05"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(
        f"scanning slave ids 1..20 on {sim.port} (115200 8N1), reading HR 10 (cell count) once "
        "each: timeout 0.05 s, about 0.05 s per silent id, at most 1 s"
    )
    assert "  id 5: 12 cells" in lines
    assert any(x.startswith("  ... ids 1..16 done, ") and "s per id)" in x for x in lines)
    assert lines[-1].startswith("found 1 BM-SM(s) in ") and lines[-1].endswith(": id 5 (12 cells)")


def test_scan_of_an_empty_range_finds_nothing_and_says_so() -> None:
    with Simulator([5], cells=12, baud=int(BAUD), frozen=True) as sim:
        r = probe(sim, "--scan", "--range", "6-8", "--timeout", "0.05")
    assert r.exit_code == 1 and "found 0 BM-SM(s)" in r.output and r.output.endswith(": none\n")


# -- errors: exit 2 --------------------------------------------------------------------


def test_no_answer_is_exit_2_with_what_to_check() -> None:
    with Simulator([1], cells=12, baud=int(BAUD), frozen=True) as sim:
        r = probe(sim, "--slave", "9", "--timeout", "0.05")
    assert r.exit_code == 2
    assert "ERROR: no answer from slave 9 (" in r.output
    assert "check the slave id, the wiring (A/B, termination) and the line settings" in r.output
    assert r.output.splitlines()[-1] == "summary: 0 registers, 0 flagged: incomplete"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slave", "1"], "give the bus: --port DEVICE, or --host HOST --tcp-port PORT"),
        (["--port", "/dev/x", "--host", "h", "--slave", "1"], "give the bus: --port DEVICE"),
        (["--host", "h", "--slave", "1"], "--host needs --tcp-port"),
        (["--port", "/dev/x"], "give --slave ID to probe one device, or --scan to find them"),
        (["--port", "/dev/x", "--slave", "1", "--scan"], "give --slave ID to probe one device"),
        (["--port", "/dev/x", "--scan", "--range", "0-9"], "expected ids within 1..247"),
        (["--port", "/dev/x", "--scan", "--range", "a-b"], "expected FIRST-LAST like 1-32"),
        (["--port", "/dev/x", "--slave", "248"], "248 is not in the range 1<=x<=247"),
    ],
)
def test_usage_errors_are_exit_2(args: list[str], message: str) -> None:
    r = CliRunner().invoke(build_cli(), ["probe", *args])
    assert r.exit_code == 2 and message in r.output


def test_a_port_that_cannot_be_opened_or_a_bad_override_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(build_cli(), ["probe", "--port", str(tmp_path / "tty"), "--slave", "1"])
    assert r.exit_code == 2 and f"probe: cannot open {tmp_path / 'tty'}: " in r.output
    with Simulator([1], cells=12, baud=int(BAUD), frozen=True) as sim:
        gateway = open_link(sim.bus_config())  # the gateway holds the port
        gateway.open()
        try:
            r = probe(sim, "--slave", "1")
        finally:
            gateway.close()
    assert r.exit_code == 2 and "Could not exclusively lock port" in r.output
    assert r.output.endswith("(another program holds it: stop the gateway first, "
                             "systemctl stop btms-gateway)\n")  # fmt: skip
    (tmp_path / "fw.toml").write_text("[cell.soc]\nbase = 3000\n")
    r = CliRunner().invoke(
        build_cli(),
        ["probe", "--port", "/dev/x", "--slave", "1", "--register-overrides",
         str(tmp_path / "fw.toml")],
    )  # fmt: skip
    assert r.exit_code == 2
    assert f"{tmp_path / 'fw.toml'}: cell.soc: expected one of the BM-SM cell quantities" in (
        r.output
    )
