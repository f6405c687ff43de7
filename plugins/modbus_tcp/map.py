"""The Modbus TCP register map: the ONE table the server, the exporter and the tests use.

Each :class:`Point` says where a value lives (block, register offset), how it
is encoded (type, scale), whether it is a *measured* value (withheld with
exception 0x0B while its string is not GOOD) or a *status* value (always
readable, so a SCADA can see why measured values are withheld), and where
it comes from (the manufacturer's BM-GW "v2" map, or this project's
extension). Changing a register is a one-line change here; the generated
docs/modbus-map.md follows, and a test checks that the committed file does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal, NamedTuple

from btms_gateway.core.model import CellReading, CellStatus, DeviceStatus, Quality

Block = Literal["ups", "string", "cell"]
Kind = Literal["u16", "s16", "u32", "s32", "enum", "bits"]

#: unit ids: UPS data on the UPS index, string and cell data on 100 + string index
UPS_UNIT_BASE = 0
STRING_UNIT_BASE = 100
MAX_INDEX = 32
MAX_CELLS = 120
#: cell ci (1..120) occupies registers CELL_STRIDE*ci .. CELL_STRIDE*ci + CELL_STRIDE - 1
CELL_STRIDE = 100
#: the registers a unit answers; anything else is exception 02 (illegal address)
UPS_EXTENT = (0, 30)
STRING_EXTENTS = ((0, 30), (CELL_STRIDE, CELL_STRIDE * (MAX_CELLS + 1)))
#: served when an unsigned value is unknown (never read, no sensor): see `missing`
NO_VALUE_U16 = 0xFFFF
NO_VALUE_S16 = 0x8000
MAX_AGE_S = 0xFFFF


class Role(enum.Enum):
    """MEASURED values are withheld (0x0B) when not current; STATUS values never are."""

    MEASURED = "measured"
    STATUS = "status"


#: bit of the cell alarm register (+7) for each gateway cell alarm rule; bits 0-1 are
#: the BM-SM's own cell status bits. Keyed by rule name so that the alarm engine's
#: rule table and this map can evolve apart; an unknown cell rule sets OTHER_CELL_ALARM_BIT.
CELL_ALARM_BITS: dict[str, int] = {
    "cell_resistance_median_warning": 2,
    "cell_resistance_median_alarm": 3,
    "cell_temperature_vs_median": 4,
    "cell_temperature_vs_ambient": 5,
    "cell_voltage_high": 8,
    "cell_voltage_low": 9,
    "cell_resistance_warning": 10,
    "cell_resistance_alarm": 11,
    "cell_temperature_high": 12,
    "cell_soc_low": 13,
    "cell_soh_low": 14,
}
OTHER_CELL_ALARM_BIT = 15


@dataclass(frozen=True, slots=True)
class UpsView:
    """What a UPS point reads: the snapshot plus the gateway's alarm summary."""

    ups: Any  # UpsSnapshot
    active_alarms: int = 0
    max_severity: int = 0


@dataclass(frozen=True, slots=True)
class StringView:
    string: Any  # StringSnapshot
    active_alarms: int = 0
    max_severity: int = 0


class CellView(NamedTuple):
    """A tuple rather than a frozen dataclass: 120 are made per image, 32 images
    a second, and a frozen dataclass's __init__ costs several times more."""

    cell: CellReading | None  # None: past the cell count, or the string was never read
    string_good: bool
    alarm_bits: int = 0


@dataclass(frozen=True, slots=True)
class Point:
    block: Block
    offset: int  # register (UPS/string block) or k in 100*ci + k (cell block)
    name: str
    kind: Kind
    scale: float | None  # engineering units per count; None for enums, bits and counts
    unit: str
    role: Role
    origin: Literal["BM-GW v2", "extension"]
    description: str
    read: Callable[[Any], float | int | None]
    missing: int = 0  # raw value served when `read` returns None
    live: bool = False  # computed when a request is answered (data age), not at build time

    @property
    def words(self) -> int:
        return 2 if self.kind in ("u32", "s32") else 1

    @property
    def signed(self) -> bool:
        return self.kind in ("s16", "s32")


M, S = Role.MEASURED, Role.STATUS
GW, EXT = "BM-GW v2", "extension"
STATUS_TEXT = "0 disabled, 1 OK, 2 error"
QUALITY_TEXT = "0 GOOD, 1 STALE, 2 OFFLINE"
SEVERITY_TEXT = "highest active alarm: 0 none, 1 warning, 2 alarm, 3 critical"


def _rv(attr: str) -> Callable[[StringView], Any]:
    def get(view: StringView) -> Any:
        r = view.string.reading
        return None if r is None else getattr(r, attr)

    return get


def _derived(key: str) -> Callable[[StringView], Any]:
    """A value analytics derived (docs/analytics.md), served only while its string
    is GOOD: an estimate of the time left ages by the second, so a stale string
    serves "no value" even where the stale behaviour serves its last readings."""

    def get(view: StringView) -> Any:
        s = view.string
        return s.derived.get(key) if s.quality is Quality.GOOD else None

    return get


def _bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _cell_status(view: CellView) -> int:
    if view.cell is None:
        return DeviceStatus.DISABLED
    if not view.string_good:
        return DeviceStatus.ERROR
    return view.cell.device_status


_DEVICE_CELL_BITS = int(CellStatus.SENSOR_LOST | CellStatus.BALANCING)


def _cell_bits(view: CellView) -> int | None:
    if view.cell is None:
        return None
    return int(view.cell.status) & _DEVICE_CELL_BITS | view.alarm_bits


def _c(attr: str) -> Callable[[CellView], Any]:
    def get(view: CellView) -> Any:
        return None if view.cell is None else getattr(view.cell, attr)

    return get


# fmt: off
POINTS: tuple[Point, ...] = (
    # --- UPS block: unit id = UPS index 1..32 -------------------------------------
    Point("ups", 0, "ups_status", "enum", None, "", S, GW, STATUS_TEXT,
          lambda v: v.ups.status),
    Point("ups", 1, "ups_voltage", "u32", 0.01, "V", M, GW, "mean of the string voltages",
          lambda v: v.ups.voltage_v),
    Point("ups", 3, "ups_current", "s32", 0.01, "A", M, GW,
          "sum of the string currents, + charge / - discharge", lambda v: v.ups.current_a),
    Point("ups", 5, "ups_soc", "u16", 1, "%", M, GW, "mean of the string SOCs",
          lambda v: v.ups.soc_pct),
    Point("ups", 20, "ups_quality", "enum", None, "", S, EXT,
          f"worst quality of its strings: {QUALITY_TEXT}", lambda v: v.ups.quality),
    Point("ups", 21, "ups_data_age", "u16", 1, "s", S, EXT,
          "age of its oldest string values; 65535 = a string of it never read (or older)",
          lambda v: None,
          missing=NO_VALUE_U16, live=True),
    Point("ups", 22, "ups_active_alarms", "u16", None, "", S, EXT,
          "gateway alarms active on the UPS, its strings and cells, and on the gateway itself "
          "(event_log_failing)", lambda v: v.active_alarms),
    Point("ups", 23, "ups_alarm_severity", "enum", None, "", S, EXT, SEVERITY_TEXT,
          lambda v: v.max_severity),
    Point("ups", 24, "ups_string_count", "u16", None, "", S, EXT, "strings in this UPS",
          lambda v: len(v.ups.strings)),
    # --- string block: unit id = 100 + string index 1..32 ---------------------------
    Point("string", 0, "string_ups_index", "u16", None, "", S, GW,
          "UPS index of the string (0 = none)", lambda v: v.string.ups_index),
    Point("string", 1, "string_status", "enum", None, "", S, GW,
          f"{STATUS_TEXT} (error: data not GOOD, state abnormal, or any alarm bit)",
          lambda v: v.string.device_status),
    Point("string", 2, "string_voltage", "u32", 0.01, "V", M, GW, "string voltage",
          _rv("voltage_v")),
    Point("string", 4, "string_current", "s32", 0.01, "A", M, GW,
          "string current, + charge / - discharge", _rv("current_a")),
    Point("string", 6, "string_soc", "u16", 1, "%", M, GW, "string state of charge",
          _rv("soc_pct")),
    Point("string", 7, "string_balance", "u16", 0.01, "%", M, GW, "string balance",
          _rv("balance_pct")),
    Point("string", 8, "string_state", "enum", None, "", M, GW,
          "0 floating charge, 1 equalizing charge, 2 discharge, 3 idle, 5 abnormal, "
          "255 undocumented value", _rv("state")),
    Point("string", 9, "string_alarm_word", "bits", None, "", M, GW,
          "BM-SM alarm word: b0 current high (charge), b1 current high (discharge), "
          "b2 voltage high, b3 voltage low, b4 SOC low, b5 SOH low, b6 Hall sensor "
          "disconnected", _rv("alarms")),
    Point("string", 10, "string_cell_count", "u16", None, "", M, GW,
          "cells found by auto-addressing", _rv("cell_count")),
    Point("string", 11, "ambient_temperature", "s16", 0.1, "C", M, GW,
          "ambient temperature; -32768 = no sensor", _rv("ambient_temperature_c"),
          missing=NO_VALUE_S16),
    Point("string", 12, "ambient_humidity", "u16", 0.1, "%RH", M, GW,
          "ambient humidity; 65535 = no sensor", _rv("ambient_humidity_pct"),
          missing=NO_VALUE_U16),
    Point("string", 13, "relay_status", "u16", None, "", M, GW,
          "0 open, 1 closed; 65535 = unknown", lambda v: _bool(_rv("relay_closed")(v)),
          missing=NO_VALUE_U16),
    Point("string", 14, "aux_input", "u16", None, "", M, GW,
          "0 off, 1 on; 65535 = unknown", lambda v: _bool(_rv("aux_input_on")(v)),
          missing=NO_VALUE_U16),
    Point("string", 20, "string_quality", "enum", None, "", S, EXT, QUALITY_TEXT,
          lambda v: v.string.quality),
    Point("string", 21, "string_data_age", "u16", 1, "s", S, EXT,
          "seconds since the values were read; 65535 = never read (or older)",
          lambda v: None, missing=NO_VALUE_U16, live=True),
    Point("string", 22, "string_active_alarms", "u16", None, "", S, EXT,
          "gateway alarms active on the string and its cells, and on the gateway itself "
          "(event_log_failing)", lambda v: v.active_alarms),
    Point("string", 23, "string_alarm_severity", "enum", None, "", S, EXT, SEVERITY_TEXT,
          lambda v: v.max_severity),
    Point("string", 25, "string_soh", "u16", 1, "%", M, EXT,
          "derived by the gateway: the lowest cell SOH (the device has no string SOH)",
          _rv("soh_pct")),
    Point("string", 26, "string_runtime_remaining", "u32", 1, "s", M, EXT,
          "derived by the gateway: estimated runtime left to the end voltage while a "
          "discharge runs (docs/analytics.md); 4294967295 = no value (no discharge running, "
          "no rated capacity configured, or the string not GOOD)",
          _derived("runtime_remaining_s"), missing=NO_VALUE_U16),
    Point("string", 28, "string_depth_of_discharge", "u16", 0.1, "%", M, EXT,
          "derived by the gateway: depth of discharge of the running discharge, "
          "Peukert-corrected (docs/analytics.md); 65535 = no value (as above)",
          _derived("dod_pct"), missing=NO_VALUE_U16),
    # --- cell block: unit id = 100 + string index, register 100*ci + k, ci = 1..120 --
    Point("cell", 0, "cell_status", "enum", None, "", S, GW,
          f"{STATUS_TEXT} (0: no such cell; 2: sensor lost or string data not GOOD)",
          _cell_status),
    Point("cell", 1, "cell_voltage", "u16", 0.001, "V", M, GW, "cell voltage",
          _c("voltage_v")),
    Point("cell", 2, "cell_resistance", "u32", 0.001, "mOhm", M, GW,
          "cell internal resistance", _c("resistance_mohm")),
    Point("cell", 4, "cell_temperature", "s16", 0.1, "C", M, GW,
          "cell temperature; -32768 = not measured", _c("temperature_c"),
          missing=NO_VALUE_S16),
    Point("cell", 5, "cell_soc", "u16", 1, "%", M, GW, "cell state of charge", _c("soc_pct")),
    Point("cell", 6, "cell_soh", "u16", 1, "%", M, EXT,
          "cell state of health (assumed position; not in the public BM-GW map)",
          _c("soh_pct")),
    Point("cell", 7, "cell_alarm_bits", "bits", None, "", M, EXT,
          "b0 sensor lost, b1 balancing (BM-SM); gateway alarms: b2 resistance above the "
          "string median (warning), b3 (alarm), b4 hotter than the median cell, b5 hotter "
          "than ambient, b8 voltage high, b9 voltage low, b10 resistance warning, b11 "
          "resistance alarm, b12 temperature high, b13 SOC low, b14 SOH low, b15 other",
          _cell_bits),
)
# fmt: on

UPS_POINTS = tuple(p for p in POINTS if p.block == "ups")
STRING_POINTS = tuple(p for p in POINTS if p.block == "string")
CELL_POINTS = tuple(p for p in POINTS if p.block == "cell")
AGE_REGISTER = {
    b: next(p.offset for p in POINTS if p.block == b and p.live) for b in ("ups", "string")
}

_LIMITS: dict[str, tuple[int, int]] = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFF_FFFF),
    "s32": (-0x8000_0000, 0x7FFF_FFFF),
    "enum": (0, 0xFFFF),
    "bits": (0, 0xFFFF),
}


def encode(point: Point, value: float | int | None, high_word_first: bool = True) -> list[int]:
    """Registers for one value: scaled, rounded, clamped to the type's range (a
    value out of range is pinned to the limit rather than wrapped), two's
    complement for signed types, 32-bit values split in the configured word order."""
    return [word[0] for word in encode_column(point, [value], high_word_first)]


def encode_column(
    point: Point, values: list[Any], high_word_first: bool = True
) -> tuple[list[int], ...]:
    """:func:`encode` for many values of one point at once: one list per
    register of the value (in wire order), so each list can be written into a
    strided slice of the image. One pass per register instead of one call per
    value: the cell block is 960 values a string, and a 32-string plant is
    rebuilt 32 times a second. A missing value (None) is ``point.missing`` in
    every register (a 32-bit value with missing 0xFFFF reads 0xFFFF_FFFF)."""
    low, high = _LIMITS[point.kind]
    missing = point.missing
    counts = values if not point.scale else [None if v is None else v / point.scale for v in values]
    # clamp with comparisons, not min()/max() calls: this runs for every cell value
    raws = [
        None if c is None else r if low <= (r := round(c)) <= high else low if r < low else high
        for c in counts
    ]
    if point.words == 1:
        return ([missing if r is None else r & 0xFFFF for r in raws],)
    his = [missing if r is None else (r & 0xFFFF_FFFF) >> 16 for r in raws]
    los = [missing if r is None else r & 0xFFFF for r in raws]
    return (his, los) if high_word_first else (los, his)


def decode(point: Point, registers: list[int], high_word_first: bool = True) -> float | int:
    """The inverse of :func:`encode` (used by tests and by the docs' examples)."""
    if point.words == 2:
        hi, lo = registers if high_word_first else registers[::-1]
        raw = hi << 16 | lo
        if point.signed and raw & 0x8000_0000:
            raw -= 1 << 32
    else:
        raw = registers[0]
        if point.signed and raw & 0x8000:
            raw -= 1 << 16
    return raw * point.scale if point.scale else raw


def ups_unit(index: int) -> int:
    return UPS_UNIT_BASE + index


def string_unit(index: int) -> int:
    return STRING_UNIT_BASE + index


def cell_register(ci: int, k: int) -> int:
    return CELL_STRIDE * ci + k


def point(name: str) -> Point:
    return next(p for p in POINTS if p.name == name)


def _measured_prefix(size: int, regs: list[tuple[int, Point]]) -> list[int]:
    """Prefix sums of "this register holds a measured value", so one request's
    quality check is two list lookups whatever its length."""
    flags = [0] * size
    for base, p in regs:
        if p.role is Role.MEASURED:
            for w in range(p.words):
                flags[base + w] = 1
    return [0, *accumulate(flags)]


UPS_SIZE = UPS_EXTENT[1]
STRING_SIZE = STRING_EXTENTS[-1][1]
UPS_MEASURED = _measured_prefix(UPS_SIZE, [(p.offset, p) for p in UPS_POINTS])
STRING_MEASURED = _measured_prefix(
    STRING_SIZE,
    [(p.offset, p) for p in STRING_POINTS]
    + [(cell_register(ci, p.offset), p) for ci in range(1, MAX_CELLS + 1) for p in CELL_POINTS],
)
