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


STRING: tuple[Quantity, ...] = (
    Quantity("quality", "Quality", "", DataType.STRING, None),
    Quantity("status", "Status", "", DataType.STRING, None),
    Quantity("voltage_v", "Voltage", "V", DataType.FLOAT, "voltage_v"),
    Quantity("current_a", "Current", "A", DataType.FLOAT, "current_a"),
    Quantity("soc_pct", "SOC", "%", DataType.FLOAT, "soc_pct"),
    Quantity("soh_pct", "SOH", "%", DataType.FLOAT, "soh_pct"),
    Quantity("balance_pct", "Balance", "%", DataType.FLOAT, "balance_pct"),
    Quantity("state", "State", "", DataType.STRING, None),
    Quantity("alarm_word", "Alarm Word", "", DataType.UINT16, None),
    Quantity("cell_count", "Cell Count", "", DataType.UINT16, None),
    Quantity(
        "ambient_temperature_c", "Ambient Temperature", "C", DataType.FLOAT, "ambient_temperature_c"
    ),
    Quantity(
        "ambient_humidity_pct", "Ambient Humidity", "%RH", DataType.FLOAT, "ambient_humidity_pct"
    ),
    Quantity("relay_closed", "Relay Closed", "", DataType.BOOLEAN, None),
    Quantity("aux_input_on", "Aux Input", "", DataType.BOOLEAN, None),
)

CELL: tuple[Quantity, ...] = (
    Quantity("voltage_v", "Voltage", "V", DataType.FLOAT, "cell_voltage_v"),
    Quantity("resistance_mohm", "Resistance", "mOhm", DataType.FLOAT, "cell_resistance_mohm"),
    Quantity("temperature_c", "Temperature", "C", DataType.FLOAT, "cell_temperature_c"),
    Quantity("soc_pct", "SOC", "%", DataType.FLOAT, "cell_soc_pct"),
    Quantity("soh_pct", "SOH", "%", DataType.FLOAT, "cell_soh_pct"),
    Quantity("status", "Status", "", DataType.UINT16, None),
)

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


def string_values(string: StringSnapshot, soh_pct: float | None) -> tuple[Any, ...]:
    """The string-level values in ``STRING`` order (reading fields None if never
    read). ``soh_pct`` is the reading's ``soh_pct``, which the model derives
    from every cell: the exception filter passes the one it kept when no cell's
    SOH changed."""
    r = string.reading
    head = (string.quality.name.lower(), string.device_status.name.lower())
    if r is None:
        return (*head, *([None] * (len(STRING) - 2)))
    return (
        *head,
        r.voltage_v,
        r.current_a,
        r.soc_pct,
        soh_pct,
        r.balance_pct,
        r.state.name.lower(),
        int(r.alarms),
        r.cell_count,
        r.ambient_temperature_c,
        r.ambient_humidity_pct,
        r.relay_closed,
        r.aux_input_on,
    )


#: a cell's number, and each ``CELL`` quantity of a cell (one C call per cell)
cell_index = attrgetter("index")
cell_quantities = tuple(attrgetter(q.key) for q in CELL)
