"""The register image: one immutable array per unit id, rebuilt from a snapshot.

A reading rebuilds its string's unit and its UPS's unit off the event loop
(in the plugin's worker thread); the new images are published by swapping
one dict reference, so a request being answered sees either the old image
or the new one, never half of each, and answering never waits for the
engine. Everything the quality rule needs (is this unit's data current?)
is stored in the image, so the rule is decided per request without locks.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from btms_gateway.core.model import PlantSnapshot, Quality, StringSnapshot, UpsSnapshot

from .map import (
    AGE_REGISTER,
    CELL_ALARM_BITS,
    CELL_POINTS,
    CELL_STRIDE,
    MAX_CELLS,
    OTHER_CELL_ALARM_BIT,
    STRING_MEASURED,
    STRING_POINTS,
    STRING_SIZE,
    UPS_MEASURED,
    UPS_POINTS,
    UPS_SIZE,
    CellView,
    Point,
    StringView,
    UpsView,
    cell_register,
    encode,
    encode_column,
    string_unit,
    ups_unit,
)


@dataclass(frozen=True, slots=True)
class UnitImage:
    """One unit id's registers. ``good`` is False when measured values must be
    withheld (honest mode only); ``read_at`` feeds the live data-age register."""

    unit: int
    regs: array  # array('H'), the unit's whole address extent
    good: bool
    read_at: float | None
    measured: list[int]  # prefix sums of "measured register" (map.py)
    age_register: int


@dataclass(frozen=True, slots=True)
class AlarmSummary:
    """The active gateway alarms, indexed the way the map needs them."""

    by_string: dict[str, tuple[int, int]] = field(default_factory=dict)  # count, max severity
    by_ups: dict[str, tuple[int, int]] = field(default_factory=dict)
    cell_bits: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def of(cls, active: Iterable[object], plant: PlantSnapshot) -> AlarmSummary:
        ups_of = {s.name: s.ups for s in plant.strings.values()}
        by_string: dict[str, tuple[int, int]] = {}
        by_ups: dict[str, tuple[int, int]] = {}
        cell_bits: dict[tuple[str, int], int] = {}

        def add(table: dict[str, tuple[int, int]], key: str, severity: int) -> None:
            count, worst = table.get(key, (0, 0))
            table[key] = (count + 1, max(worst, severity))

        for alarm in active:
            path, severity = alarm.path, int(alarm.severity)  # type: ignore[attr-defined]
            ups = path.ups or (ups_of.get(path.string) if path.string else None)
            if path.string:
                add(by_string, path.string, severity)
                if path.cell is not None:
                    bit = CELL_ALARM_BITS.get(alarm.rule, OTHER_CELL_ALARM_BIT)  # type: ignore[attr-defined]
                    key = (path.string, path.cell)
                    cell_bits[key] = cell_bits.get(key, 0) | 1 << bit
            if ups:
                add(by_ups, ups, severity)
        return cls(by_string, by_ups, cell_bits)


def _put(regs: array, base: int, p: Point, view: object, high_first: bool) -> None:
    for i, word in enumerate(encode(p, p.read(view), high_first)):
        regs[base + i] = word


def ups_image(ups: UpsSnapshot, alarms: AlarmSummary, high_first: bool, honest: bool) -> UnitImage:
    regs = array("H", bytes(2 * UPS_SIZE))
    count, worst = alarms.by_ups.get(ups.name, (0, 0))
    view = UpsView(ups, count, worst)
    for p in UPS_POINTS:
        _put(regs, p.offset, p, view, high_first)
    good = ups.quality is Quality.GOOD and ups.read_at is not None
    return UnitImage(
        ups_unit(ups.index),
        regs,
        good or not honest,
        ups.read_at,
        UPS_MEASURED,
        AGE_REGISTER["ups"],
    )


def string_image(
    string: StringSnapshot, alarms: AlarmSummary, high_first: bool, honest: bool
) -> UnitImage:
    regs = array("H", bytes(2 * STRING_SIZE))
    count, worst = alarms.by_string.get(string.name, (0, 0))
    view = StringView(string, count, worst)
    for p in STRING_POINTS:
        _put(regs, p.offset, p, view, high_first)
    reading = string.reading
    good = string.quality is Quality.GOOD and reading is not None
    cells = reading.cells if reading is not None else ()
    bits = alarms.cell_bits
    views = [
        CellView(
            cells[ci - 1] if ci <= len(cells) else None,
            good,
            bits.get((string.name, ci), 0) if bits else 0,
        )
        for ci in range(1, MAX_CELLS + 1)
    ]
    for p in CELL_POINTS:
        columns = encode_column(p, [p.read(v) for v in views], high_first)
        for word, column in enumerate(columns):
            first = cell_register(1, p.offset + word)
            regs[first : first + CELL_STRIDE * MAX_CELLS : CELL_STRIDE] = array("H", column)
    return UnitImage(
        string_unit(string.index),
        regs,
        good or not honest,
        reading.read_at if reading is not None else None,
        STRING_MEASURED,
        AGE_REGISTER["string"],
    )


class ImageStore:
    """The current images of every configured unit id, swapped whole.

    ``units`` is replaced (never mutated) on every update, so readers on the
    event loop take one reference and use it without a lock. Updates come
    from one thread at a time (the plugin's worker thread).
    """

    def __init__(self, high_first: bool = True, honest: bool = True) -> None:
        self.high_first = high_first
        self.honest = honest
        self.units: dict[int, UnitImage] = {}
        self.alarms = AlarmSummary()

    def rebuild_all(self, plant: PlantSnapshot, alarms: AlarmSummary | None = None) -> None:
        if alarms is not None:
            self.alarms = alarms
        units = {}
        for s in plant.strings.values():
            img = string_image(s, self.alarms, self.high_first, self.honest)
            units[img.unit] = img
        for u in plant.ups.values():
            img = ups_image(u, self.alarms, self.high_first, self.honest)
            units[img.unit] = img
        self.units = units

    def update_alarms(self, alarms: AlarmSummary, plant: PlantSnapshot, string: str | None) -> None:
        """An alarm changed: rebuild the string it concerns (or only the UPS units)."""
        self.alarms = alarms
        if string is not None and string in plant.strings:
            self.update_string(plant.strings[string], plant)
            return
        units = dict(self.units)
        for u in plant.ups.values():
            img = ups_image(u, alarms, self.high_first, self.honest)
            units[img.unit] = img
        self.units = units

    def update_string(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        """A reading arrived: rebuild that string's unit and its UPS's unit only."""
        units = dict(self.units)
        img = string_image(string, self.alarms, self.high_first, self.honest)
        units[img.unit] = img
        if string.ups is not None and string.ups in plant.ups:
            uimg = ups_image(plant.ups[string.ups], self.alarms, self.high_first, self.honest)
            units[uimg.unit] = uimg
        self.units = units
