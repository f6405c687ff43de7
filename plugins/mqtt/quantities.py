"""What the MQTT plugin reports of a string: one table of quantities and slots.

Both payload formats (Sparkplug B metrics and the JSON mode's keys) and the
report-by-exception logic read this one table, so a quantity is added in one
place. A *slot* numbers a quantity of one string: ``cell * CELL_STRIDE + q``,
where cell 0 is the string itself and q is the row in ``STRING`` or ``CELL``.
Slots are stable across restarts and releases (rows are only ever appended),
which is what lets a Sparkplug metric alias and a buffered record survive both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from btms_gateway.core import api
from btms_gateway.core.api import CellReading, StringSnapshot

#: slots per cell; the string's own quantities are "cell 0"
CELL_STRIDE = 16
MAX_CELL = 255


class DataType(enum.IntEnum):
    """The Sparkplug B data types used here (the DataType enum of sparkplug_b.proto)."""

    INT32 = 3
    INT64 = 4
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


@dataclass(frozen=True, slots=True)
class Quantity:
    """One reported quantity. ``key`` is the JSON name (the REST API's, so the
    two agree); ``metric`` the Sparkplug metric name; ``deadband`` the key of
    ``[plugins.mqtt.deadband]`` that applies (None: any change is reported)."""

    key: str
    metric: str
    unit: str
    datatype: DataType
    deadband: str | None


@dataclass(frozen=True, slots=True)
class Placement:
    """What is fixed on the MQTT wire for one plant quantity (core's table): its
    Sparkplug metric name and data type, the deadband key that applies, and the
    JSON key when it is not the table's."""

    metric: str
    datatype: DataType
    deadband: str | None = None
    key: str = ""


S, C = api.Level.STRING, api.Level.CELL
F, TEXT = DataType.FLOAT, DataType.STRING

# fmt: off
#: a string's quantities in slot order (rows are only ever appended: slots are stable)
STRING_PLACEMENTS: tuple[tuple[str, Placement], ...] = (
    ("quality", Placement("Quality", TEXT)),
    ("status", Placement("Status", TEXT)),
    ("voltage", Placement("Voltage", F, "voltage_v")),
    ("current", Placement("Current", F, "current_a")),
    ("soc", Placement("SOC", F, "soc_pct")),
    ("soh", Placement("SOH", F, "soh_pct")),
    ("balance", Placement("Balance", F, "balance_pct")),
    ("state", Placement("State", TEXT)),
    ("alarm_word", Placement("Alarm Word", DataType.UINT16, key="alarm_word")),
    ("cell_count", Placement("Cell Count", DataType.UINT16)),
    ("ambient_temperature", Placement("Ambient Temperature", F, "ambient_temperature_c")),
    ("ambient_humidity", Placement("Ambient Humidity", F, "ambient_humidity_pct")),
    ("relay_closed", Placement("Relay Closed", DataType.BOOLEAN)),
    ("aux_input_on", Placement("Aux Input", DataType.BOOLEAN)),
)
#: a cell's quantities in slot order
CELL_PLACEMENTS: tuple[tuple[str, Placement], ...] = (
    ("voltage", Placement("Voltage", F, "cell_voltage_v")),
    ("resistance", Placement("Resistance", F, "cell_resistance_mohm")),
    ("temperature", Placement("Temperature", F, "cell_temperature_c")),
    ("soc", Placement("SOC", F, "cell_soc_pct")),
    ("soh", Placement("SOH", F, "cell_soh_pct")),
    ("flags", Placement("Status", DataType.UINT16)),
)
# fmt: on


def _rows(level: api.Level, placements: tuple[tuple[str, Placement], ...]) -> tuple[Quantity, ...]:
    """The reported quantities of ``level``: key (the REST API's JSON key) and unit
    from core's quantity table, metric, data type and deadband from the placement."""
    out = []
    for key, place in placements:
        q = api.quantity(level, key)
        out.append(Quantity(place.key or q.json_key, place.metric, q.unit, place.datatype,
                            place.deadband))  # fmt: skip
    return tuple(out)


STRING = _rows(S, STRING_PLACEMENTS)
CELL = _rows(C, CELL_PLACEMENTS)

assert len(STRING) <= CELL_STRIDE and len(CELL) <= CELL_STRIDE
assert {q.key for q in CELL} <= set(CellReading.__dataclass_fields__)

#: the deadband keys the settings accept, with the quantity they apply to
DEADBAND_KEYS = tuple(q.deadband for q in (*STRING, *CELL) if q.deadband is not None)


def slot(cell: int, q: int) -> int:
    return cell * CELL_STRIDE + q


def unslot(s: int) -> tuple[int, Quantity]:
    cell, q = divmod(s, CELL_STRIDE)
    return cell, (CELL[q] if cell else STRING[q])


def metric_name(s: int) -> str:
    """The Sparkplug metric name of a slot: ``Voltage``, ``Cells/017/Voltage``."""
    cell, quantity = unslot(s)
    return f"Cells/{cell:03d}/{quantity.metric}" if cell else quantity.metric


def _reported(q: api.Quantity) -> Any:
    """A string quantity's value as reported: an enumeration by its member's name."""
    read = q.read
    assert read is not None
    if q.kind != "enum":
        return read
    names = q.values
    return lambda s: None if (v := read(s)) is None else names[int(v)]


#: each STRING quantity's value of a string snapshot, in slot order
_STRING_READS = tuple(_reported(api.quantity(S, key)) for key, _ in STRING_PLACEMENTS)
_SOH = next(n for n, (key, _) in enumerate(STRING_PLACEMENTS) if key == "soh")


def string_values(string: StringSnapshot, soh_pct: float | None) -> tuple[Any, ...]:
    """The string-level values in ``STRING`` order (reading fields None if never
    read). ``soh_pct`` is the reading's ``soh_pct``, which the model derives
    from every cell: the exception filter passes the one it kept when no cell's
    SOH changed."""
    values = [read(string) for read in _STRING_READS]
    if string.reading is not None:
        values[_SOH] = soh_pct
    return tuple(values)


#: a cell's number, and each ``CELL`` quantity of a cell (one C call per cell)
cell_index = attrgetter("index")
cell_quantities = tuple(attrgetter(q.key) for q in CELL)
