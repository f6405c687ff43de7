"""THE register table of the BM-SM string master: every address, type, word
order, scale, unit and "no sensor" marker the gateway relies on, with whether
the manufacturer documents it or the project assumes it (docs/device.md), and the
range the device can measure (the datasheet's): a decoded value outside it was
not measured (a reply shifted from another request, a cell not measured yet)
and fails the poll (decode.py), so it is never served as GOOD.

A correction from the field is a one-line change here: the decoder, the read
planner, the simulator and docs/bmsm-registers.md all derive from these rows,
through the RegisterMap built from them (regmap.py). On a site, a firmware
that differs is corrected without code: an override file changes rows of a
copy of this table for the strings that name it (overrides.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class RegType(enum.StrEnum):
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"


SIGNED_TYPES = (RegType.INT16, RegType.INT32)
WIDE_TYPES = (RegType.UINT32, RegType.INT32)  # two registers

#: a value range the device can measure, inclusive, in the decoded (SI) unit
Span = tuple[float, float]


class WordOrder(enum.StrEnum):
    LOW_FIRST = "low word first"
    HIGH_FIRST = "high word first"  # the Modbus convention; no BM-SM row uses it
    NONE = "-"  # a 16-bit value


@dataclass(frozen=True, slots=True)
class Register:
    """One value in the string block (HR 0..15)."""

    address: int
    type: RegType
    scale: float
    unit: str
    field: str  # the StringReading field it feeds ("" for reserved)
    meaning: str
    documented: bool
    word_order: WordOrder = WordOrder.NONE
    no_sensor: int | None = None  # raw value meaning "no sensor fitted" -> None
    valid: tuple[Span, ...] = ()  # what the device can measure (any of them); () = no check

    @property
    def words(self) -> int:
        return 2 if self.type in WIDE_TYPES else 1

    @property
    def label(self) -> str:
        """What the value is, for an error message: "string voltage"."""
        return self.meaning.split(" (")[0].split(",")[0]


@dataclass(frozen=True, slots=True)
class CellArray:
    """One per-cell array: register ``base + i`` holds cell i (i = 0-based)."""

    base: int
    type: RegType
    scale: float
    unit: str
    field: str  # the CellReading field it feeds
    meaning: str
    documented: bool
    no_sensor: int | None = None
    valid: tuple[Span, ...] = ()  # what the device can measure (any of them); () = no check

    def address(self, cell: int) -> int:
        return self.base + cell

    @property
    def words(self) -> int:
        return 1  # a cell's value is one register

    @property
    def word_order(self) -> WordOrder:
        return WordOrder.NONE

    @property
    def label(self) -> str:
        """What the value of one cell is, for an error message: "voltage"."""
        return self.meaning.split(" (")[0].removeprefix("cell ")


MAX_CELLS = 120
BLOCK_START = 0
BLOCK_COUNT = 16
DOC, ASSUMED = True, False
# The datasheet's measurement ranges (docs/device.md). Cell voltage: 2 V blocks
# measure 1.6..2.6 V, 12 V blocks 7.5..15.6 V; the configuration does not say
# which a string has, so either is accepted (a value between them is not).
PERCENT: tuple[Span, ...] = ((0.0, 100.0),)
CELL_VOLTS: tuple[Span, ...] = ((1.6, 2.6), (7.5, 15.6))

STRING_BLOCK: tuple[Register, ...] = (
    Register(0, RegType.UINT32, 0.01, "V", "voltage_v", "string voltage", DOC,
             WordOrder.LOW_FIRST, valid=((20.0, 800.0),)),
    Register(2, RegType.INT32, 0.01, "A", "current_a",
             "string current, + charge / - discharge", DOC, WordOrder.LOW_FIRST,
             valid=((-1000.0, 1000.0),)),
    Register(4, RegType.UINT16, 1, "%", "soc_pct", "string SOC", DOC, valid=PERCENT),
    Register(5, RegType.UINT16, 1, "-", "", "reserved, reads 0", ASSUMED),
    Register(6, RegType.UINT16, 0.01, "%", "balance_pct", "string balance", DOC,
             valid=PERCENT),
    Register(7, RegType.UINT16, 1, "enum", "state",
             "0 floating charge, 1 equalizing charge, 2 discharge, 3 idle, 5 abnormal", DOC),
    Register(8, RegType.UINT16, 1, "-", "", "reserved, reads 0", ASSUMED),
    Register(9, RegType.UINT16, 1, "-", "", "reserved, reads 0", ASSUMED),
    Register(10, RegType.UINT16, 1, "count", "cell_count",
             "number of cells found by auto-addressing (0..120)", DOC),
    Register(11, RegType.INT16, 0.1, "C", "ambient_temperature_c",
             "ambient temperature", ASSUMED, no_sensor=0x8000, valid=((-40.0, 80.0),)),
    Register(12, RegType.UINT16, 0.1, "%RH", "ambient_humidity_pct",
             "ambient humidity", ASSUMED, no_sensor=0xFFFF, valid=PERCENT),
    Register(13, RegType.UINT16, 1, "bits", "alarms",
             "string alarm word: b0 current high (charge), b1 current high (discharge), "
             "b2 voltage high, b3 voltage low, b4 SOC low, b5 SOH low, "
             "b6 Hall sensor disconnected", DOC),
    Register(14, RegType.UINT16, 1, "0/1", "relay_closed",
             "relay status (0 open, 1 closed)", ASSUMED),
    Register(15, RegType.UINT16, 1, "0/1", "aux_input_on",
             "auxiliary input (0 off, 1 on)", ASSUMED),
)  # fmt: skip

CELL_ARRAYS: tuple[CellArray, ...] = (
    CellArray(1000, RegType.UINT16, 0.001, "V", "voltage_v", "cell voltage (1 mV)", ASSUMED,
              valid=CELL_VOLTS),
    CellArray(1200, RegType.UINT16, 0.001, "mOhm", "resistance_mohm",
              "cell internal resistance (1 uOhm)", ASSUMED, valid=((0.1, 50.0),)),
    CellArray(1400, RegType.INT16, 0.1, "C", "temperature_c", "cell temperature", ASSUMED,
              valid=((-20.0, 85.0),)),
    CellArray(1600, RegType.UINT16, 1, "%", "soc_pct", "cell SOC", ASSUMED, valid=PERCENT),
    CellArray(1800, RegType.UINT16, 1, "%", "soh_pct", "cell SOH", ASSUMED, valid=PERCENT),
    CellArray(2000, RegType.UINT16, 1, "bits", "status",
              "cell status: b0 sensor lost (all the cell's values become None), "
              "b1 balancing active", ASSUMED, valid=((0, 3),)),
)  # fmt: skip

CELL_COUNT = next(r for r in STRING_BLOCK if r.field == "cell_count")
CELL_STATUS = next(a for a in CELL_ARRAYS if a.field == "status")


#: what the default table's rendering says first (docs/bmsm-registers.md)
DEFAULT_INTRO = (
    "Generated from `protocols/bmsm/registers.py` "
    "(`btms-gateway export bmsm-registers > docs/bmsm-registers.md`);",
    "do not edit by hand. Holding registers, function 03, 0-based addresses.",
    '"assumed" rows are not published by the manufacturer (see docs/device.md):',
    "a correction from the field is a one-line change in that table.",
)


def render_markdown(
    block: Sequence[Register] = STRING_BLOCK,
    cells: Sequence[CellArray] = CELL_ARRAYS,
    *,
    intro: Sequence[str] = DEFAULT_INTRO,
    changes: Mapping[str, str] | None = None,
) -> str:
    """docs/bmsm-registers.md, generated from the table above; or, given
    other rows (an override's effective map), that map with the rows named
    in ``changes`` (``"string.FIELD"`` / ``"cell.FIELD"`` -> what changed)
    marked as overridden."""
    changes = changes or {}
    lo = min(r.address for r in block)
    hi = max(r.address + r.words for r in block) - 1
    count = next(r for r in block if r.field == "cell_count")
    out = [
        "# BM-SM register table",
        "",
        *intro,
        "",
        f"## String block (one read of HR {lo}..{hi})",
        "",
        "| HR | type | word order | scale | unit | no-sensor marker | valid range | meaning "
        "| source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in block:
        hr = f"{r.address}-{r.address + 1}" if r.words == 2 else str(r.address)
        src = _src(r.documented, changes.get(f"string.{r.field}"))
        out.append(
            f"| {hr} | {r.type} | {r.word_order} | {r.scale:g} | {r.unit} | "
            f"{_marker(r.no_sensor)} | {spans_text(r.valid)} | {r.meaning} | {src} |"
        )
    out += [
        "",
        f"## Per-cell arrays (cell i = 0..{MAX_CELLS - 1}, only i < HR {count.address} is read)",
        "",
        "| HR | type | scale | unit | no-sensor marker | valid range | meaning | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in cells:
        src = _src(a.documented, changes.get(f"cell.{a.field}"))
        out.append(
            f"| {a.base} + i | {a.type} | {a.scale:g} | {a.unit} | {_marker(a.no_sensor)} | "
            f"{spans_text(a.valid)} | {a.meaning} | {src} |"
        )
    out += [
        "",
        "Decoded values are SI as the data model uses them (V, A, mOhm, C, %RH, %).",
        "Valid ranges are what the device can measure (its datasheet). A decoded value",
        "outside them fails the poll (error kind `decode`, naming the quantity, the cell,",
        "the value and the range), so it is never served as GOOD; a no-sensor marker",
        "(None) and the values of a cell whose sensor is lost are not checked. Cell",
        "voltage accepts either block type, 2 V (1.6..2.6) or 12 V (7.5..15.6); a cell",
        "status with a bit the device does not set (above b1) is refused as well.",
        "String SOH is not a device register: the gateway derives it as the lowest cell SOH.",
        "Registers past the cell count read as 0 or answer exception 02; the poller never",
        "reads them on purpose and handles both (see docs/southbound.md).",
        "",
    ]
    return "\n".join(out)


def spans_text(spans: tuple[Span, ...], unit: str = "") -> str:
    """``((1.6, 2.6), (7.5, 15.6))`` -> ``1.6..2.6 or 7.5..15.6`` (and the unit
    when given); ``-`` when unchecked."""
    text = " or ".join(f"{lo:g}..{hi:g}" for lo, hi in spans)
    return (f"{text} {unit}" if unit else text) if text else "-"


def _marker(v: int | None) -> str:
    return "-" if v is None else f"0x{v:04X}"


def _src(documented: bool, change: str | None = None) -> str:
    src = "documented" if documented else "**assumed**"
    return f"{src}; **overridden**: {change}" if change else src


if __name__ == "__main__":
    print(render_markdown(), end="")
