"""The quantities history records, each once: its API name, where it is read
from, and the integer scale it is stored at.

Values are stored as integers at the BM-SM's own resolution (1 mV, 1 uOhm,
0.1 C, 1 %, ...): a reading decoded from registers is an exact multiple of it,
so the integer round-trips exactly and compresses far better than a float.
The names match the JSON the REST API serves for a reading (``voltage_v``)
and, for cells, carry a ``cell_`` prefix (``cell_voltage_v``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

Level = Literal["string", "cell"]
Kind = Literal["measure", "bits", "enum"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One recorded quantity. ``code`` is its number on disk: never reuse one."""

    code: int
    key: str
    level: Level
    attr: str  #: the attribute of StringReading / CellReading
    scale: int  #: stored integer = round(value * scale)
    unit: str
    kind: Kind
    description: str

    @property
    def digits(self) -> int:
        """Decimal places of the stored resolution (3 for mV in volts)."""
        return len(str(self.scale)) - 1


QUANTITIES: tuple[Quantity, ...] = (
    Quantity(1, "voltage_v", "string", "voltage_v", 100, "V", "measure", "string voltage"),
    Quantity(2, "current_a", "string", "current_a", 100, "A", "measure", "+ charge, - discharge"),
    Quantity(3, "soc_pct", "string", "soc_pct", 1, "%", "measure", "string state of charge"),
    Quantity(4, "balance_pct", "string", "balance_pct", 100, "%", "measure", "string balance"),
    Quantity(5, "state", "string", "state", 1, "", "enum", "BM-SM string state (HR 7)"),
    Quantity(
        6,
        "ambient_temperature_c",
        "string",
        "ambient_temperature_c",
        10,
        "C",
        "measure",
        "ambient temperature",
    ),
    Quantity(
        7,
        "ambient_humidity_pct",
        "string",
        "ambient_humidity_pct",
        10,
        "%RH",
        "measure",
        "ambient humidity",
    ),
    Quantity(8, "alarms", "string", "alarms", 1, "", "bits", "BM-SM alarm word (HR 13)"),
    Quantity(21, "cell_voltage_v", "cell", "voltage_v", 1000, "V", "measure", "cell voltage"),
    Quantity(
        22,
        "cell_resistance_mohm",
        "cell",
        "resistance_mohm",
        1000,
        "mOhm",
        "measure",
        "cell internal resistance",
    ),
    Quantity(
        23, "cell_temperature_c", "cell", "temperature_c", 10, "C", "measure", "cell temperature"
    ),
    Quantity(24, "cell_soc_pct", "cell", "soc_pct", 1, "%", "measure", "cell state of charge"),
    Quantity(25, "cell_soh_pct", "cell", "soh_pct", 1, "%", "measure", "cell state of health"),
    Quantity(26, "cell_status", "cell", "status", 1, "", "bits", "1 sensor lost, 2 balancing"),
)

BY_KEY: dict[str, Quantity] = {q.key: q for q in QUANTITIES}
BY_CODE: dict[int, Quantity] = {q.code: q for q in QUANTITIES}
STRING_QUANTITIES: tuple[Quantity, ...] = tuple(q for q in QUANTITIES if q.level == "string")
CELL_QUANTITIES: tuple[Quantity, ...] = tuple(q for q in QUANTITIES if q.level == "cell")
RESISTANCE = BY_KEY["cell_resistance_mohm"]
CURRENT = BY_KEY["current_a"]


def column_count(cells: int) -> int:
    """Values in one row of a string: its own quantities, then each cell
    quantity for every cell (quantity-major)."""
    return len(STRING_QUANTITIES) + len(CELL_QUANTITIES) * cells


@cache
def columns_of(q: Quantity, cells: int) -> slice:
    """Where quantity ``q`` sits in a row of a ``cells``-cell string."""
    if q.level == "string":
        i = STRING_QUANTITIES.index(q)
        return slice(i, i + 1)
    start = len(STRING_QUANTITIES) + CELL_QUANTITIES.index(q) * cells
    return slice(start, start + cells)
