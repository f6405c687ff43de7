"""Report by exception: what changed in a string since it was last reported.

A value is reported when it moved by more than its quantity's deadband from
the value last *reported* (not last read), so a slow drift is reported once
it adds up instead of never. Non-numeric values and a value appearing or
disappearing (None) are reported on any change. A change of quality reports
every value again (a host re-marks each metric), and so does the first
reading of a string or a change of its cell count (the metric set changed:
Sparkplug needs a new DBIRTH).

At full scale this runs 32 times a second over 120 cells, so a cell that
reads exactly as it did in the string's previous reading is skipped with one
tuple comparison (see ``_Reported``), and so are the string's own values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import ne
from typing import Any

from btms_gateway.core.model import Quality, StringSnapshot

from .quantities import CELL, CELL_STRIDE, STRING, cell_row, cell_values, string_values

QUALITY_SLOT = 0
CELL_COUNT_SLOT = next(i for i, q in enumerate(STRING) if q.key == "cell_count")
SOH_SLOT = next(i for i, q in enumerate(STRING) if q.key == "soh_pct")
CELL_SOH = next(i for i, q in enumerate(CELL) if q.key == "soh_pct")
CELL_STATUS = next(i for i, q in enumerate(CELL) if q.key == "status")


@dataclass(slots=True)
class Delta:
    """One string's report: the changed slots with their new values.

    ``at_ms`` is when the values were read (the reading's ``read_at``);
    ``changed_ms`` when the quality last changed, the time of the Quality
    value. ``full`` means every slot is in ``values`` (first report, quality
    change, or reports by exception turned off); ``rebirth`` that the metric
    set changed. ``rid`` orders records across strings, events and restarts.
    """

    string: str
    index: int
    quality: Quality
    at_ms: int
    changed_ms: int
    values: list[tuple[int, Any]]
    full: bool = False
    rebirth: bool = False
    quality_changed: bool = False
    rid: int = 0

    def to_json(self) -> list[Any]:
        return [
            self.string,
            self.index,
            int(self.quality),
            self.at_ms,
            self.changed_ms,
            self.values,
            int(self.full) | int(self.rebirth) << 1 | int(self.quality_changed) << 2,
        ]

    @classmethod
    def from_json(cls, data: list[Any], rid: int) -> Delta:
        name, index, quality, at_ms, changed_ms, values, flags = data
        return cls(
            name,
            index,
            Quality(quality),
            at_ms,
            changed_ms,
            [(s, v) for s, v in values],
            bool(flags & 1),
            bool(flags & 2),
            bool(flags & 4),
            rid,
        )

    def cells(self) -> Iterator[tuple[int, int, Any]]:
        """(cell, quantity row, value) of the changed cell slots."""
        for s, v in self.values:
            if s >= CELL_STRIDE:
                cell, q = divmod(s, CELL_STRIDE)
                yield cell, q, v


@dataclass(slots=True)
class _Reported:
    """What was last reported of one string, and what was last read of it.

    ``rows`` (each cell's ``cell_row`` of the last reading) lets the next
    reading skip every cell that did not change at all since: such a cell was
    already held against its deadbands then. On a real plant most cells read
    the same from one poll to the next, so a reading costs one C-level pass
    over its cells plus the few that moved.
    """

    top: list[Any]
    cells: dict[int, list[Any]] = field(default_factory=dict)
    read_top: tuple[Any, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)


#: the columns of a ``cell_row``: the index, then the values
_COLUMNS = range(1 + len(CELL))
#: the values of a cell not read in the last reading: unequal to any value
_UNREAD = (object(),) * len(CELL)


def _moved(new: Any, old: Any, band: float | None) -> bool:
    if new == old:
        return False
    if band is None or new is None or old is None or isinstance(new, (bool, str)):
        return True
    return bool(abs(new - old) > band)


class ExceptionFilter:
    """Keeps, per string, the values last reported and makes each reading a Delta."""

    def __init__(self, deadbands: Mapping[str, float], by_exception: bool = True) -> None:
        self.by_exception = by_exception
        self._top_bands = [deadbands.get(q.deadband) if q.deadband else None for q in STRING]
        self._cell_bands = [deadbands.get(q.deadband) if q.deadband else None for q in CELL]
        self._reported: dict[str, _Reported] = {}

    def update(self, string: StringSnapshot) -> Delta | None:
        """The report for a new snapshot; None when nothing is worth reporting
        (nothing moved past its deadband, or the string was never read)."""
        r = string.reading
        if r is None:
            return None
        rows = list(map(cell_row, r.cells))
        seen = self._reported.get(string.name)
        quality = string.quality.name.lower()
        full = seen is None or seen.top[QUALITY_SLOT] != quality or not self.by_exception
        if full:
            values = string_values(string, r.soh_pct)
            rebirth = seen is None or seen.top[CELL_COUNT_SLOT] != values[CELL_COUNT_SLOT]
            quality_changed = seen is not None and seen.top[QUALITY_SLOT] != quality
            self._remember(string.name, values, rows)
            changes = list(self.current(string.name))
        else:
            assert seen is not None
            quality_changed = False
            changes, rebirth = self._changes(seen, string, rows)
            if not changes:
                return None
        return Delta(
            string.name,
            string.index,
            string.quality,
            int(r.read_at * 1000),
            int(string.changed_at * 1000),
            changes,
            full=full,
            rebirth=rebirth,
            quality_changed=quality_changed,
        )

    def _changes(
        self, seen: _Reported, string: StringSnapshot, rows: list[tuple[Any, ...]]
    ) -> tuple[list[tuple[int, Any]], bool]:
        """The slots that moved past their deadband since last reported (which
        are then remembered as reported), and whether the metric set changed."""
        assert string.reading is not None
        cells, rebirth, soh_moved = self._cell_changes(seen, rows)
        # the string's SOH is the lowest cell SOH: derived again only when one moved
        soh = string.reading.soh_pct if soh_moved else seen.read_top[SOH_SLOT]
        values = string_values(string, soh)
        changes: list[tuple[int, Any]] = []
        if values != seen.read_top:
            top, bands = seen.top, self._top_bands
            for q, new in enumerate(values):
                if _moved(new, top[q], bands[q]):
                    top[q] = new
                    changes.append((q, new))
            seen.read_top = values
            rebirth |= any(q == CELL_COUNT_SLOT for q, _ in changes)  # the metric set changed
        if rebirth and len(seen.cells) > len(rows):  # sensors removed: forget their cells
            present = {row[0] for row in rows}
            for index in [i for i in seen.cells if i not in present]:
                del seen.cells[index]
        changes += cells
        return changes, rebirth

    def _cell_changes(
        self, seen: _Reported, rows: list[tuple[Any, ...]]
    ) -> tuple[list[tuple[int, Any]], bool, bool]:
        """The cells' part of ``_changes``, and whether any cell's SOH changed."""
        old_rows, seen.rows = seen.rows, rows
        if rows == old_rows:
            return [], False, False
        # positions whose row differs from the last reading's (C loops), and new ones
        moved = list(compress(range(len(rows)), map(ne, rows, old_rows)))
        moved.extend(range(len(old_rows), len(rows)))
        changes: list[tuple[int, Any]] = []
        rebirth, soh_moved = False, len(rows) != len(old_rows)
        cell_bands, reported = self._cell_bands, seen.cells
        for i in moved:
            row = rows[i]
            index = row[0]
            base = index * CELL_STRIDE
            last = reported.get(index)
            if last is None:
                reported[index] = now = cell_values(row)
                changes.extend((base + q, v) for q, v in enumerate(now))
                rebirth = True
                continue
            old = old_rows[i] if i < len(old_rows) else None
            if old is None or old[0] != index:  # another cell was here: check every value
                old = (index, *_UNREAD)
            # only a value that changed since the last reading can have moved
            for column in compress(_COLUMNS, map(ne, row, old)):
                q, new = column - 1, row[column]
                soh_moved = soh_moved or q == CELL_SOH
                if _moved(new, last[q], cell_bands[q]):
                    last[q] = value = int(new) if q == CELL_STATUS else new
                    changes.append((base + q, value))
        return changes, rebirth, soh_moved

    def _remember(self, name: str, values: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> None:
        cells = {row[0]: cell_values(row) for row in rows}
        self._reported[name] = _Reported(list(values), cells, values, rows)

    def current(self, name: str) -> Iterator[tuple[int, Any]]:
        """Every slot of a string as last reported, in slot order (for a birth)."""
        seen = self._reported[name]
        yield from enumerate(seen.top)
        for index in sorted(seen.cells):
            base = index * CELL_STRIDE
            yield from ((base + q, v) for q, v in enumerate(seen.cells[index]))

    def known(self, name: str) -> bool:
        return name in self._reported

    def names(self) -> list[str]:
        return list(self._reported)
