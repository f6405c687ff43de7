"""The register map one BM-SM string is read with: the rows of the register
table (registers.py), or of a copy an override file changed (overrides.py),
and everything the decoder, the read planner, the poller, the probe and the
simulator derive from them, worked out once per map rather than per poll.

``DEFAULT_MAP`` is built from the module table; every consumer takes a map
and defaults to it, so a string with no override is read exactly as before.

The string block is read in one transaction, from its lowest to its highest
register (HR 0..15 in the table, reserved registers included, as the device
serves them); an override that moves a value out of it widens that read
(overrides.py keeps it within 125 registers). The cell arrays are planned as
the planner says: merged when contiguous, holes never bridged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from btms_gateway.core.api import CellReading

from .planner import ReadRange, merge
from .registers import (
    CELL_ARRAYS,
    MAX_CELLS,
    SIGNED_TYPES,
    STRING_BLOCK,
    CellArray,
    Register,
    render_markdown,
)

#: CellReading's value fields, in its order: the cell arrays are listed so
_CELL_VALUES = [
    f.name for f in dataclasses.fields(CellReading) if f.name not in ("index", "status")
]


def whole_divisor(scale: float) -> int | None:
    """N when ``scale`` is 1/N for a whole N (0.001 -> 1000): a column is then
    decoded by one division per word, which gives the correctly rounded
    decimal; None for any other scale (decoded by a rounded product)."""
    n = round(1 / scale)
    return n if n >= 1 and abs(n * scale - 1) < 1e-9 else None


class RegisterMap:
    """One effective register table, immutable once built.

    ``source`` says where it came from ("default", or the override file);
    ``changes`` names the rows an override changed (``"string.FIELD"`` /
    ``"cell.FIELD"`` -> what changed), for the export and the probe."""

    __slots__ = (
        "_plans",
        "block",
        "block_checks",
        "block_fields",
        "block_read",
        "cell_area",
        "cell_count",
        "cell_status",
        "cells",
        "changes",
        "column_checks",
        "columns",
        "source",
        "status_max",
        "value_arrays",
    )  # fmt: skip

    def __init__(
        self,
        block: Sequence[Register] = STRING_BLOCK,
        cells: Sequence[CellArray] = CELL_ARRAYS,
        *,
        source: str = "default",
        changes: Mapping[str, str] | None = None,
    ) -> None:
        self.block = tuple(block)
        self.cells = tuple(cells)
        self.source = source
        self.changes = dict(changes or {})
        start = min(r.address for r in self.block)
        end = max(r.address + r.words for r in self.block)
        #: the string block is read in one transaction, its lowest to its highest register
        self.block_read = ReadRange(start, end - start)
        self.cell_count = next(r for r in self.block if r.field == "cell_count")
        self.cell_status = next(a for a in self.cells if a.field == "status")
        self.value_arrays = tuple(a for a in self.cells if a is not self.cell_status)
        assert [a.field for a in self.value_arrays] == _CELL_VALUES, (
            "the cell arrays must list the value fields in CellReading's order"
        )
        #: (row, offset in the block read) of each row that feeds a field
        self.block_fields = tuple((r, r.address - start) for r in self.block if r.field)
        #: the checked rows: (field, lowest, highest, row); a value between the
        #: lowest and the highest is checked span by span only when the row has several
        self.block_checks = tuple(
            (r.field, r.valid[0][0], r.valid[-1][1], r) for r in self.block if r.field and r.valid
        )
        #: (base, divisor or None, scale, signed, no-sensor marker) of each value array
        self.columns = tuple(
            (a.base, whole_divisor(a.scale), a.scale, a.type in SIGNED_TYPES, a.no_sensor)
            for a in self.value_arrays
        )
        #: the checked value arrays, by position in ``columns``
        self.column_checks = tuple((k, a) for k, a in enumerate(self.value_arrays) if a.valid)
        #: the highest cell status word the device sends (its bits: sensor lost, balancing)
        status = self.cell_status
        self.status_max = int(status.valid[-1][1]) if status.valid else 0xFFFF
        #: the device's cell register area: the first array's base to the last one's end
        self.cell_area = (
            min(a.base for a in self.cells),
            max(a.base for a in self.cells) + MAX_CELLS,
        )
        self._plans: dict[int, tuple[ReadRange, ...]] = {}

    @property
    def is_default(self) -> bool:
        return not self.changes

    def same_rows(self, other: RegisterMap) -> bool:
        return self.block == other.block and self.cells == other.cells

    def row(self, key: str) -> Register | CellArray:
        """The row of ``"string.FIELD"`` or ``"cell.FIELD"``."""
        area, _, field = key.partition(".")
        rows: Sequence[Register | CellArray] = self.block if area == "string" else self.cells
        return next(r for r in rows if r.field == field)

    # -- the read plan (planner.py) -------------------------------------------------
    def cell_plan(self, cell_count: int) -> tuple[ReadRange, ...]:
        """The transactions for the cell arrays of ``cell_count`` cells: contiguous
        arrays merged, split at 125 registers, holes never bridged; cached."""
        plan = self._plans.get(cell_count)
        if plan is None:
            if not 0 <= cell_count <= MAX_CELLS:
                raise ValueError(f"cell count must be 0..{MAX_CELLS}, got {cell_count}")
            plan = merge([ReadRange(a.base, cell_count) for a in self.cells])
            self._plans[cell_count] = plan
        return plan

    def full_plan(self, cell_count: int) -> tuple[ReadRange, ...]:
        """Everything one poll reads: the string block, then the cell arrays."""
        return (self.block_read, *self.cell_plan(cell_count))

    def in_cell_area(self, address: int) -> bool:
        """Whether ``address`` lies between the first and the last cell array's
        registers (a device's cell register area, holes included)."""
        return self.cell_area[0] <= address < self.cell_area[1]

    # -- documentation ----------------------------------------------------------------
    def render_markdown(self, used_by: Sequence[str] = ()) -> str:
        """The map as docs/bmsm-registers.md renders the default table; an
        overridden map says where from and marks its changed rows."""
        if self.is_default:
            return render_markdown(self.block, self.cells)
        who = f" of string(s) {', '.join(used_by)}" if used_by else ""
        intro = (
            f"The effective register map{who}: the default table "
            "(docs/bmsm-registers.md) with the overrides",
            f"in `{self.source}`; the rows they change are marked **overridden**.",
            "Holding registers, function 03, 0-based addresses.",
        )
        return render_markdown(self.block, self.cells, intro=intro, changes=self.changes)


DEFAULT_MAP = RegisterMap()
