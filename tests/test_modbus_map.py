"""The map table: BM-GW v2 positions, no collisions, encoding, generated docs, exporter."""

from __future__ import annotations

import csv
import dataclasses
import io
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import ActiveAlarm, ObjectPath, Severity
from btms_gateway.core.api import QUANTITIES, Level, Quantity
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.model import CellStatus, Quality, StringSnapshot, UpsSnapshot
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import validate_config
from btms_gateway.kit.testing import make_reading, plant_config
from btms_gateway.plugins.modbus_tcp.export import to_markdown
from btms_gateway.plugins.modbus_tcp.image import (
    AlarmSummary,
    string_image,
    ups_image,
    ups_read_at,
)
from btms_gateway.plugins.modbus_tcp.map import (
    CELL_STRIDE,
    CORE_MAP,
    MAX_CELLS,
    POINTS,
    STRING_MEASURED,
    CellView,
    RegisterMap,
    Role,
    cell_register,
    decode,
    encode,
    point,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "modbus-map.md"

#: the BM-GW's published Modbus TCP map ("v2", docs/device.md), transcribed independently of map.py
BMGW_V2 = {
    ("ups", 0, 1), ("ups", 1, 2), ("ups", 3, 2), ("ups", 5, 1),
    *(("string", r, 1) for r in (0, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14)),
    ("string", 2, 2), ("string", 4, 2),
    ("cell", 0, 1), ("cell", 1, 1), ("cell", 2, 2), ("cell", 4, 1), ("cell", 5, 1),
}  # fmt: skip


def test_bmgw_v2_positions_are_exactly_the_published_map() -> None:
    ours = {(p.block, p.offset, p.words) for p in POINTS if p.origin == "BM-GW v2"}
    assert ours == BMGW_V2


def test_extension_registers_never_collide_with_the_bmgw_map_or_each_other() -> None:
    for block in ("ups", "string", "cell"):
        used: dict[int, str] = {}
        for p in (p for p in POINTS if p.block == block):
            for w in range(p.words):
                reg = p.offset + w
                assert reg not in used, f"{p.name} overlaps {used.get(reg)}"
                used[reg] = p.name
        bmgw_regs = {o + w for (b, o, n) in BMGW_V2 if b == block for w in range(n)}
        ext = {p.offset for p in POINTS if p.block == block and p.origin == "extension"}
        assert not ext & bmgw_regs
        limit = CELL_STRIDE if block == "cell" else 30
        assert all(r < limit for r in used), block
    assert {p.offset for p in POINTS if p.origin == "extension" and p.block != "cell"} <= set(
        range(20, 30)
    )


@pytest.mark.parametrize("high_first", [True, False])
def test_encoding_round_trips_signed_32_bit_values_in_both_word_orders(high_first: bool) -> None:
    current = point("string_current")
    regs = encode(current, -123.45, high_first)
    assert len(regs) == 2 and all(0 <= r <= 0xFFFF for r in regs)
    assert regs == ([0xFFFF, 0xCFC7] if high_first else [0xCFC7, 0xFFFF])
    assert decode(current, regs, high_first) == pytest.approx(-123.45)
    voltage = point("string_voltage")
    assert decode(voltage, encode(voltage, 812.34, high_first), high_first) == pytest.approx(812.34)


def test_encoding_pins_out_of_range_values_and_marks_missing_ones() -> None:
    assert encode(point("string_soc"), 1e9) == [0xFFFF]
    assert encode(point("cell_temperature"), -9999.0) == [0x8000]
    assert encode(point("cell_temperature"), None) == [0x8000]
    assert encode(point("ambient_humidity"), None) == [0xFFFF]
    assert encode(point("cell_resistance"), None) == [0, 0]


def test_committed_map_doc_is_the_generated_one() -> None:
    assert DOC.read_text() == to_markdown(), (
        "docs/modbus-map.md is stale: btms-gateway export modbus-map --format md > "
        "docs/modbus-map.md"
    )


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_export_command_prints_a_tag_list_as_csv() -> None:
    """Without -c or --demo, the tag list of the reference plant: every point
    of UPS1 (unit 1) and of S1 (unit 101) with all 120 cell positions."""
    exe = Path(sys.executable).with_name("btms-gateway")  # the installed console script
    out = subprocess.run(
        [str(exe), "export", "modbus-map", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = "".join(line for line in out.stdout.splitlines(True) if not line.startswith("#"))
    rows = list(csv.DictReader(io.StringIO(body)))
    blocks = {b: sum(p.block == b for p in POINTS) for b in ("ups", "string", "cell")}
    assert len(rows) == blocks["ups"] + blocks["string"] + MAX_CELLS * blocks["cell"]
    cell_v = next(r for r in rows if r["tag"] == "S1.cell120.cell_voltage")
    assert (cell_v["unit_id"], cell_v["register"], cell_v["scale"], cell_v["unit"]) == (
        "101",
        str(cell_register(120, 1)),
        "0.001",
        "V",
    )
    ups_i = next(r for r in rows if r["tag"] == "UPS1.ups_current")
    assert (ups_i["unit_id"], ups_i["words"], ups_i["type"], ups_i["word_order"]) == (
        "1",
        "2",
        "s32",
        "high_first",
    )


def _snapshot(quality: Quality = Quality.GOOD) -> StringSnapshot:
    return StringSnapshot("S1", 1, "UPS1", 1, 1, "bus1", quality, make_reading(8), time.time())


def test_alarm_summary_fills_counts_severity_and_cell_alarm_bits() -> None:
    def alarm(rule: str, sev: Severity, cell: int | None) -> ActiveAlarm:
        return ActiveAlarm(
            f"{rule}:S1:{cell}", rule, sev, ObjectPath("UPS1", "S1", cell), 2.5, 2.4, "V", "", 0.0
        )

    active = [
        alarm("cell_voltage_high", Severity.ALARM, 3),
        alarm("cell_temperature_high", Severity.CRITICAL, 3),
        alarm("some_future_rule", Severity.WARNING, 5),
        alarm("string_soc_low", Severity.WARNING, None),
    ]
    s1 = _snapshot()
    from btms_gateway.core.store import SnapshotStore

    plant = SnapshotStore([s1], [("UPS1", 1)]).snapshot
    summary = AlarmSummary.of(active, plant)
    img = string_image(s1, summary, True, True)
    assert list(img.regs[22:24]) == [4, int(Severity.CRITICAL)]
    assert img.regs[cell_register(3, 7)] == 1 << 8 | 1 << 12
    assert img.regs[cell_register(5, 7)] == 1 << 15
    assert img.regs[cell_register(4, 7)] == 0
    ups: UpsSnapshot = plant.ups["UPS1"]
    uimg = ups_image(ups, summary, True, True, ups_read_at(ups, plant))
    assert list(uimg.regs[22:25]) == [4, int(Severity.CRITICAL), 1]


@pytest.mark.parametrize("high_first", [True, False])
def test_the_column_built_image_equals_one_register_at_a_time(high_first: bool) -> None:
    """string_image encodes the cell block a column at a time into strided
    slices (for speed); it must equal encoding every cell point one value at a
    time with encode() at cell_register(ci, offset): missing values, pinned
    out-of-range values, negative numbers, alarm bits, short strings, bad quality."""
    rng = random.Random(7)
    for trial in range(40):
        count = rng.choice([0, 1, 7, 119, 120])
        base = make_reading(count)
        cells = tuple(
            dataclasses.replace(
                c,
                voltage_v=rng.choice([None, 0.0, 2.2471, 70.0, -1.0]),
                resistance_mohm=rng.choice([None, 0.0, 1.2345, 5e6, -3.0]),
                temperature_c=rng.choice([None, -40.04, 25.05, 4000.0]),
                soc_pct=rng.choice([None, 0.4, 99.5, 1e9]),
                soh_pct=rng.choice([None, 80.0]),
                status=CellStatus(rng.randrange(4)),
            )
            for c in base.cells
        )
        reading = dataclasses.replace(base, cells=cells, cell_count=count)
        quality = rng.choice(list(Quality))
        snap = StringSnapshot("S1", 1, "UPS1", 1, 1, "bus1", quality, reading, time.time())
        bits = {("S1", ci): rng.randrange(1 << 16) for ci in rng.sample(range(1, 121), 5)}
        alarms = AlarmSummary(cell_bits=bits)
        img = string_image(snap, alarms, high_first, True)
        good = quality is Quality.GOOD
        for ci in range(1, MAX_CELLS + 1):
            view = CellView(cells[ci - 1] if ci <= count else None, good, bits.get(("S1", ci), 0))
            for p in (p for p in POINTS if p.block == "cell"):
                want = encode(p, p.read(view), high_first)
                got = list(img.regs[cell_register(ci, p.offset) :][: p.words])
                assert got == want, (trial, ci, p.name)


def test_quality_rule_is_decided_from_the_table_roles() -> None:
    stale = string_image(_snapshot(Quality.STALE), AlarmSummary(), True, True)
    assert not stale.good
    status_only = [p for p in POINTS if p.block == "string" and p.role is Role.STATUS]
    for p in status_only:  # a read of only status registers touches nothing measured
        assert STRING_MEASURED[p.offset + p.words] == STRING_MEASURED[p.offset], p.name
    assert STRING_MEASURED[cell_register(120, 8)] > STRING_MEASURED[cell_register(120, 1)]
    assert string_image(_snapshot(Quality.STALE), AlarmSummary(), True, False).good  # BM-GW mode


@pytest.mark.parametrize("high_first", [True, False])
def test_runtime_and_depth_of_discharge_are_served_only_while_known_and_good(
    high_first: bool,
) -> None:
    """Registers 26-27 (s) and 28 (0.1 %) of the string block carry the running
    discharge's estimate; "no value" (all ones) outside a discharge and while the
    string is not GOOD, also in BM-GW mode where its other values stay readable."""
    derived = {"runtime_remaining_s": 5432.6, "dod_pct": 48.37}
    running = dataclasses.replace(_snapshot(), derived=derived)
    img = string_image(running, AlarmSummary(), high_first, True)
    runtime, dod = point("string_runtime_remaining"), point("string_depth_of_discharge")
    assert decode(runtime, list(img.regs[26:28]), high_first) == 5433
    assert decode(dod, [img.regs[28]], high_first) == pytest.approx(48.4)
    idle = dataclasses.replace(running, derived={"runtime_remaining_s": None, "dod_pct": None})
    stale = dataclasses.replace(running, quality=Quality.STALE)
    for snap in (idle, stale, _snapshot()):
        regs = string_image(snap, AlarmSummary(), high_first, False).regs
        assert list(regs[26:29]) == [0xFFFF, 0xFFFF, 0xFFFF]
    assert string_image(stale, AlarmSummary(), high_first, False).regs[6] != 0xFFFF  # SOC kept


def test_every_cell_alarm_rule_has_its_own_bit() -> None:
    """A cell rule added to the alarm engine gets a bit of its own in cell +7
    (the thermal and median rules of issue 27 fell into b15 "other")."""
    from btms_gateway.core.alarms.rules import RULES
    from btms_gateway.plugins.modbus_tcp.map import CELL_ALARM_BITS

    cell_rules = {name for name, rule in RULES.items() if rule.scope == "cell"}
    assert set(CELL_ALARM_BITS) == cell_rules
    bits = list(CELL_ALARM_BITS.values())
    assert len(set(bits)) == len(bits) and not set(bits) & {0, 1, 15}  # BM-SM bits, "other"


def test_bad_settings_are_named_by_key_path() -> None:
    cfg = plant_config(plugins={"modbus_tcp": {"allow": ["10.0.0.0/8", "not-an-ip"]}})
    with pytest.raises(ConfigError, match=r"plugins\.modbus_tcp\.allow"):
        validate_config(cfg, "<test>", create_manager())
    cfg = plant_config(plugins={"modbus_tcp": {"word_order": "middle"}})
    with pytest.raises(ConfigError, match=r"plugins\.modbus_tcp\.word_order"):
        validate_config(cfg, "<test>", create_manager())


def test_the_plugin_is_installed_through_its_entry_point_like_any_other() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="btms_gateway")}
    assert eps.get("modbus_tcp") == "btms_gateway.plugins.modbus_tcp.plugin"
    pm = create_manager()
    assert pm.get_plugin("modbus_tcp") is not None


def test_a_quantity_without_a_placement_gets_the_next_free_extension_register() -> None:
    """The map derives from the quantity table: a registered quantity of each level
    lands after the highest register in use of its block's extension, typed by its
    kind, scaled at its resolution; everything already placed stays where it was."""
    extra = [
        Quantity("runtime", Level.UPS, "s", 1, False, "number", Role.MEASURED, "t", lambda u: 60),
        Quantity("runtime", Level.STRING, "s", 1, False, "number", Role.MEASURED, "t",
                 lambda s: 61),
        Quantity("drift", Level.CELL, "V", 0.001, True, "number", Role.MEASURED, "d",
                 lambda c: -0.002),
    ]  # fmt: skip
    rmap = RegisterMap((*QUANTITIES, *extra))
    assert [(p.block, p.offset, p.kind, p.scale) for p in rmap.points if p.name.endswith(
        ("_runtime", "_drift"))] == [("ups", 25, "u16", 1), ("string", 29, "u16", 1),
                                    ("cell", 8, "s16", 0.001)]  # fmt: skip
    assert {(p.block, p.offset, p.name) for p in POINTS} < {
        (p.block, p.offset, p.name) for p in rmap.points
    }
    assert rmap.ups_extent == CORE_MAP.ups_extent  # 25 is inside the 30 registers a UPS answers
