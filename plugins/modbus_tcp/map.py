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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal, NamedTuple

from btms_gateway.core.api import (
    QUANTITIES,
    CellReading,
    CellStatus,
    DeviceStatus,
    Level,
    Quantity,
    Role,
    placed,
)

Block = Literal["ups", "string", "cell"]
Kind = Literal["u16", "s16", "u32", "s32", "enum", "bits"]
Origin = Literal["BM-GW v2", "extension"]

#: unit ids: UPS data on the UPS index (1..32), string and cell data on 100 + string
#: index: 101..132 for strings 1..32, exactly the BM-GW's ids, and the same rule carried
#: on to 133..228 for strings 33..128 (all below 248, where Modbus's reserved ids begin)
UPS_UNIT_BASE = 0
STRING_UNIT_BASE = 100
LAST_INDIVIDUAL_UNIT = 247
MAX_CELLS = 120
#: cell ci (1..120) occupies registers CELL_STRIDE*ci .. CELL_STRIDE*ci + CELL_STRIDE - 1
CELL_STRIDE = 100
#: served when an unsigned value is unknown (never read, no sensor): see `missing`
NO_VALUE_U16 = 0xFFFF
NO_VALUE_S16 = 0x8000


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
    origin: Origin
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
GW: Origin = "BM-GW v2"
EXT: Origin = "extension"
STATUS_TEXT = "0 disabled, 1 OK, 2 error"
QUALITY_TEXT = "0 GOOD, 1 STALE, 2 OFFLINE"
SEVERITY_TEXT = "highest active alarm: 0 none, 1 warning, 2 alarm, 3 critical"


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


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one plant quantity (core's table, keyed by level and key) sits on the
    wire: its register offset, tag name, type and origin. ``description`` is the
    map's own text where it says more than the table's (its encoding: the no-value
    raw value, the enum's numbers); ``read`` reads the view when the table's read of
    the level's snapshot does not give the value (alarm summary, cell bits)."""

    offset: int
    name: str
    kind: Kind
    origin: Origin
    description: str = ""
    missing: int = 0
    read: Callable[[Any], float | int | None] | None = None


U, St, C = Level.UPS, Level.STRING, Level.CELL


def _alarm_summary(level: Level, first: int, where: str) -> dict[tuple[Level, str], Placement]:
    """The two registers of a block's alarm summary, read from the view."""
    return {
        (level, "active_alarms"): Placement(
            first, f"{level.value}_active_alarms", "u16", EXT,
            f"gateway alarms active on {where}, and on the gateway itself "
            "(event_log_failing, history_paused)",
            read=lambda v: v.active_alarms),
        (level, "alarm_severity"): Placement(
            first + 1, f"{level.value}_alarm_severity", "enum", EXT, SEVERITY_TEXT,
            read=lambda v: v.max_severity),
    }  # fmt: skip


# fmt: off
#: today's registers, keyed by (level, key) of the quantity table: they never move
PLACEMENTS: dict[tuple[Level, str], Placement] = {
    # --- UPS block: unit id = UPS index 1..32 -------------------------------------
    (U, "status"): Placement(0, "ups_status", "enum", GW, STATUS_TEXT),
    (U, "voltage"): Placement(1, "ups_voltage", "u32", GW, "mean of the string voltages"),
    (U, "current"): Placement(3, "ups_current", "s32", GW,
                              "sum of the string currents, + charge / - discharge"),
    (U, "soc"): Placement(5, "ups_soc", "u16", GW, "mean of the string SOCs"),
    (U, "quality"): Placement(20, "ups_quality", "enum", EXT,
                              f"worst quality of its strings: {QUALITY_TEXT}"),
    (U, "data_age"): Placement(21, "ups_data_age", "u16", EXT,
                               "age of its oldest string values; 65535 = a string of it never "
                               "read (or older)", missing=NO_VALUE_U16),
    **_alarm_summary(U, 22, "the UPS, its strings and cells"),
    (U, "string_count"): Placement(24, "ups_string_count", "u16", EXT),
    # --- string block: unit id = 100 + string index 1..128 --------------------------
    (St, "status"): Placement(1, "string_status", "enum", GW,
                              f"{STATUS_TEXT} (error: data not GOOD, state abnormal, or any "
                              "alarm bit)"),
    (St, "voltage"): Placement(2, "string_voltage", "u32", GW),
    (St, "current"): Placement(4, "string_current", "s32", GW),
    (St, "soc"): Placement(6, "string_soc", "u16", GW),
    (St, "balance"): Placement(7, "string_balance", "u16", GW),
    (St, "state"): Placement(8, "string_state", "enum", GW,
                             "0 floating charge, 1 equalizing charge, 2 discharge, 3 idle, "
                             "5 abnormal, 255 undocumented value"),
    (St, "alarm_word"): Placement(9, "string_alarm_word", "bits", GW,
                                  "BM-SM alarm word: b0 current high (charge), b1 current high "
                                  "(discharge), b2 voltage high, b3 voltage low, b4 SOC low, "
                                  "b5 SOH low, b6 Hall sensor disconnected"),
    (St, "cell_count"): Placement(10, "string_cell_count", "u16", GW),
    (St, "ambient_temperature"): Placement(11, "ambient_temperature", "s16", GW,
                                           "ambient temperature; -32768 = no sensor",
                                           missing=NO_VALUE_S16),
    (St, "ambient_humidity"): Placement(12, "ambient_humidity", "u16", GW,
                                        "ambient humidity; 65535 = no sensor",
                                        missing=NO_VALUE_U16),
    (St, "relay_closed"): Placement(13, "relay_status", "u16", GW,
                                    "0 open, 1 closed; 65535 = unknown", missing=NO_VALUE_U16),
    (St, "aux_input_on"): Placement(14, "aux_input", "u16", GW, "0 off, 1 on; 65535 = unknown",
                                    missing=NO_VALUE_U16),
    (St, "quality"): Placement(20, "string_quality", "enum", EXT, QUALITY_TEXT),
    (St, "data_age"): Placement(21, "string_data_age", "u16", EXT,
                                "seconds since the values were read; 65535 = never read (or "
                                "older)", missing=NO_VALUE_U16),
    **_alarm_summary(St, 22, "the string and its cells"),
    (St, "soh"): Placement(25, "string_soh", "u16", EXT,
                           "derived by the gateway: the lowest cell SOH (the device has no "
                           "string SOH)"),
    (St, "runtime_remaining"): Placement(
        26, "string_runtime_remaining", "u32", EXT,
        "derived by the gateway: estimated runtime left to the end voltage while a discharge "
        "runs (docs/analytics.md); 4294967295 = no value (no discharge running, no rated "
        "capacity configured, or the string not GOOD)", missing=NO_VALUE_U16),
    (St, "depth_of_discharge"): Placement(
        28, "string_depth_of_discharge", "u16", EXT,
        "derived by the gateway: depth of discharge of the running discharge, "
        "Peukert-corrected (docs/analytics.md); 65535 = no value (as above)",
        missing=NO_VALUE_U16),
    # --- cell block: unit id = 100 + string index, register 100*ci + k, ci = 1..120 --
    (C, "status"): Placement(0, "cell_status", "enum", GW,
                             f"{STATUS_TEXT} (0: no such cell; 2: sensor lost or string data "
                             "not GOOD)", read=_cell_status),
    (C, "voltage"): Placement(1, "cell_voltage", "u16", GW),
    (C, "resistance"): Placement(2, "cell_resistance", "u32", GW),
    (C, "temperature"): Placement(4, "cell_temperature", "s16", GW,
                                  "cell temperature; -32768 = not measured",
                                  missing=NO_VALUE_S16),
    (C, "soc"): Placement(5, "cell_soc", "u16", GW),
    (C, "soh"): Placement(6, "cell_soh", "u16", EXT,
                          "cell state of health (assumed position; not in the public BM-GW map)"),
    (C, "flags"): Placement(7, "cell_alarm_bits", "bits", EXT,
                            "b0 sensor lost, b1 balancing (BM-SM); gateway alarms: b8 voltage "
                            "high, b9 voltage low, b10 resistance warning, b11 resistance alarm, "
                            "b12 temperature high, b13 SOC low, b14 SOH low, b15 other",
                            read=_cell_bits),
}
#: registers that are no plant quantity: a string's place in the plant
IDENTITY_POINTS: tuple[Point, ...] = (
    Point("string", 0, "string_ups_index", "u16", None, "", S, GW,
          "UPS index of the string (0 = none)", lambda v: v.string.ups_index),
)
# fmt: on

#: the block's first extension register (a quantity without a placement goes after
#: the highest register in use from here on)
EXTENSION_START = {U: 20, St: 20, C: 0}


def _view_read(q: Quantity) -> Callable[[Any], float | int | None]:
    """The table's read of the level's object, from the view the image hands a point."""
    read = q.read
    assert read is not None
    if q.level is U:
        return lambda v: read(v.ups)
    if q.level is St:
        return lambda v: read(v.string)
    return lambda v: None if v.cell is None else read(v.cell)


def _auto_kind(q: Quantity) -> Kind:
    if q.kind in ("enum", "bits"):
        return q.kind
    return "s16" if q.signed else "u16"


def _point(q: Quantity, place: Placement) -> Point:
    live = q.read is None and q.key == "data_age"
    read = place.read or (_none if live else _view_read(q))
    if q.kind == "bool":
        read = _as_int(read)
    scale = None if place.kind in ("enum", "bits") else q.resolution
    return Point(q.level.value, place.offset, place.name, place.kind, scale, q.unit,
                 M if q.measured else S, place.origin, place.description or q.description,
                 read, place.missing, live)  # fmt: skip


def _none(view: Any) -> None:
    return None


def _as_int(read: Callable[[Any], Any]) -> Callable[[Any], int | None]:
    return lambda v: _bool(read(v))


def build_points(table: Iterable[Quantity] = QUANTITIES) -> tuple[Point, ...]:
    """The map's points derived from the quantity table: each quantity at its
    placement; one without a placement in the next free extension register of its
    block (after the highest in use), typed by kind (s16 when signed, else u16;
    enum, bits), scaled at its resolution, 65535 (-32768) when it has no value."""
    table = tuple(table)
    points: list[Point] = list(IDENTITY_POINTS)
    for level in Level:
        chosen = list(placed(level, table, PLACEMENTS))
        points += [_point(q, place) for q, place in chosen if place is not None]
        free = max(
            (p.offset + p.words for p in points if p.block == level.value
             and p.offset >= EXTENSION_START[level]),
            default=EXTENSION_START[level],
        )  # fmt: skip
        for q, place in chosen:
            if place is None:
                kind = _auto_kind(q)
                missing = (
                    0 if kind in ("enum", "bits") else NO_VALUE_S16 if q.signed else NO_VALUE_U16
                )
                points.append(_point(q, Placement(free, f"{level.value}_{q.key}", kind, EXT,
                                                  missing=missing)))  # fmt: skip
                free += 1
        if level is C and free > CELL_STRIDE:
            raise ValueError(f"the cell block holds {CELL_STRIDE} registers a cell")
    order = {lv.value: n for n, lv in enumerate(Level)}
    return tuple(sorted(points, key=lambda p: (order[p.block], p.offset)))


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
    every register (32-bit values have missing = 0)."""
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


def _measured_prefix(size: int, regs: list[tuple[int, Point]]) -> list[int]:
    """Prefix sums of "this register holds a measured value", so one request's
    quality check is two list lookups whatever its length."""
    flags = [0] * size
    for base, p in regs:
        if p.role is Role.MEASURED:
            for w in range(p.words):
                flags[base + w] = 1
    return [0, *accumulate(flags)]


class RegisterMap:
    """The map of one quantity table: its points by block, the address extents
    (growing to hold registered quantities), the data-age registers and the
    measured-register prefix sums the quality rule reads."""

    def __init__(self, table: Iterable[Quantity] = QUANTITIES) -> None:
        self.points = build_points(table)
        self.ups_points = tuple(p for p in self.points if p.block == "ups")
        self.string_points = tuple(p for p in self.points if p.block == "string")
        self.cell_points = tuple(p for p in self.points if p.block == "cell")
        self.age_register = {
            b: next(p.offset for p in self.points if p.block == b and p.live)
            for b in ("ups", "string")
        }
        ups_end = max(30, *(p.offset + p.words for p in self.ups_points))
        string_end = max(30, *(p.offset + p.words for p in self.string_points))
        #: the registers a unit answers; anything else is exception 02 (illegal address)
        self.ups_extent = (0, ups_end)
        self.string_extents = ((0, string_end), (CELL_STRIDE, CELL_STRIDE * (MAX_CELLS + 1)))
        self.ups_size = ups_end
        self.string_size = CELL_STRIDE * (MAX_CELLS + 1)
        self.ups_measured = _measured_prefix(
            self.ups_size, [(p.offset, p) for p in self.ups_points]
        )
        self.string_measured = _measured_prefix(
            self.string_size,
            [(p.offset, p) for p in self.string_points]
            + [
                (cell_register(ci, p.offset), p)
                for ci in range(1, MAX_CELLS + 1)
                for p in self.cell_points
            ],
        )

    def point(self, name: str) -> Point:
        return next(p for p in self.points if p.name == name)


#: the map of core's own table (the docs, the exporters without a plant, the tests);
#: a gateway's plugin builds the map of its own table (``gateway.quantities``)
CORE_MAP = RegisterMap()
POINTS = CORE_MAP.points
UPS_POINTS, STRING_POINTS, CELL_POINTS = (
    CORE_MAP.ups_points, CORE_MAP.string_points, CORE_MAP.cell_points,
)  # fmt: skip
AGE_REGISTER = CORE_MAP.age_register
UPS_EXTENT, STRING_EXTENTS = CORE_MAP.ups_extent, CORE_MAP.string_extents
UPS_SIZE, STRING_SIZE = CORE_MAP.ups_size, CORE_MAP.string_size
UPS_MEASURED, STRING_MEASURED = CORE_MAP.ups_measured, CORE_MAP.string_measured
point = CORE_MAP.point
