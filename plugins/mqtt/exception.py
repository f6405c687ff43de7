"""Report by exception: what changed in a string since it was last reported.

A value is reported when it moved by more than its quantity's deadband from
the value last *reported* (not last read), so a slow drift is reported once
it adds up instead of never. Non-numeric values and a value appearing or
disappearing (None) are reported on any change. A change of quality reports
every value again (a host re-marks each metric), and so does the first
reading of a string or a change of its cell count (the metric set changed:
Sparkplug needs a new DBIRTH).

At full scale this runs 32 times a second over 120 cells, so it compares a
reading with the string's previous one a quantity at a time, in C, and holds
against the deadbands only the few values that changed since (see
``_Reported``); the string's own values likewise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import ne
from typing import Any

from btms_gateway.core.api import Quality, StringSnapshot

from .quantities import CELL, CELL_STRIDE, STRING, cell_index, cell_quantities, string_values

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

    ``columns`` (per ``CELL`` quantity, the last reading's values in cell
    order) and ``indices`` (its cells' numbers) let the next reading skip
    every value that did not change at all since: it was already held
    against its deadband then. A column is a list of the reading's own
    value objects: a reading allocates a handful of lists, not an object
    per cell (fewer objects for the garbage collector to count and walk).
    """

    top: list[Any]
    cells: dict[int, list[Any]] = field(default_factory=dict)
    read_top: tuple[Any, ...] = ()
    indices: list[int] = field(default_factory=list)
    columns: list[list[Any]] = field(default_factory=list)


def _slot(change: tuple[int, Any]) -> int:
    return change[0]


def _cell_values(columns: list[list[Any]], i: int) -> list[Any]:
    """The values of the ``i``-th cell of a reading's columns, as reported."""
    values = [column[i] for column in columns]
    values[CELL_STATUS] = int(values[CELL_STATUS])
    return values


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
        indices = list(map(cell_index, r.cells))
        columns = [list(map(get, r.cells)) for get in cell_quantities]
        seen = self._reported.get(string.name)
        quality = string.quality.name.lower()
        full = seen is None or seen.top[QUALITY_SLOT] != quality or not self.by_exception
        if full:
            values = string_values(string, r.soh_pct)
            rebirth = seen is None or seen.top[CELL_COUNT_SLOT] != values[CELL_COUNT_SLOT]
            quality_changed = seen is not None and seen.top[QUALITY_SLOT] != quality
            self._remember(string.name, values, indices, columns)
            changes = list(self.current(string.name))
        else:
            assert seen is not None
            quality_changed = False
            changes, rebirth = self._changes(seen, string, indices, columns)
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
        self,
        seen: _Reported,
        string: StringSnapshot,
        indices: list[int],
        columns: list[list[Any]],
    ) -> tuple[list[tuple[int, Any]], bool]:
        """The slots that moved past their deadband since last reported (which
        are then remembered as reported), and whether the metric set changed."""
        assert string.reading is not None
        cells, rebirth, soh_moved = self._cell_changes(seen, indices, columns)
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
        if rebirth and len(seen.cells) > len(indices):  # sensors removed: forget their cells
            present = set(indices)
            for index in [i for i in seen.cells if i not in present]:
                del seen.cells[index]
        changes += cells
        return changes, rebirth

    def _cell_changes(
        self, seen: _Reported, indices: list[int], columns: list[list[Any]]
    ) -> tuple[list[tuple[int, Any]], bool, bool]:
        """The cells' part of ``_changes`` (in slot order), and whether any
        cell's SOH changed."""
        old_indices, old_columns = seen.indices, seen.columns
        seen.indices, seen.columns = indices, columns
        if indices != old_indices:  # cells came, went or moved: hold every value
            return self._all_cell_changes(seen, indices, columns)
        changes: list[tuple[int, Any]] = []
        soh_moved = False
        bands, reported = self._cell_bands, seen.cells
        for q, (column, old) in enumerate(zip(columns, old_columns, strict=True)):
            if column == old:
                continue
            band = bands[q]
            # only a value that changed since the last reading can have moved
            for i in compress(range(len(column)), map(ne, column, old)):
                soh_moved = soh_moved or q == CELL_SOH
                index, new = indices[i], column[i]
                last = reported[index]
                if _moved(new, last[q], band):
                    last[q] = value = int(new) if q == CELL_STATUS else new
                    changes.append((index * CELL_STRIDE + q, value))
        changes.sort(key=_slot)
        return changes, False, soh_moved

    def _all_cell_changes(
        self, seen: _Reported, indices: list[int], columns: list[list[Any]]
    ) -> tuple[list[tuple[int, Any]], bool, bool]:
        """``_cell_changes`` for a reading whose cells are not the last one's:
        every value against the one last reported; a new cell is all reported
        and asks for a birth."""
        changes: list[tuple[int, Any]] = []
        rebirth = False
        bands, reported = self._cell_bands, seen.cells
        for i, index in enumerate(indices):
            base = index * CELL_STRIDE
            now = _cell_values(columns, i)
            last = reported.get(index)
            if last is None:
                reported[index] = now
                changes.extend((base + q, v) for q, v in enumerate(now))
                rebirth = True
                continue
            for q, new in enumerate(now):
                if _moved(new, last[q], bands[q]):
                    last[q] = new
                    changes.append((base + q, new))
        return changes, rebirth, True

    def _remember(
        self, name: str, values: tuple[Any, ...], indices: list[int], columns: list[list[Any]]
    ) -> None:
        cells = {index: _cell_values(columns, i) for i, index in enumerate(indices)}
        self._reported[name] = _Reported(list(values), cells, values, indices, columns)

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
