"""Plain-dict forms of the model for JSON (REST, JSON lines, exports).

One place decides the JSON shape, so the web API, the example JSON-lines
plugin and exports agree on names and units (suffixes say the unit).

At full scale these run for thousands of cells a second, so the field names
of each dataclass are looked up once per class (``dataclasses.fields()`` per
cell cost more than the values), and plain values skip the enum checks.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .alarm_types import ActiveAlarm, AlarmEvent
from .model import CellReading, PlantSnapshot, StringReading, StringSnapshot, UpsSnapshot

#: exact types JSON takes as they are (an IntEnum or IntFlag is a subclass, not one of these)
_AS_IS = frozenset({float, int, str, bool, type(None)})
_names_of: dict[type, tuple[str, ...]] = {}
_members_of: dict[type, tuple[Any, ...]] = {}


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, enum.Flag):
        return value.value  # the flag's bits as an int
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, enum.IntEnum) else value.value
    return value


def _names(cls: type) -> tuple[str, ...]:
    names = _names_of.get(cls)
    if names is None:
        names = _names_of[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _flag_members(cls: type[enum.Flag]) -> tuple[Any, ...]:
    members = _members_of.get(cls)
    if members is None:
        members = _members_of[cls] = tuple(a for a in cls if a)
    return members


def cell_dict(cell: CellReading) -> dict[str, Any]:
    return {n: _plain(getattr(cell, n)) for n in _names(type(cell))}


def reading_dict(reading: StringReading, cells: bool = True) -> dict[str, Any]:
    out = {n: _plain(getattr(reading, n)) for n in _names(type(reading)) if n != "cells"}
    alarms = reading.alarms  # most readings have none: skip Flag.__contains__ per member
    members = _flag_members(type(alarms)) if alarms else ()
    out["alarm_bits"] = [a.name.lower() for a in members if a in alarms]
    out["soh_pct"] = reading.soh_pct
    if cells:
        out["cells"] = [cell_dict(c) for c in reading.cells]
    return out


def string_head(string: StringSnapshot) -> dict[str, Any]:
    """``string_dict`` without its last two keys (age and reading): the part
    that only changes with the snapshot, so a cache can keep it per snapshot."""
    return {
        "name": string.name,
        "index": string.index,
        "ups": string.ups,
        "bus": string.bus,
        "slave_id": string.slave_id,
        "quality": string.quality.name.lower(),
        "status": string.device_status.name.lower(),
        "changed_at": string.changed_at,
    }


def string_dict(
    string: StringSnapshot, cells: bool = True, now: float | None = None
) -> dict[str, Any]:
    out = string_head(string)
    out["age_s"] = string.age_s(now)
    out["reading"] = reading_dict(string.reading, cells) if string.reading else None
    return out


def ups_dict(ups: UpsSnapshot) -> dict[str, Any]:
    return {n: _plain(getattr(ups, n)) for n in _names(type(ups))} | {"strings": list(ups.strings)}


def plant_dict(plant: PlantSnapshot, cells: bool = False) -> dict[str, Any]:
    return {
        "taken_at": plant.taken_at,
        "ups": [ups_dict(u) for u in plant.ups.values()],
        "strings": [string_dict(s, cells, plant.taken_at) for s in plant.strings.values()],
    }


def event_dict(event: AlarmEvent | ActiveAlarm) -> dict[str, Any]:
    out = {n: _plain(getattr(event, n)) for n in _names(type(event))}
    out["path"] = {
        "ups": event.path.ups,
        "string": event.path.string,
        "cell": event.path.cell,
        "text": str(event.path),
    }
    return out
