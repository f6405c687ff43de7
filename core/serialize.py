"""Plain-dict forms of the model for JSON (REST, JSON lines, exports).

One place decides the JSON shape, so the web API, the example JSON-lines
plugin and exports agree on names and units (suffixes say the unit).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .alarm_types import ActiveAlarm, AlarmEvent
from .model import CellReading, PlantSnapshot, StringReading, StringSnapshot, UpsSnapshot


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Flag):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, enum.IntEnum) else value.value
    return value


def cell_dict(cell: CellReading) -> dict[str, Any]:
    return {f.name: _plain(getattr(cell, f.name)) for f in dataclasses.fields(cell)}


def reading_dict(reading: StringReading, cells: bool = True) -> dict[str, Any]:
    out = {
        f.name: _plain(getattr(reading, f.name))
        for f in dataclasses.fields(reading)
        if f.name != "cells"
    }
    out["alarm_bits"] = [a.name.lower() for a in type(reading.alarms) if a and a in reading.alarms]
    out["soh_pct"] = reading.soh_pct
    if cells:
        out["cells"] = [cell_dict(c) for c in reading.cells]
    return out


def string_dict(
    string: StringSnapshot, cells: bool = True, now: float | None = None
) -> dict[str, Any]:
    return {
        "name": string.name,
        "index": string.index,
        "ups": string.ups,
        "bus": string.bus,
        "slave_id": string.slave_id,
        "quality": string.quality.name.lower(),
        "status": string.device_status.name.lower(),
        "changed_at": string.changed_at,
        "age_s": string.age_s(now),
        "reading": reading_dict(string.reading, cells) if string.reading else None,
    }


def ups_dict(ups: UpsSnapshot) -> dict[str, Any]:
    return {f.name: _plain(getattr(ups, f.name)) for f in dataclasses.fields(ups)} | {
        "strings": list(ups.strings)
    }


def plant_dict(plant: PlantSnapshot, cells: bool = False) -> dict[str, Any]:
    return {
        "taken_at": plant.taken_at,
        "ups": [ups_dict(u) for u in plant.ups.values()],
        "strings": [string_dict(s, cells, plant.taken_at) for s in plant.strings.values()],
    }


def event_dict(event: AlarmEvent | ActiveAlarm) -> dict[str, Any]:
    out = {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}
    out["path"] = {
        "ups": event.path.ups,
        "string": event.path.string,
        "cell": event.path.cell,
        "text": str(event.path),
    }
    return out
