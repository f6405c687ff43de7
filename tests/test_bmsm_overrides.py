"""Register-map overrides: a TOML file corrects the BM-SM register table for a
firmware without code. Every error names the file, the key path and what was
expected; check-config validates the file with the configuration (and the
6 V block rule that spans both); the export marks the overridden rows; the
simulator serves an overridden map, which the default gateway refuses and
the gateway with the matching override reads exactly (REST = the truth)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from bmsm_support import SHIFTED
from btms_gateway.core.config_base import Problem
from btms_gateway.core.config_load import ConfigError, profile_checks
from btms_gateway.core.model import Quality
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.core.serialize import reading_dict
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.protocols.bmsm.decode import decode_block, decode_cells
from btms_gateway.protocols.bmsm.overrides import load_map, parse
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.registers import CELL_ARRAYS
from btms_gateway.protocols.bmsm.regmap import DEFAULT_MAP
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.rtu import open_link
from cli_support import CLI
from conftest import wait_for

#: a firmware that numbers its cells from 1: cell i (0-based) at base + i + 1
STRING_NAMES = (
    "['voltage_v', 'current_a', 'soc_pct', 'balance_pct', 'state', 'cell_count', "
    "'ambient_temperature_c', 'ambient_humidity_pct', 'alarms', 'relay_closed', 'aux_input_on']"
)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text, "fw.toml")
    return str(exc.value).splitlines()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[string.ambient_temp]\naddress = 16",
            f"fw.toml: string.ambient_temp: expected one of the BM-SM string quantities "
            f"{STRING_NAMES} (did you mean 'ambient_temperature_c'?), found 'ambient_temp'",
        ),
        (
            "[cell.resistance]\nbase = 2200",
            "fw.toml: cell.resistance: expected one of the BM-SM cell quantities ['voltage_v', "
            "'resistance_mohm', 'temperature_c', 'soc_pct', 'soh_pct', 'status'] (did you mean "
            "'resistance_mohm'?), found 'resistance'",
        ),
        (
            "[strings.voltage_v]\naddress = 20",
            "fw.toml: strings: expected [string.FIELD] or [cell.FIELD] tables only (did you mean "
            "'string'?), found unknown key 'strings'",
        ),
        (
            "[string.state]\nadress = 3",
            "fw.toml: string.state.adress: expected one of the known keys ['address', "
            "'no_sensor', 'scale', 'type', 'valid', 'word_order'] (did you mean 'address'?), "
            "found unknown key 'adress'",
        ),
        (
            "[string.soc_pct]\naddress = 13",
            "fw.toml: string.soc_pct.address: expected registers no other quantity uses, found "
            "soc_pct (HR 13) overlapping alarms (HR 13)",
        ),
        (
            "[cell.resistance_mohm]\nbase = 1300",
            "fw.toml: cell.resistance_mohm.base: expected registers no other quantity uses, "
            "found resistance_mohm (HR 1300..1419) overlapping temperature_c (HR 1400..1519)",
        ),
        (
            "[cell.status]\nbase = 10",
            "fw.toml: cell.status.base: expected registers outside the string block (HR 0..15), "
            "found status (HR 10..129)",
        ),
        (
            '[string.soc_pct]\ntype = "uint32"',
            "fw.toml: string.soc_pct.word_order: expected a word order for the 32-bit type "
            'uint32 ("low word first" or "high word first"): the table has none for '
            "'soc_pct', found nothing",
        ),
        (
            '[string.soc_pct]\nword_order = "low word first"',
            "fw.toml: string.soc_pct.word_order: expected no word order for the 16-bit type "
            "uint16, found 'low word first'",
        ),
        (
            '[cell.voltage_v]\ntype = "uint32"',
            "fw.toml: cell.voltage_v.type: expected uint16 or int16 (a cell array holds one "
            "register per cell), found 'uint32'",
        ),
        (
            '[string.voltage_v]\ntype = "float32"',
            "fw.toml: string.voltage_v.type: expected 'uint16', 'int16', 'uint32' or 'int32', "
            "found 'float32'",
        ),
        (
            "[string.ambient_humidity_pct]\nno_sensor = 0",
            "fw.toml: string.ambient_humidity_pct.no_sensor: expected a no-sensor marker "
            "outside the valid range, found 0x0000 = 0 %RH, inside 0..100 %RH: a genuine "
            "reading of 0 %RH would be served as 'no sensor fitted'",
        ),
        (
            "[string.ambient_temperature_c]\nvalid = [[-3300, 80]]",
            "fw.toml: string.ambient_temperature_c.valid: expected a no-sensor marker outside "
            "the valid range, found 0x8000 = -3276.8 C, inside -3300..80 C: a genuine reading "
            "of -3276.8 C would be served as 'no sensor fitted'",
        ),
        (
            "[cell.soc_pct]\nno_sensor = 0x10000",
            "fw.toml: cell.soc_pct.no_sensor: expected a no-sensor marker that fits uint16 "
            "(0..0xFFFF), found 0x10000",
        ),
        (
            "[cell.voltage_v]\nvalid = [[7.8, 4.8]]",
            "fw.toml: cell.voltage_v.valid: expected [low, high] pairs with low <= high, "
            "found [7.8, 4.8]",
        ),
        (
            "[string.state]\nscale = 0.1",
            "fw.toml: string.state.scale: expected no scale for 'state', a code (enum), not a "
            "measurement: only its address, type and word order can change, found scale = 0.1",
        ),
        (
            '[string.alarms]\ntype = "int16"',
            "fw.toml: string.alarms.type: expected an unsigned type (uint16 or uint32) for "
            "'alarms', a code, found 'int16'",
        ),
        (
            "[string.voltage_v]\naddress = 500",
            "fw.toml: string.voltage_v.address: expected the string block within 125 registers "
            "(it is read in one transaction), found HR 2..501 with voltage_v (HR 500-501)",
        ),
        (
            "[string.voltage_v]\naddress = -1",
            "fw.toml: string.voltage_v.address: expected greater than or equal to 0, found -1",
        ),
        (
            "[cell.resistance_mohm]\nscale = 0",
            "fw.toml: cell.resistance_mohm.scale: expected greater than 0, found 0",
        ),
        (
            "[cell.resistance_mohm]\nscale = nan",
            "fw.toml: cell.resistance_mohm.scale: expected a finite number, found nan",
        ),
        ("string = 3", "fw.toml: string: expected a table, found 3"),
    ],
)
def test_every_override_error_names_the_file_the_key_and_what_was_expected(
    text: str, line: str
) -> None:
    assert errors(text) == [line]


def test_a_syntax_error_is_said_as_such() -> None:
    (line,) = errors("[string.state\naddress = 3")
    assert line.startswith("fw.toml: (syntax): expected valid TOML, found ")


def test_every_problem_of_every_table_in_one_pass() -> None:
    lines = errors(
        "[string.ambient_temp]\naddress = 16\n"
        '[string.soc_pct]\ntype = "uint32"\n'
        "[string.ambient_humidity_pct]\nno_sensor = 0\n"
        "[cell.soh_pct]\nscale = -1\n"
    )
    assert [x.split(": expected")[0] for x in lines] == [
        "fw.toml: string.ambient_temp",
        "fw.toml: cell.soh_pct.scale",
        "fw.toml: string.soc_pct.word_order",
        "fw.toml: string.ambient_humidity_pct.no_sensor",
    ]


def test_a_missing_or_unreadable_file_is_a_problem_of_that_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_map(tmp_path / "nope.toml")
    assert str(exc.value).startswith(f"{tmp_path / 'nope.toml'}: (file): expected a readable file")
    (tmp_path / "utf16.toml").write_bytes("[cell.soc_pct]\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"utf16\.toml: \(file\): expected UTF-8 text"):
        load_map(tmp_path / "utf16.toml")


def test_the_effective_map_reads_with_the_changed_rows() -> None:
    """Address, type, word order, scale, marker and range as the file says:
    the decoder takes them all from the map (a high-word-first int32 moved to
    HR 20, a scale that is not 1/N, a marker of its own)."""
    regmap = parse(
        '[string.current_a]\naddress = 20\ntype = "int32"\nword_order = "high word first"\n'
        "[string.ambient_humidity_pct]\nno_sensor = 0x7FFF\n"
        "[cell.resistance_mohm]\nbase = 2200\nscale = 0.004\nvalid = [[0.1, 60]]\n",
        "fw.toml",
    )
    assert regmap.block_read.address == 0 and regmap.block_read.count == 22
    assert regmap.changes == {
        "string.current_a": "address 20 (was 2), word order high word first (was low word first)",
        "string.ambient_humidity_pct": "no sensor 0x7FFF (was 0xFFFF)",
        "cell.resistance_mohm": "base 2200 (was 1200), scale 0.004 (was 0.001), "
        "valid 0.1..60 (was 0.1..50)",
    }
    block = [0] * 22
    block[0:2] = [2708, 0]  # 27.08 V, unchanged
    block[4], block[10], block[12] = 100, 2, 0x7FFF
    block[20:22] = [0xFFFF, 0xCFC7]  # -123.45 A, high word first
    fields = decode_block(block, regmap=regmap)
    assert fields["current_a"] == -123.45 and fields["voltage_v"] == 27.08
    assert fields["ambient_humidity_pct"] is None  # its own marker
    arrays = {a.base: [0, 0] for a in regmap.cells}
    arrays[1000], arrays[1400] = [2250, 2260], [240, 241]
    arrays[2200] = [125, 14000]  # 4 uOhm steps: 0.5 and 56 mOhm (inside its own range)
    cells = decode_cells(arrays, 2, regmap=regmap)
    assert [c.resistance_mohm for c in cells] == [0.5, 56.0]
    assert regmap.cell_plan(2)[-1].address == 2200  # the planner follows the map


def test_a_quantity_moved_onto_a_reserved_register_takes_its_place() -> None:
    regmap = parse("[string.ambient_temperature_c]\naddress = 5\n", "fw.toml")
    assert [r.address for r in regmap.block if not r.field] == [8, 9]
    assert regmap.block_read.count == 16


# -- check-config, through the real command --------------------------------------


CONFIG = """
[gateway]
data_dir = "{tmp}/var"
[[buses]]
name = "a"
port = "{tmp}/ttyA"
wait_for_port = true
[[strings]]
name = "S1"
bus = "a"
slave_id = 1
{s1}
[[strings]]
name = "S2"
bus = "a"
slave_id = 2
{s2}
{rest}
"""


def check_config(tmp: Path, s1: str = "", s2: str = "", rest: str = "") -> tuple[int, list[str]]:
    path = tmp / "site.toml"
    path.write_text(CONFIG.format(tmp=tmp, s1=s1, s2=s2, rest=rest))
    r = subprocess.run([*CLI, "check-config", str(path)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert "Traceback" not in r.stderr
    return r.returncode, r.stderr.splitlines()


@pytest.mark.slow  # ~5 s on a shared 2-core box
def test_check_config_reports_the_override_file_under_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "fw2.toml").write_text("[cell.resistance_mohm]\nbase = 1300\n")
    over = 'register_overrides = "fw2.toml"'  # relative to site.toml's folder
    code, lines = check_config(tmp_path, s1=over, s2=over)
    assert code == 2
    assert lines == [  # once, though two strings name it
        f"{tmp_path}/fw2.toml: cell.resistance_mohm.base: expected registers no other "
        "quantity uses, found resistance_mohm (HR 1300..1419) overlapping temperature_c "
        "(HR 1400..1519)"
    ]
    code, lines = check_config(tmp_path, s2='register_overrides = "fw9.toml"')
    assert code == 2 and lines == [
        f"{tmp_path}/site.toml: strings[1].register_overrides: expected a register-override "
        f"file (TOML), found '{tmp_path}/fw9.toml', which does not exist"
    ]
    (tmp_path / "fw2.toml").write_text(SHIFTED)
    code, lines = check_config(tmp_path, s2=over)
    assert code == 0, lines


def test_override_on_a_profile_without_a_register_map_is_refused() -> None:
    from btms_gateway.core.config import GatewayConfig

    cfg = GatewayConfig.model_validate(
        {
            "buses": [{"name": "a", "port": "/dev/null"}],
            "strings": [
                {
                    "name": "S1",
                    "bus": "a",
                    "slave_id": 1,
                    "profile": "other",
                    "register_overrides": "/etc/fw.toml",
                }
            ],
        }
    )

    class Other:  # a profile without check_string: no register map to correct
        name, description = "other", "no map"

    assert profile_checks(cfg, {"other": Other()}) == [  # type: ignore[dict-item]
        Problem(
            "strings[0].register_overrides",
            "no register_overrides for profile 'other', which has no register map to correct, "
            "found '/etc/fw.toml'",
        )
    ]


SIX_VOLT = (
    "expected a block type whose cell voltages string '{s}' can read, found \"6V\" "
    "(4.8..7.8 V a block) outside the cell voltage range of its register map, {range} "
    "({origin}); if its cell sensors measure 6V blocks, {fix} [cell.voltage_v] valid = "
    '[[4.8, 7.8]] (docs/southbound.md, "Register-map overrides"), otherwise correct {key}'
)


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_six_volt_blocks_need_an_override_that_widens_the_cell_voltage_range(
    tmp_path: Path,
) -> None:
    """The datasheet's cell voltage ranges cover 2 V and 12 V blocks; a string
    the alarms say has 6 V blocks (about 6.75 V each) would fail every poll as
    implausible. check-config says so, naming the block key and the override
    key; an override with a 6 V range makes the file valid."""
    code, lines = check_config(tmp_path, rest='[alarms]\nblock = "6V"')
    assert code == 2
    assert lines == [
        f"{tmp_path}/site.toml: alarms.block: "
        + SIX_VOLT.format(
            s=s,
            range="1.6..2.6 or 7.5..15.6 V",
            key="alarms.block",
            origin="the datasheet's, for 2 V and 12 V blocks only",
            fix=f"set strings[{i}].register_overrides to a file with",
        )
        for i, s in enumerate(("S1", "S2"))
    ]
    (tmp_path / "six.toml").write_text("[cell.voltage_v]\nvalid = [[4.8, 7.8]]\n")
    (tmp_path / "two.toml").write_text("[cell.voltage_v]\nvalid = [[1.6, 2.6]]\n")
    code, lines = check_config(
        tmp_path,
        s1='register_overrides = "six.toml"',
        s2='register_overrides = "two.toml"',
        rest='[alarms]\nblock = "6V"\n[alarms.strings.S2]\nblock = "6V"',
    )
    assert code == 2
    assert lines == [
        f"{tmp_path}/site.toml: alarms.strings.S2.block: "
        + SIX_VOLT.format(
            s="S2",
            range="1.6..2.6 V",
            key="alarms.strings.S2.block",
            origin=f"from strings[1].register_overrides, {tmp_path}/two.toml",
            fix="write in that file",
        )
    ]
    code, lines = check_config(
        tmp_path,
        s1='register_overrides = "six.toml"',
        rest='[alarms]\nblock = "6V"\n[alarms.strings.S2]\nblock = "2V"',
    )
    assert code == 0, lines


# -- the export ------------------------------------------------------------------------


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_export_with_a_config_prints_each_effective_map_with_the_overridden_rows_marked(
    tmp_path: Path,
) -> None:
    (tmp_path / "fw2.toml").write_text(SHIFTED + "[string.ambient_temperature_c]\naddress = 16\n")
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(tmp=tmp_path, s1="", s2='register_overrides = "fw2.toml"',
                                  rest=""))  # fmt: skip
    r = subprocess.run([*CLI, "export", "bmsm-registers", "-c", str(path)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    default, overridden = r.stdout.split("\n# BM-SM register table\n")
    assert "Used by string(s) S1." in default
    assert "| 1000 + i | uint16 | 0.001 | V |" in default and "overridden" not in default
    assert "The effective register map of string(s) S2: the default table" in overridden
    assert f"in `{tmp_path}/fw2.toml`" in overridden
    assert "## String block (one read of HR 0..16)" in overridden
    assert (
        "| 16 | int16 | - | 0.1 | C | 0x8000 | -40..80 | ambient temperature | **assumed**; "
        "**overridden**: address 16 (was 11) |" in overridden
    )
    assert "| 1001 + i | uint16 | 0.001 | V |" in overridden
    assert "**overridden**: base 1001 (was 1000) |" in overridden
    assert "| 12 | uint16 | - | 0.1 | %RH | 0xFFFF | 0..100 | ambient humidity | **assumed** |" in (
        overridden
    )  # a row the file leaves alone is not marked
    export = [*CLI, "export", "bmsm-registers", "--register-overrides", str(tmp_path / "fw2.toml")]
    r = subprocess.run(export, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "# BM-SM register table\n" + overridden.replace(
        " of string(s) S2", ""
    )


# -- the simulator serves it; the gateway reads it ---------------------------------------


def test_simulate_serves_the_overridden_map(tmp_path: Path) -> None:
    """`btms-gateway simulate --register-overrides FILE` on a pty: cell 1's
    voltage is at HR 1001, and HR 1000 reads 0 as the table's array area does."""
    (tmp_path / "fw.toml").write_text(SHIFTED)
    link_path = tmp_path / "tty"
    proc = subprocess.Popen(
        [*CLI, "simulate", "--cells", "12", "--baud", "115200", "--frozen", "--link",
         str(link_path), "--register-overrides", str(tmp_path / "fw.toml"), "--duration", "20"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        head = [proc.stdout.readline() for _ in range(2)]
        assert head[1] == f"register map: the overrides in {tmp_path / 'fw.toml'}\n"
        wait_for(link_path.exists, 10, "the simulator's pty")
        with Simulator([1], cells=12, baud=115200, seed=0, frozen=True) as twin:
            sim_bus = twin.bus_config(port=str(link_path), timeout_s=0.5)
            truth = twin.registers(1, 1000, 1)  # the same seed: the same cells
        link = open_link(sim_bus)
        link.open()
        try:
            assert link.read_holding_registers(1, 1001, 1) == truth
            assert link.read_holding_registers(1, 1000, 1) == [0]
        finally:
            link.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_default_gateway_refuses_a_shifted_map_the_override_reads_it_exactly(
    tmp_path: Path,
) -> None:
    """Both simulated BM-SM serve a firmware whose cell arrays start one
    register later. S1 is read with the default table: its cell 1 reads 0 V,
    the poll fails plausibility (decode) and S1 is never GOOD. S2 names the
    matching override: GOOD, and what REST serves for it equals the
    simulator's truth, every cell."""
    from btms_gateway.plugins.web.plugin import service
    from web_support import get_json

    (tmp_path / "fw.toml").write_text(SHIFTED)
    shifted = load_map(tmp_path / "fw.toml")
    config = plant_config(strings=2, ups=1, plugins={"web": {"port": 0}},
                          data_dir=str(tmp_path))  # fmt: skip
    config["strings"][1]["register_overrides"] = str(tmp_path / "fw.toml")
    maps = {"S1": shifted, "S2": shifted}
    cells = {"S1": 16, "S2": 16}
    async with GatewayHarness(config, simulate=True, cells=cells, served_maps=maps) as h:
        gw, sim = h.gateway, h.sim
        await h.wait_quality(Quality.GOOD, "S2", timeout=20)
        url = service(gw).url
        status, body = await get_json(f"{url}/api/strings/S2")
        assert status == 200 and body["quality"] == "good"
        served = {k: v for k, v in body["reading"].items() if k != "read_at"}
        truth = reading_dict(sim.expected(2))
        assert served == {k: v for k, v in truth.items() if k != "read_at"}
        assert [c.voltage_v for c in sim.expected(2).cells] == [
            c.voltage_v for c in sim.model(2).cells
        ]  # the truth the simulator holds, not a decoding of it
        counters = gw.engine.states["S1"].counters
        await h.wait_until(lambda: counters.polls_failed_by[ErrorKind.DECODE] >= 2, 20,
                           what="S1's polls failing plausibility")  # fmt: skip
        assert gw.store.string("S1").quality is not Quality.GOOD
        assert gw.store.string("S1").reading is None  # never served
        status, s1 = await get_json(f"{url}/api/strings/S1")
        assert s1["quality"] != "good"


def test_the_default_map_is_the_module_table() -> None:
    assert DEFAULT_MAP.is_default and DEFAULT_MAP.source == "default"
    assert DEFAULT_MAP.cells == CELL_ARRAYS


def test_a_poller_reads_with_its_map_over_a_real_pty(tmp_path: Path) -> None:
    (tmp_path / "fw.toml").write_text(SHIFTED)
    shifted = load_map(tmp_path / "fw.toml")
    with Simulator([4], cells=12, baud=115200, seed=5, frozen=True, regmap=shifted) as sim:
        link = open_link(sim.bus_config(timeout_s=0.3))
        link.open()
        try:
            assert BmsmPoller(link, 4, shifted).poll().cells == sim.expected(4).cells
            with pytest.raises(PollError, match="cell 1 voltage 0 V"):
                BmsmPoller(link, 4).poll()
        finally:
            link.close()
