"""The JSON text of the plant, assembled from pieces cached per immutable object.

Why: at full scale a live-stream plant event or a string with its 120 cells
took 1-2 ms of the gateway's one event loop to turn into dicts and encode,
several times a second, although a reading only changes once per poll.
Readings, string snapshots and UPS snapshots are frozen dataclasses, so the
text of one is a pure function of that object: it is encoded once and reused
until the store holds a different object. Entries are found by name and
checked by identity (``is``), never by equality (``-0.0 == 0.0`` but their
JSON differs), and an entry holds its object, so an id cannot be recycled
while the text is kept; one entry per configured name bounds the memory (at
most one reading per string that the store has already replaced, until the
next request for that string).

Every text equals what ``json.dumps`` gives for the dicts ``core.serialize``
builds, byte for byte, in two dialects (``Style``): the REST answers'
``json.dumps(o, default=str)`` and the live stream's compact separators.
Pieces are spliced where the dicts have their keys, so key order is kept:
a dict's text minus its closing brace, then ``, "key": value``, then ``}``.
Only the age (which moves with the clock) is encoded on every request.

What is missing can be built piece by piece (``fill``/``prepare``), yielding
to the loop between pieces, so a plant whose 32 strings all changed is not
one long callback that holds up every bus task's timers.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from btms_gateway.core.api import (
    PlantSnapshot,
    StringReading,
    StringSnapshot,
    UpsSnapshot,
    cell_dict,
    reading_dict,
    string_head,
    ups_dict,
)


class Style:
    """One JSON dialect: an encoder and the separators it writes."""

    def __init__(self, encoder: json.JSONEncoder) -> None:
        self.encode: Callable[[Any], str] = encoder.encode
        self.item = encoder.item_separator
        self.key = encoder.key_separator
        self._fields: dict[str, str] = {}

    def field(self, name: str) -> str:
        """``, "name": `` as this style writes it before a value."""
        text = self._fields.get(name)
        if text is None:
            text = self._fields[name] = f"{self.item}{json.dumps(name)}{self.key}"
        return text

    def number(self, value: float | None) -> str:
        # json writes a finite float as float.__repr__; anything else goes the long way
        if type(value) is float and math.isfinite(value):
            return float.__repr__(value)
        return self.encode(value)


#: ``json.dumps(o, default=str)``, as the REST handlers answer
REST = Style(json.JSONEncoder(default=str))
#: ``json.dumps(o, separators=(",", ":"))``, as the live stream sends
LIVE = Style(json.JSONEncoder(separators=(",", ":")))
#: pieces built between two yields to the loop (a piece is one string or UPS:
#: about 0.1 ms each on the reference VM, so a step stays well under 5 ms)
PIECES_PER_STEP = 8


class JsonCache:
    """Text pieces of the latest objects, by name; used on the event loop only."""

    def __init__(self) -> None:
        # name -> (reading, {(style, cells): text of reading_dict})
        self._readings: dict[str, tuple[StringReading, dict[tuple[Style, bool], str]]] = {}
        # name -> (snapshot, {style: text of string_head, no closing brace})
        self._heads: dict[str, tuple[StringSnapshot, dict[Style, str]]] = {}
        self._ups: dict[str, tuple[UpsSnapshot, dict[Style, str]]] = {}

    # --- pieces ---------------------------------------------------------------------
    def reading(self, name: str, reading: StringReading, style: Style, cells: bool) -> str:
        """``style.encode(reading_dict(reading, cells))``."""
        entry = self._readings.get(name)
        if entry is None or entry[0] is not reading:
            entry = self._readings[name] = (reading, {})
        texts = entry[1]
        text = texts.get((style, cells))
        if text is None:
            if cells:  # reading_dict puts "cells" last: reuse the text without them
                bare = self.reading(name, reading, style, False)
                listed = style.encode([cell_dict(c) for c in reading.cells])
                text = f"{bare[:-1]}{style.field('cells')}{listed}}}"
            else:
                text = style.encode(reading_dict(reading, False))
            texts[(style, cells)] = text
        return text

    def _cached(self, string: StringSnapshot, style: Style, cells: bool) -> bool:
        head = self._heads.get(string.name)
        if head is None or head[0] is not string or style not in head[1]:
            return False
        r = string.reading
        if r is None:
            return True
        entry = self._readings.get(string.name)
        return entry is not None and entry[0] is r and (style, cells) in entry[1]

    def _head(self, string: StringSnapshot, style: Style) -> str:
        entry = self._heads.get(string.name)
        if entry is None or entry[0] is not string:
            entry = self._heads[string.name] = (string, {})
        text = entry[1].get(style)
        if text is None:
            text = entry[1][style] = style.encode(string_head(string))[:-1]
        return text

    def string(self, string: StringSnapshot, style: Style, cells: bool, now: float | None) -> str:
        """``style.encode(string_dict(string, cells, now))``."""
        r = string.reading
        values = "null" if r is None else self.reading(string.name, r, style, cells)
        return (
            f"{self._head(string, style)}{style.field('age_s')}"
            f"{style.number(string.age_s(now))}{style.field('reading')}{values}}}"
        )

    def ups(self, ups: UpsSnapshot, style: Style) -> str:
        """``style.encode(ups_dict(ups))``."""
        entry = self._ups.get(ups.name)
        if entry is None or entry[0] is not ups:
            entry = self._ups[ups.name] = (ups, {})
        text = entry[1].get(style)
        if text is None:
            text = entry[1][style] = style.encode(ups_dict(ups))
        return text

    def fill(self, plant: PlantSnapshot, style: Style, cells: bool = False) -> Iterator[None]:
        """Build what ``plant_open(plant, style, cells)`` lacks, one piece per step."""
        for s in plant.strings.values():
            if not self._cached(s, style, cells):
                self._head(s, style)
                if s.reading is not None:
                    self.reading(s.name, s.reading, style, cells)
                yield
        for u in plant.ups.values():
            cached = self._ups.get(u.name)
            if cached is None or cached[0] is not u or style not in cached[1]:
                self.ups(u, style)
                yield

    async def prepare(self, plant: PlantSnapshot, style: Style, cells: bool = False) -> None:
        """``fill`` with a yield to the event loop every ``PIECES_PER_STEP`` pieces."""
        for built, _ in enumerate(self.fill(plant, style, cells), 1):
            if built % PIECES_PER_STEP == 0:
                await asyncio.sleep(0)

    def drop_stale(self, plant: PlantSnapshot, names: Iterable[str]) -> None:
        """Forget the entries of ``names`` that ``plant`` has replaced. Called as
        changes arrive (a few strings per call), so the replaced readings are
        freed then, not all together in the next request that rebuilds them."""
        for name in names:
            current = plant.strings.get(name)
            head = self._heads.get(name)
            if head is not None and head[0] is not current:
                del self._heads[name]
            entry = self._readings.get(name)
            if entry is not None and (current is None or entry[0] is not current.reading):
                del self._readings[name]

    # --- whole answers ----------------------------------------------------------------
    def strings(self, plant: PlantSnapshot, style: Style, cells: bool = False) -> str:
        """The ``strings`` list of ``plant_dict(plant, cells)``."""
        now = plant.taken_at
        parts = [self.string(s, style, cells, now) for s in plant.strings.values()]
        return f"[{style.item.join(parts)}]"

    def ups_list(self, plant: PlantSnapshot, style: Style) -> str:
        """The ``ups`` list of ``plant_dict(plant)``."""
        return f"[{style.item.join(self.ups(u, style) for u in plant.ups.values())}]"

    def plant_open(self, plant: PlantSnapshot, style: Style, cells: bool = False) -> str:
        """``style.encode(plant_dict(plant, cells))`` without its closing brace, so a
        caller appends its own keys. Not kept: holding a whole plant would keep
        the readings it replaced alive until the next one, and free them all in
        one go (about 50 us per 120-cell reading, all in one callback)."""
        return (
            f"{{{json.dumps('taken_at')}{style.key}{style.number(plant.taken_at)}"
            f"{style.field('ups')}{self.ups_list(plant, style)}"
            f"{style.field('strings')}{self.strings(plant, style, cells)}"
        )

    def extend(self, opened: str, style: Style, extra: dict[str, Any]) -> str:
        """Close an object opened by ``plant_open`` (or any dict's text minus its
        closing brace) after the keys of ``extra``, in order."""
        if not extra:
            return opened + "}"
        return f"{opened}{style.item}{style.encode(extra)[1:]}"
