"""The quantities history records, each once: its code on disk, and the plant
quantity (core/quantities.py) it records, from which its API name, its unit
and the integer scale it is stored at follow.

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

from .. import quantities as plant
from ..quantities import Level

Kind = Literal["measure", "bits", "enum"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded quantity. ``code`` is its number on disk: never reuse one."""

    code: int
    quantity: plant.Quantity

    @property
    def level(self) -> Level:
        return self.quantity.level

    @property
    def attr(self) -> str:
        """The attribute of StringReading / CellReading it is read from."""
        return self.quantity.json_key

    @property
    def key(self) -> str:
        """Its API name: the reading's JSON key, ``cell_`` + the cell's for cells."""
        q = self.quantity
        return f"cell_{q.json_key}" if q.level is Level.CELL else q.json_key

    @property
    def scale(self) -> int:
        """Stored integer = round(value * scale)."""
        return self.quantity.scale

    @property
    def unit(self) -> str:
        return self.quantity.unit

    @property
    def kind(self) -> Kind:
        k = self.quantity.kind
        if k == "bits" or k == "enum":
            return k
        return "measure"

    @property
    def description(self) -> str:
        return self.quantity.description

    @property
    def digits(self) -> int:
        """Decimal places of the stored resolution (3 for mV in volts)."""
        return len(str(self.scale)) - 1


def _r(code: int, level: Level, key: str) -> Recorded:
    return Recorded(code, plant.quantity(level, key))


S, C = Level.STRING, Level.CELL
#: codes are the file format: a new quantity gets a new code, never a reused one
QUANTITIES: tuple[Recorded, ...] = (
    _r(1, S, "voltage"),
    _r(2, S, "current"),
    _r(3, S, "soc"),
    _r(4, S, "balance"),
    _r(5, S, "state"),
    _r(6, S, "ambient_temperature"),
    _r(7, S, "ambient_humidity"),
    _r(8, S, "alarm_word"),
    _r(21, C, "voltage"),
    _r(22, C, "resistance"),
    _r(23, C, "temperature"),
    _r(24, C, "soc"),
    _r(25, C, "soh"),
    _r(26, C, "flags"),
)

#: the recorded quantities by API name (what ``series`` and the REST API take)
RECORDED: dict[str, Recorded] = {q.key: q for q in QUANTITIES}
BY_CODE: dict[int, Recorded] = {q.code: q for q in QUANTITIES}
STRING_QUANTITIES: tuple[Recorded, ...] = tuple(q for q in QUANTITIES if q.level is S)
CELL_QUANTITIES: tuple[Recorded, ...] = tuple(q for q in QUANTITIES if q.level is C)
RESISTANCE = RECORDED["cell_resistance_mohm"]
CURRENT = RECORDED["current_a"]


def column_count(cells: int) -> int:
    """Values in one row of a string: its own quantities, then each cell
    quantity for every cell (quantity-major)."""
    return len(STRING_QUANTITIES) + len(CELL_QUANTITIES) * cells


@cache
def columns_of(q: Recorded, cells: int) -> slice:
    """Where quantity ``q`` sits in a row of a ``cells``-cell string."""
    if q.level is S:
        i = STRING_QUANTITIES.index(q)
        return slice(i, i + 1)
    start = len(STRING_QUANTITIES) + CELL_QUANTITIES.index(q) * cells
    return slice(start, start + cells)
