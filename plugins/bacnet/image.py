"""Keep the BACnet objects equal to the gateway's data: values, reliability, alarms.

Runs on the gateway's event loop (the plugin's hooks are ``async def``).
A full 32 x 120 plant is applied in tens of milliseconds because an object
is only touched when its value or quality really changed, and an object
without COV subscribers is written straight into its instance dict; only
subscribed objects go through bacpypes3's property machinery, whose
monitors feed the COV criteria (value past the increment, reliability,
event state).

Quality mapping (docs/bacnet.md explains the choice):
GOOD -> no-fault-detected (or no-sensor for a value the device does not
have), STALE -> unreliable-other, OFFLINE / never read -> communication-failure.
Every non-normal reliability sets the fault status flag.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from statistics import fmean
from typing import Any

from bacpypes3.basetypes import BinaryPV, EventState, Reliability
from bacpypes3.primitivedata import Real, Unsigned
from btms_gateway.core.model import CellStatus, Quality

from .objects import ALARM_TARGETS, CELL_QUANTITIES, SUMMARY_STATS, Point, Quantity

log = logging.getLogger("btms_gateway.plugins.bacnet")

# bacpypes3 enumeration attributes are plain ints: the properties need instances
NO_FAULT = Reliability("noFaultDetected")
NO_SENSOR = Reliability("noSensor")
COMM_FAILURE = Reliability("communicationFailure")
QUALITY_RELIABILITY: dict[Quality, Reliability | None] = {
    Quality.GOOD: None,
    Quality.STALE: Reliability("unreliableOther"),
    Quality.OFFLINE: COMM_FAILURE,
}
NORMAL = EventState("normal")
EVENT_STATES = {
    "high": EventState("highLimit"),
    "low": EventState("lowLimit"),
    "flag": EventState("offnormal"),
}
ACTIVE, INACTIVE = BinaryPV("active"), BinaryPV("inactive")
_UNSIGNED = {n: Unsigned(n) for n in range(0, 16)}
SENSOR_LOST = int(CellStatus.SENSOR_LOST)  # a plain int: IntFlag arithmetic is slow per cell


def put(obj: Any, attr: str, value: Any) -> None:
    """Set a property; through bacpypes3 (so COV criteria see it) only when watched."""
    d = obj.__dict__
    if d["_property_monitors"].get(attr):
        setattr(obj, attr, value)
    else:
        d[attr] = value


def present(obj: Any, kind: str, value: Any) -> bool:
    """Write a present value if it changed; False when the value is missing."""
    if value is None:
        return False
    if kind == "analogInput":
        if obj.__dict__["presentValue"] != value:
            put(obj, "presentValue", Real(value))
    elif kind == "binaryInput":
        pv = ACTIVE if value else INACTIVE
        if obj.__dict__["presentValue"] != pv:
            put(obj, "presentValue", pv)
    elif obj.__dict__["presentValue"] != value:
        cached = _UNSIGNED.get(value)
        put(obj, "presentValue", cached if cached is not None else Unsigned(value))
    return True


def reliability(obj: Any, value: Reliability) -> None:
    if obj.__dict__["reliability"] != value:
        put(obj, "reliability", value)


def _value(source: Any, q: Quantity) -> Any:
    src = q.source
    return src(source) if callable(src) else getattr(source, src)


class StringSlots:
    """One string's objects, arranged for a fast pass over a reading."""

    def __init__(self) -> None:
        self.own: list[tuple[Quantity, Any]] = []
        self.cells: dict[int, list[tuple[str, Any]]] = {}
        self.summary: list[tuple[Quantity, str, Any]] = []
        self.all: list[Any] = []


class Image:
    def __init__(self, points: list[Point], objects: dict[tuple[str, int], Any]) -> None:
        self.strings: dict[str, StringSlots] = defaultdict(StringSlots)
        self.ups: dict[str, list[tuple[Quantity, Any]]] = defaultdict(list)
        self.targets: dict[tuple[str, str | None, int | None, str], list[Any]] = defaultdict(list)
        self.alarms: dict[int, dict[str, EventState]] = {}
        self._alarm_objects: dict[str, list[Any]] = {}
        for p in points:
            q = p.quantity
            if q is None:
                continue
            obj = objects[p.oid]
            if p.scope == "ups":
                assert p.ups is not None
                self.ups[p.ups].append((q, obj))
                self.targets[("ups", p.ups, None, q.key)].append(obj)
                continue
            assert p.string is not None
            slots = self.strings[p.string]
            slots.all.append(obj)
            if p.scope == "string":
                slots.own.append((q, obj))
                self.targets[("string", p.string, None, q.key)].append(obj)
            elif p.scope == "cell":
                assert p.cell is not None
                slots.cells.setdefault(p.cell, []).append((str(q.source), obj))
                self.targets[("cell", p.string, p.cell, q.key)].append(obj)
            else:
                slots.summary.append((q, str(p.stat), obj))
                self.targets[("summary", p.string, None, q.key)].append(obj)

    # --- readings ------------------------------------------------------------
    def apply_plant(self, plant: Any) -> None:
        for s in plant.strings.values():
            self.apply_string(s)
        for u in plant.ups.values():
            self.apply_ups(u)

    def apply_string(self, string: Any) -> None:
        slots = self.strings.get(string.name)
        if slots is None:
            return
        fault = QUALITY_RELIABILITY[string.quality]
        r = string.reading
        if r is None:
            fault = COMM_FAILURE
            for obj in slots.all:
                reliability(obj, fault)
            return
        for q, obj in slots.own:
            ok = present(obj, q.kind, _value(r, q))
            reliability(obj, fault or (NO_FAULT if ok else NO_SENSOR))
        if slots.cells:
            self._apply_cells(slots, r, fault)
        if slots.summary:
            self._apply_summary(slots, r, fault)

    def _apply_cells(self, slots: StringSlots, r: Any, fault: Reliability | None) -> None:
        seen = set()
        cells = slots.cells
        for cell in r.cells:
            row = cells.get(cell.index)
            if row is None:
                continue
            seen.add(cell.index)
            lost = bool(cell.status & SENSOR_LOST)
            for attr, obj in row:
                value = getattr(cell, attr)
                d = obj.__dict__
                if value is not None and d["presentValue"] != value:
                    put(obj, "presentValue", Real(value))
                want = fault or (NO_SENSOR if lost or value is None else NO_FAULT)
                if d["reliability"] != want:
                    put(obj, "reliability", want)
        absent = fault or NO_SENSOR  # past the cell count: no sensor addressed
        for index, row in cells.items():
            if index not in seen:
                for _, obj in row:
                    reliability(obj, absent)

    def _apply_summary(self, slots: StringSlots, r: Any, fault: Reliability | None) -> None:
        stats: dict[str, dict[str, float | None]] = {}
        for q in CELL_QUANTITIES:
            values = [v for c in r.cells if (v := getattr(c, str(q.source))) is not None]
            if values:
                stats[q.key] = {"min": min(values), "max": max(values), "mean": fmean(values)}
            else:
                stats[q.key] = dict.fromkeys(SUMMARY_STATS)
        for q, stat, obj in slots.summary:
            value = stats[q.key][stat]
            ok = present(obj, "analogInput", value)
            reliability(obj, fault or (NO_FAULT if ok else NO_SENSOR))

    def apply_ups(self, ups: Any) -> None:
        fault = QUALITY_RELIABILITY[ups.quality]
        for q, obj in self.ups.get(ups.name, ()):
            ok = present(obj, q.kind, _value(ups, q))
            reliability(obj, fault or (NO_FAULT if ok else NO_SENSOR))

    # --- alarms ----------------------------------------------------------------
    def objects_for(self, rule: str, path: Any) -> list[Any]:
        """The objects an alarm concerns (empty when it has no object here)."""
        target = ALARM_TARGETS.get(rule)
        if target is None:
            return []
        scope, keys = target
        found: list[Any] = []
        for key in keys:
            if scope == "cell":
                found += self.targets.get(("cell", path.string, path.cell, key), [])
                found += self.targets.get(("summary", path.string, None, key), [])
            elif scope == "string":
                found += self.targets.get(("string", path.string, None, key), [])
            else:
                found += self.targets.get(("ups", path.ups, None, key), [])
        return found

    def raise_alarm(self, alarm_id: str, rule: str, path: Any) -> None:
        objs = self.objects_for(rule, path)
        self._alarm_objects[alarm_id] = objs
        state = _event_state(rule)
        for obj in objs:
            self.alarms.setdefault(id(obj), {})[alarm_id] = state
            self._show(obj)

    def clear_alarm(self, alarm_id: str) -> None:
        for obj in self._alarm_objects.pop(alarm_id, []):
            self.alarms.get(id(obj), {}).pop(alarm_id, None)
            self._show(obj)

    def _show(self, obj: Any) -> None:
        active = self.alarms.get(id(obj))
        state = next(iter(active.values())) if active else NORMAL
        if obj.__dict__["eventState"] != state:
            put(obj, "eventState", state)


def _event_state(rule: str) -> EventState:
    """high/low limit rules show as high-limit/low-limit, flags as offnormal."""
    try:
        from btms_gateway.core.alarms.rules import RULES

        kind = RULES[rule].kind
    except (ImportError, KeyError):
        kind = "high" if "high" in rule else "low" if "low" in rule else "flag"
    return EVENT_STATES.get(kind, EVENT_STATES["flag"])
