"""Report by exception: what changed in a string since it was last reported.

A value is reported when it moved by more than its quantity's deadband from
the value last *reported* (not last read), so a slow drift is reported once
it adds up instead of never. Non-numeric values and a value appearing or
disappearing (None) are reported on any change. A change of quality reports
every value again (a host re-marks each metric), and so does the first
reading of a string or a change of its cell count (the metric set changed:
Sparkplug needs a new DBIRTH).

At full scale this runs 32 times a second over 120 cells, so a cell whose
values equal the ones last reported is skipped with one tuple comparison.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from btms_gateway.core.model import Quality, StringSnapshot

from .quantities import CELL, CELL_STRIDE, STRING, cell_values, string_values

QUALITY_SLOT = 0
CELL_COUNT_SLOT = next(i for i, q in enumerate(STRING) if q.key == "cell_count")


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
    """What was last reported of one string."""

    top: list[Any]
    cells: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    max_cell: int = 0


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
        values = string_values(string)
        at_ms = int(r.read_at * 1000)
        changed_ms = int(string.changed_at * 1000)
        seen = self._reported.get(string.name)
        if seen is None or seen.top[QUALITY_SLOT] != values[QUALITY_SLOT] or not self.by_exception:
            rebirth = seen is None or seen.top[CELL_COUNT_SLOT] != values[CELL_COUNT_SLOT]
            quality_changed = seen is not None and seen.top[QUALITY_SLOT] != values[QUALITY_SLOT]
            seen = self._remember(string, values)
            return Delta(
                string.name,
                string.index,
                string.quality,
                at_ms,
                changed_ms,
                list(self.current(string.name)),
                full=True,
                rebirth=rebirth,
                quality_changed=quality_changed,
            )
        changes: list[tuple[int, Any]] = []
        top, bands = seen.top, self._top_bands
        for q, new in enumerate(values):
            if _moved(new, top[q], bands[q]):
                top[q] = new
                changes.append((q, new))
        rebirth = any(q == CELL_COUNT_SLOT for q, _ in changes)  # the metric set changed
        cell_bands, reported = self._cell_bands, seen.cells
        for c in r.cells:
            now = cell_values(c)
            old = reported.get(c.index)
            if old == now:
                continue
            base = c.index * CELL_STRIDE
            if old is None:
                reported[c.index] = now
                changes.extend((base + q, v) for q, v in enumerate(now))
                seen.max_cell = max(seen.max_cell, c.index)
                rebirth = True
                continue
            kept = list(old)
            for q, new in enumerate(now):
                if _moved(new, old[q], cell_bands[q]):
                    kept[q] = new
                    changes.append((base + q, new))
            reported[c.index] = tuple(kept)
        if rebirth and len(reported) > len(r.cells):  # sensors removed: forget their cells
            present = {c.index for c in r.cells}
            for index in [i for i in reported if i not in present]:
                del reported[index]
        if not changes:
            return None
        return Delta(
            string.name,
            string.index,
            string.quality,
            at_ms,
            changed_ms,
            changes,
            rebirth=rebirth,
        )

    def _remember(self, string: StringSnapshot, values: tuple[Any, ...]) -> _Reported:
        assert string.reading is not None
        cells = {c.index: cell_values(c) for c in string.reading.cells}
        old = self._reported.get(string.name)
        top = max(cells, default=0)
        seen = _Reported(list(values), cells, max(top, old.max_cell if old else 0))
        self._reported[string.name] = seen
        return seen

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

    def max_cell(self, name: str) -> int:
        return self._reported[name].max_cell

    def quality(self, name: str) -> str:
        return str(self._reported[name].top[QUALITY_SLOT])
