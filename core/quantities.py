"""The quantity table: every plant quantity a protocol serves, each named once.

A quantity is one value of a UPS, a string or a cell: its unit (SI as the
model has it), the device's resolution (docs/device.md: an integer protocol
carries ``value / resolution``), whether it is signed, what kind of value it
is, and its role: a MEASURED value is withheld (or flagged) while its string
is not GOOD, a STATUS value never is, so a SCADA can always see why measured
values are withheld. Every northbound protocol derives its table from this
one: it keeps a placement for what is fixed on its wire (a Modbus register,
an SNMP column, a BACnet object, a metric name) keyed by ``(level, key)``,
and places a quantity it has no placement for automatically
(docs/plugin_hooks.md, "How a protocol derives its table").

Plugins add quantities through ``register_quantities``; a gateway merges
them with core's own when it is built (``gateway.quantities(level)``), and an
exporter's plant does the same (``ExportedPlant.quantities``). Never at import
time: the table a protocol serves is the one of the gateway it serves.

Not quantities: a UPS's or string's identity (name, index, UPS index, slave
id, bus), which every protocol uses to address its rows, and the
communication counters (``CommCounters``). Statistics over a string's cells
(lowest cell voltage, ...) are a protocol's presentation of cell quantities.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

from .alarm_types import Severity
from .model import (
    CellReading,
    CellStatus,
    DeviceStatus,
    Quality,
    StringAlarm,
    StringSnapshot,
    StringState,
    UpsSnapshot,
)

P = TypeVar("P")


class Level(enum.StrEnum):
    """What a quantity is a value of."""

    UPS = "ups"
    STRING = "string"
    CELL = "cell"


class Role(enum.Enum):
    """MEASURED values are withheld (or flagged) when not current; STATUS values never are."""

    MEASURED = "measured"
    STATUS = "status"


Kind = Literal["number", "count", "enum", "bits", "bool"]
Source = Literal["device", "derived", "gateway"]
Value = float | int | bool | None
#: reads a quantity from its level's object: an UpsSnapshot, a StringSnapshot or a CellReading
Reader = Callable[[Any], Value]


def names_of(members: Iterable[enum.Enum]) -> Mapping[int, str]:
    """Value -> name (lower case, as the JSON shapes write them) of an enum's
    members, or of a flag's single bits (their number -> name)."""
    out: dict[int, str] = {}
    for m in members:
        if isinstance(m, enum.Flag):
            if not m.value:
                continue
            out[int(m.value).bit_length() - 1] = (m.name or "").lower()
        else:
            out[int(m.value)] = (m.name or "").lower()
    return MappingProxyType(out)


#: the string state register's values (HR 7), in declaration order: a protocol that
#: numbers enumerations from 1 (a BACnet multi-state value, an SNMP INTEGER) numbers them so
STATE_NAMES = names_of(StringState)
#: the bits of the BM-SM's alarm word (HR 13), bit number -> name
ALARM_BIT_NAMES = names_of(StringAlarm)
#: the bits of a cell's status register (2000 + i)
CELL_FLAG_NAMES = names_of(CellStatus)
#: DeviceStatus, as the BM-GW's status registers carry it
DEVICE_STATUS_NAMES = names_of(DeviceStatus)
QUALITY_NAMES = names_of(Quality)
#: the highest severity among active alarms; 0 when none is active
SEVERITY_NAMES: Mapping[int, str] = MappingProxyType({0: "none", **names_of(Severity)})


@dataclass(frozen=True, slots=True, eq=False)
class Quantity:
    """One plant quantity.

    ``read`` takes the level's object (an ``UpsSnapshot``, a ``StringSnapshot``
    or a ``CellReading``) and returns the value in ``unit``, or None when there
    is none (never read, not measured). It is None for a value the serving
    protocol computes when it answers: a data age (the age at that instant)
    and the alarm summary (from the active alarms ``alarm_event`` delivers).
    ``json_key`` is the key the JSON shapes (``api.ups_dict``, ``reading_dict``,
    ``cell_dict``, ``string_dict``) serve it under, "" when they do not.
    ``values`` names the members of an enum (value -> name) or the bits of a
    bit word (bit number -> name). Each quantity is one object: equal only to
    itself (so it can key a cache)."""

    key: str
    level: Level
    unit: str
    resolution: float | None
    signed: bool
    kind: Kind
    role: Role
    description: str
    read: Reader | None
    values: Mapping[int, str] = field(default_factory=dict)
    source: Source = "device"
    json_key: str = ""

    @property
    def measured(self) -> bool:
        return self.role is Role.MEASURED

    @property
    def scale(self) -> int:
        """Counts per unit of an integer encoding at the device's resolution
        (100 for 0.01 V); 1 for a quantity without a resolution."""
        return 1 if self.resolution is None else round(1 / self.resolution)


def _derived(key: str) -> Reader:
    """What analytics derived for a string (``StringSnapshot.derived``), only
    while the string is GOOD."""

    def read(s: StringSnapshot) -> Value:
        return s.derived.get(key) if s.quality is Quality.GOOD else None

    return read


def _reading(attr: str) -> Reader:
    def read(s: StringSnapshot) -> Value:
        r = s.reading
        return None if r is None else getattr(r, attr)

    return read


def _attr(attr: str) -> Reader:
    def read(obj: Any) -> Value:
        value: Value = getattr(obj, attr)
        return value

    return read


def _ups_string_count(u: UpsSnapshot) -> int:
    return len(u.strings)


def _string_alarm_word(s: StringSnapshot) -> int | None:
    r = s.reading
    return None if r is None else int(r.alarms)


def _cell_flags(c: CellReading) -> int:
    return int(c.status)


def _alarm_summary(level: Level, where: str) -> tuple[Quantity, Quantity]:
    """How many gateway alarms are active on ``where`` (and on the gateway
    itself: event_log_failing), and the highest severity among them."""
    return (
        Quantity("active_alarms", level, "", None, False, "count", Role.STATUS,
                 f"gateway alarms active on {where}, and on the gateway itself", None,
                 source="gateway"),
        Quantity("alarm_severity", level, "", None, False, "enum", Role.STATUS,
                 "the highest severity of those alarms", None, SEVERITY_NAMES, "gateway"),
    )  # fmt: skip


U, S, C = Level.UPS, Level.STRING, Level.CELL
M, ST = Role.MEASURED, Role.STATUS
STATUS_TEXT = "0 disabled, 1 OK, 2 error"

# fmt: off
QUANTITIES: tuple[Quantity, ...] = (
    # --- UPS: computed by the gateway from its strings, as the BM-GW does ------------
    Quantity("status", U, "", None, False, "enum", ST,
             f"{STATUS_TEXT}: error if any of its strings errs", _attr("status"),
             DEVICE_STATUS_NAMES, "derived", "status"),
    Quantity("quality", U, "", None, False, "enum", ST, "the worst quality of its strings",
             _attr("quality"), QUALITY_NAMES, "gateway", "quality"),
    Quantity("voltage", U, "V", 0.01, False, "number", M, "the mean of its string voltages",
             _attr("voltage_v"), source="derived", json_key="voltage_v"),
    Quantity("current", U, "A", 0.01, True, "number", M,
             "the sum of its string currents, + charge / - discharge", _attr("current_a"),
             source="derived", json_key="current_a"),
    Quantity("soc", U, "%", 1, False, "number", M, "the mean of its string SOCs",
             _attr("soc_pct"), source="derived", json_key="soc_pct"),
    Quantity("string_count", U, "", None, False, "count", ST, "strings in this UPS",
             _ups_string_count, source="gateway"),
    Quantity("data_age", U, "s", 1, False, "number", ST,
             "age of its oldest string values (none while a string of it was never read)",
             None, source="gateway"),
    *_alarm_summary(U, "the UPS, its strings and cells"),
    # --- string: a BM-SM string master ------------------------------------------------
    Quantity("status", S, "", None, False, "enum", ST,
             f"{STATUS_TEXT}: error when its data is not GOOD, its state abnormal or any "
             "alarm bit set", _attr("device_status"), DEVICE_STATUS_NAMES, "derived", "status"),
    Quantity("quality", S, "", None, False, "enum", ST, "whether its values are current",
             _attr("quality"), QUALITY_NAMES, "gateway", "quality"),
    Quantity("data_age", S, "s", 1, False, "number", ST,
             "seconds since its values were read (none if never read)", None,
             source="gateway", json_key="age_s"),
    Quantity("voltage", S, "V", 0.01, False, "number", M, "string voltage",
             _reading("voltage_v"), json_key="voltage_v"),
    Quantity("current", S, "A", 0.01, True, "number", M,
             "string current, + charge / - discharge", _reading("current_a"),
             json_key="current_a"),
    Quantity("soc", S, "%", 1, False, "number", M, "string state of charge",
             _reading("soc_pct"), json_key="soc_pct"),
    Quantity("soh", S, "%", 1, False, "number", M,
             "string state of health: the lowest cell SOH (the device has no string SOH)",
             _reading("soh_pct"), source="derived", json_key="soh_pct"),
    Quantity("balance", S, "%", 0.01, False, "number", M, "string balance",
             _reading("balance_pct"), json_key="balance_pct"),
    Quantity("state", S, "", None, False, "enum", M, "the string state register (HR 7)",
             _reading("state"), STATE_NAMES, json_key="state"),
    Quantity("alarm_word", S, "", None, False, "bits", M,
             "the BM-SM's own alarm word (HR 13)", _string_alarm_word, ALARM_BIT_NAMES,
             json_key="alarms"),
    Quantity("cell_count", S, "", None, False, "count", M, "cells found by auto-addressing",
             _reading("cell_count"), json_key="cell_count"),
    Quantity("ambient_temperature", S, "C", 0.1, True, "number", M,
             "ambient temperature (BM-TH); none when no sensor is fitted",
             _reading("ambient_temperature_c"), json_key="ambient_temperature_c"),
    Quantity("ambient_humidity", S, "%RH", 0.1, False, "number", M,
             "ambient humidity (BM-TH); none when no sensor is fitted",
             _reading("ambient_humidity_pct"), json_key="ambient_humidity_pct"),
    Quantity("relay_closed", S, "", None, False, "bool", M, "relay closed",
             _reading("relay_closed"), json_key="relay_closed"),
    Quantity("aux_input_on", S, "", None, False, "bool", M, "auxiliary input on",
             _reading("aux_input_on"), json_key="aux_input_on"),
    Quantity("runtime_remaining", S, "s", 1, False, "number", M,
             "estimated runtime left to the end voltage while a discharge runs "
             "(docs/analytics.md); none outside one, without a rated capacity, or while the "
             "string is not GOOD (an estimate of the time left is never served stale)",
             _derived("runtime_remaining_s"), source="derived"),
    Quantity("depth_of_discharge", S, "%", 0.1, False, "number", M,
             "depth of discharge of the running discharge, Peukert-corrected "
             "(docs/analytics.md); none as for runtime_remaining",
             _derived("dod_pct"), source="derived"),
    *_alarm_summary(S, "the string and its cells"),
    # --- cell: a BM-CS cell sensor ----------------------------------------------------
    Quantity("status", C, "", None, False, "enum", ST,
             f"{STATUS_TEXT}: error when its sensor is lost or its voltage not measured",
             _attr("device_status"), DEVICE_STATUS_NAMES, "derived"),
    Quantity("voltage", C, "V", 0.001, False, "number", M, "cell voltage",
             _attr("voltage_v"), json_key="voltage_v"),
    Quantity("resistance", C, "mOhm", 0.001, False, "number", M, "cell internal resistance",
             _attr("resistance_mohm"), json_key="resistance_mohm"),
    Quantity("temperature", C, "C", 0.1, True, "number", M, "cell temperature",
             _attr("temperature_c"), json_key="temperature_c"),
    Quantity("soc", C, "%", 1, False, "number", M, "cell state of charge",
             _attr("soc_pct"), json_key="soc_pct"),
    Quantity("soh", C, "%", 1, False, "number", M, "cell state of health",
             _attr("soh_pct"), json_key="soh_pct"),
    Quantity("flags", C, "", None, False, "bits", M, "the cell's status bits (2000 + i)",
             _cell_flags, CELL_FLAG_NAMES, json_key="status"),
)
# fmt: on


class QuantityError(ValueError):
    """A registered quantity that cannot join the table (its level and key are taken)."""


def merged(
    extra: Iterable[Quantity], base: tuple[Quantity, ...] = QUANTITIES
) -> tuple[Quantity, ...]:
    """``base`` and then ``extra``, each (level, key) once; QuantityError names the first clash."""
    out = list(base)
    seen = {(q.level, q.key) for q in out}
    for q in extra:
        if (q.level, q.key) in seen:
            raise QuantityError(f"quantity {q.level.value}.{q.key} is already in the table")
        seen.add((q.level, q.key))
        out.append(q)
    return tuple(out)


def of_level(level: Level, table: Iterable[Quantity] = QUANTITIES) -> tuple[Quantity, ...]:
    """The quantities of one level, in table order (core's, then the plugins')."""
    return tuple(q for q in table if q.level == level)


class HasQuantities(Protocol):
    """A gateway, or an exporter's plant: what gives a level's quantities."""

    def quantities(self, level: Level) -> tuple[Quantity, ...]: ...


def table_of(source: HasQuantities | None) -> tuple[Quantity, ...]:
    """The whole merged table of ``source`` (every level, table order), or core's
    own when ``source`` is None: what a protocol derives its table from."""
    if source is None:
        return QUANTITIES
    return tuple(q for level in Level for q in source.quantities(level))


def placed(
    level: Level,
    table: Iterable[Quantity],
    placements: Mapping[tuple[Level, str], P],
    not_served: Container[tuple[Level, str]] = (),
) -> Iterator[tuple[Quantity, P | None]]:
    """What a protocol derives its table from: each quantity of ``level`` it serves,
    in table order, with its placement, or None when the protocol places it by its
    rule. Left out: the quantities in ``not_served`` (the protocol shows them
    elsewhere), and one without a placement whose value the protocol would have to
    compute as it answers (``read is None``: only a placement can say how)."""
    for q in of_level(level, table):
        key = (level, q.key)
        if key in not_served:
            continue
        place = placements.get(key)
        if place is None and q.read is None:
            continue
        yield q, place


def quantity(level: Level, key: str, table: Iterable[Quantity] = QUANTITIES) -> Quantity:
    """The quantity ``key`` of ``level`` (KeyError naming it if there is none)."""
    for q in table:
        if q.level == level and q.key == key:
            return q
    raise KeyError(f"no quantity {level.value}.{key}")
