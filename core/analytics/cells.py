"""What a string's cells say together, measured in one poll: the median of a
cell value, against which resistance and temperature judge each cell."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..model import SENSOR_LOST_BIT, CellReading


def cell_median(cells: Sequence[CellReading], field: str) -> float | None:
    """The median of ``field`` over the cells that measure it (a lost sensor's
    last value is left out); None when no cell does."""
    values = [
        v
        for c in cells
        if (v := getattr(c, field)) is not None and not int(c.status) & SENSOR_LOST_BIT
    ]
    return statistics.median(values) if values else None
