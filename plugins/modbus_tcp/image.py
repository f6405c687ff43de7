"""The register image: one immutable array per unit id, built when asked for.

A reading only marks its string's unit and its UPS's unit as out of date;
the image is built when a request first reads that unit, from the newest
snapshot, and kept until the next reading. At full scale the readings come
32 a second while a SCADA reads each string every few seconds: building on
every reading (0.5 ms for a 120-cell string) was most of this plugin's CPU
with no client connected at all, and a SCADA still gets the newest data.

The store is used on the gateway's event loop only (the plugin's hooks are
``async def``, so they run there; see core/plugin_channel.py), so a request
sees one whole image, old or new, and needs no lock. Everything the quality
rule needs (is this unit's data current?) is stored in the image, so the
rule is decided per request.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from btms_gateway.core.api import ActiveAlarm, PlantSnapshot, Quality, StringSnapshot, UpsSnapshot

from .map import (
    CELL_ALARM_BITS,
    CELL_STRIDE,
    CORE_MAP,
    MAX_CELLS,
    OTHER_CELL_ALARM_BIT,
    CellView,
    Point,
    RegisterMap,
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


K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class AlarmSummary:
    """The active gateway alarms, indexed the way the map needs them."""

    by_string: dict[str, tuple[int, int]] = field(default_factory=dict)  # count, max severity
    by_ups: dict[str, tuple[int, int]] = field(default_factory=dict)
    cell_bits: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def of(cls, active: Iterable[ActiveAlarm], plant: PlantSnapshot) -> AlarmSummary:
        ups_of = {s.name: s.ups for s in plant.strings.values()}
        by_string: dict[str, tuple[int, int]] = {}
        by_ups: dict[str, tuple[int, int]] = {}
        cell_bits: dict[tuple[str, int], int] = {}

        def add(table: dict[str, tuple[int, int]], key: str, severity: int) -> None:
            count, worst = table.get(key, (0, 0))
            table[key] = (count + 1, max(worst, severity))

        for alarm in active:
            path, severity = alarm.path, int(alarm.severity)
            if path.is_gateway:  # no gateway unit in the map: every unit counts it
                for name in ups_of:
                    add(by_string, name, severity)
                for name in plant.ups:
                    add(by_ups, name, severity)
                continue
            ups = path.ups or (ups_of.get(path.string) if path.string else None)
            if path.string:
                add(by_string, path.string, severity)
                if path.cell is not None:
                    bit = CELL_ALARM_BITS.get(alarm.rule, OTHER_CELL_ALARM_BIT)
                    key = (path.string, path.cell)
                    cell_bits[key] = cell_bits.get(key, 0) | 1 << bit
            if ups:
                add(by_ups, ups, severity)
        return cls(by_string, by_ups, cell_bits)

    def differing(self, before: AlarmSummary) -> tuple[set[str], set[str]]:
        """The strings and the UPS whose registers differ from ``before``'s."""
        strings = _differing(self.by_string, before.by_string)
        strings.update(s for s, _ in _differing(self.cell_bits, before.cell_bits))
        return strings, _differing(self.by_ups, before.by_ups)


def _differing(a: Mapping[K, object], b: Mapping[K, object]) -> set[K]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def _put(regs: array, base: int, p: Point, view: object, high_first: bool) -> None:
    for i, word in enumerate(encode(p, p.read(view), high_first)):
        regs[base + i] = word


def ups_read_at(ups: UpsSnapshot, plant: PlantSnapshot) -> float | None:
    """When the UPS's oldest string values were read, for its data-age register:
    None (served as 65535) while any of its strings was never read. The UPS
    aggregate leaves a never-read string out of its values, so its own
    ``read_at`` is the oldest of the strings that were read, and a UPS with a
    dead string would claim an age of a few seconds."""
    if any(plant.strings[name].reading is None for name in ups.strings):
        return None
    return ups.read_at


def ups_image(
    ups: UpsSnapshot,
    alarms: AlarmSummary,
    high_first: bool,
    honest: bool,
    read_at: float | None,
    rmap: RegisterMap = CORE_MAP,
) -> UnitImage:
    """``read_at`` feeds the data-age register: see :func:`ups_read_at`."""
    regs = array("H", bytes(2 * rmap.ups_size))
    count, worst = alarms.by_ups.get(ups.name, (0, 0))
    view = UpsView(ups, count, worst)
    for p in rmap.ups_points:
        _put(regs, p.offset, p, view, high_first)
    good = ups.quality is Quality.GOOD and ups.read_at is not None
    return UnitImage(
        ups_unit(ups.index),
        regs,
        good or not honest,
        read_at,
        rmap.ups_measured,
        rmap.age_register["ups"],
    )


def string_image(
    string: StringSnapshot,
    alarms: AlarmSummary,
    high_first: bool,
    honest: bool,
    rmap: RegisterMap = CORE_MAP,
) -> UnitImage:
    regs = array("H", bytes(2 * rmap.string_size))
    count, worst = alarms.by_string.get(string.name, (0, 0))
    view = StringView(string, count, worst)
    for p in rmap.string_points:
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
    for p in rmap.cell_points:
        columns = encode_column(p, [p.read(v) for v in views], high_first)
        for word, column in enumerate(columns):
            first = cell_register(1, p.offset + word)
            regs[first : first + CELL_STRIDE * MAX_CELLS : CELL_STRIDE] = array("H", column)
    return UnitImage(
        string_unit(string.index),
        regs,
        good or not honest,
        reading.read_at if reading is not None else None,
        rmap.string_measured,
        rmap.age_register["string"],
    )


class ImageStore:
    """The images of every configured unit id, each built on first use.

    ``units`` maps unit id -> image like a dict; reading an entry builds it if
    a reading or an alarm marked it out of date since it was last built.
    """

    def __init__(
        self, high_first: bool = True, honest: bool = True, rmap: RegisterMap = CORE_MAP
    ) -> None:
        self.rmap = rmap  # the map of the gateway's quantity table
        self.high_first = high_first
        self.honest = honest
        self.alarms = AlarmSummary()
        self._built: dict[int, UnitImage] = {}
        self._pending: dict[int, Callable[[], UnitImage]] = {}
        self.units: Mapping[int, UnitImage] = _Units(self)

    def image(self, unit: int) -> UnitImage | None:
        """The current image of ``unit`` (None if not configured), built now if out of date."""
        build = self._pending.pop(unit, None)
        if build is not None:
            self._built[unit] = build()
        return self._built.get(unit)

    def rebuild_all(self, plant: PlantSnapshot, alarms: AlarmSummary | None = None) -> None:
        if alarms is not None:
            self.alarms = alarms
        for s in plant.strings.values():
            self._mark_string(s)
        for u in plant.ups.values():
            self._mark_ups(u, plant)

    def update_alarms(self, alarms: AlarmSummary, plant: PlantSnapshot) -> None:
        """The active alarms changed: the units whose alarm registers differ are
        out of date (found by comparing, so a change without an event of its
        own, such as one whose event the plugin's queue dropped, is served too)."""
        strings, ups = alarms.differing(self.alarms)
        self.alarms = alarms
        for name in strings:
            if (s := plant.strings.get(name)) is not None:
                self._mark_string(s)
        for name in ups:
            if (u := plant.ups.get(name)) is not None:
                self._mark_ups(u, plant)

    def update_string(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        """A reading arrived: that string's unit and its UPS's unit are out of date."""
        self._mark_string(string)
        if string.ups is not None and string.ups in plant.ups:
            self._mark_ups(plant.ups[string.ups], plant)

    # the alarms are taken when the image is built, so it has the newest
    def _mark_string(self, string: StringSnapshot) -> None:
        self._pending[string_unit(string.index)] = lambda: string_image(
            string, self.alarms, self.high_first, self.honest, self.rmap
        )

    def _mark_ups(self, ups: UpsSnapshot, plant: PlantSnapshot) -> None:
        read_at = ups_read_at(ups, plant)
        self._pending[ups_unit(ups.index)] = lambda: ups_image(
            ups, self.alarms, self.high_first, self.honest, read_at, self.rmap
        )


class _Units(Mapping[int, UnitImage]):
    """``ImageStore.units``: a read-only mapping that builds entries on access."""

    def __init__(self, store: ImageStore) -> None:
        self._store = store

    def __getitem__(self, unit: int) -> UnitImage:
        img = self._store.image(unit)
        if img is None:
            raise KeyError(unit)
        return img

    def __iter__(self) -> Iterator[int]:
        return iter(self._store._built.keys() | self._store._pending.keys())

    def __len__(self) -> int:
        return len(self._store._built.keys() | self._store._pending.keys())
