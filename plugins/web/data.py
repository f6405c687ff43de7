"""The JSON the API and the live stream serve, built from the gateway's own
objects with core.serialize, so the web, exports and JSON-lines agree.

The dict functions (``plant``, ``ups``, ``string``) are the plain statement
of each answer; the handlers serve the ``*_text`` twins, which give the same
JSON text from pieces cached per immutable snapshot (see json_cache.py; the tests
hold the two equal).

Everything here runs on the event loop and only reads: the plant snapshot is
immutable, counters are plain numbers the engine (same loop) updates.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

from btms_gateway.core.api import (
    QUANTITIES,
    ActiveAlarm,
    AlarmEvent,
    EventLogHealth,
    EventLogReader,
    Gateway,
    Level,
    PlantSnapshot,
    Quality,
    Quantity,
    event_dict,
    plant_dict,
    string_dict,
    table_of,
    ups_dict,
)

from .json_cache import JsonCache, Style

#: display bands when the alarm engine is off or a rule is disabled (2 V lead-acid
#: per cell, scaled by the block type like the rules themselves)
CELL_RULES = {
    "voltage_v": ("cell_voltage_low", "cell_voltage_high"),
    "temperature_c": (None, "cell_temperature_high"),
    "soc_pct": ("cell_soc_low", None),
    "soh_pct": ("cell_soh_low", None),
    "resistance_pct": ("cell_resistance_warning", "cell_resistance_alarm"),
}


def gateway_info(gateway: Gateway) -> dict[str, Any]:
    return {
        "name": gateway.name,
        "version": gateway.version,
        "uptime_s": round(gateway.uptime_s(), 3),
        "demo": gateway.demo,
        "alarm_engine": alarm_engine_present(gateway),
        "event_log": event_log(gateway) is not None,
    }


def alarm_engine_present(gateway: Gateway) -> bool:
    return gateway.events is not None


def event_log(gateway: Gateway) -> EventLogReader | None:
    """The gateway's event log if it has one; None means only this plugin's
    in-memory ring."""
    return gateway.events


def plant(gateway: Gateway) -> dict[str, Any]:
    out = plant_dict(gateway.store.snapshot, cells=False)
    out["gateway"] = gateway_info(gateway)
    return out


#: core quantities the JSON shapes carry under no key of their own, and where
#: they show instead (every other one is its ``json_key``)
ELSEWHERE: dict[tuple[Level, str], str] = {
    (Level.UPS, "string_count"): "the length of strings",
    (Level.UPS, "data_age"): "read_at (of its oldest string)",
    (Level.UPS, "active_alarms"): "/api/alarms",
    (Level.UPS, "alarm_severity"): "/api/alarms",
    (Level.STRING, "active_alarms"): "/api/alarms",
    (Level.STRING, "alarm_severity"): "/api/alarms",
    (Level.CELL, "status"): "the cell's status bits (sensor_lost)",
    (Level.STRING, "runtime_remaining"): "derived.runtime_remaining_s",
    (Level.STRING, "depth_of_discharge"): "derived.dod_pct",
}


def registered(gateway: Gateway, level: Level | None = None) -> tuple[Quantity, ...]:
    """The quantities plugins registered (at ``level``; every level for None):
    core's are in the JSON shapes already."""
    table = table_of(gateway) if level is None else gateway.quantities(level)
    return tuple(q for q in table if q not in QUANTITIES)


def quantity_values(gateway: Gateway, level: Level, obj: Any) -> dict[str, Any]:
    """The registered quantities' values of ``obj`` (a UPS or string snapshot), by key."""
    return {q.key: q.read(obj) for q in registered(gateway, level) if q.read is not None}


def cell_values(gateway: Gateway) -> Callable[[Any], dict[str, Any]] | None:
    """The registered cell quantities' values of a ``CellReading``, by key (what a
    cell of the string detail carries after core's keys); None when plugins
    registered none, so a cell costs nothing extra then."""
    if not registered(gateway, Level.CELL):
        return None
    return functools.partial(quantity_values, gateway, Level.CELL)


def ups(gateway: Gateway, name: str) -> dict[str, Any] | None:
    snap = gateway.store.snapshot
    u = snap.ups.get(name)
    if u is None:
        return None
    out = ups_dict(u)
    out["string_details"] = [string_dict(snap.strings[s], False, snap.taken_at) for s in u.strings]
    return out | quantity_values(gateway, Level.UPS, u)


def string(gateway: Gateway, name: str, cells: bool = True) -> dict[str, Any] | None:
    snap = gateway.store.snapshot
    s = snap.strings.get(name)
    if s is None:
        return None
    out = string_dict(s, cells, time.time())
    values = cell_values(gateway)
    if cells and values is not None and s.reading is not None:
        listed = zip(out["reading"]["cells"], s.reading.cells, strict=True)
        out["reading"]["cells"] = [c | values(cell) for c, cell in listed]
    out["ups_index"] = s.ups_index
    out.update(quantity_values(gateway, Level.STRING, s))
    if cells:
        count = s.reading.cell_count if s.reading else 0
        out["limits"] = cell_limits(gateway, name)
        out["baseline_mohm"] = baselines(gateway, name, count)
    out |= derived(s, cells)
    return out


def derived(s: Any, cells: bool) -> dict[str, Any]:
    """What analytics derived (docs/analytics.md): ``derived`` always, the
    per-cell ``cell_derived`` (lists in the order of the cells) with the cells."""
    out: dict[str, Any] = {"derived": dict(s.derived)}
    if cells:
        out["cell_derived"] = {k: list(v) for k, v in s.cell_derived.items()}
    return out


def plant_text(
    gateway: Gateway, cache: JsonCache, style: Style, snap: PlantSnapshot, **extra: Any
) -> str:
    """``plant()`` of the plant snapshot ``snap`` (plus ``extra`` keys after it)."""
    opened = cache.plant_open(snap, style)
    return cache.extend(opened, style, {"gateway": gateway_info(gateway), **extra})


def ups_text(gateway: Gateway, cache: JsonCache, style: Style, name: str) -> str | None:
    snap = gateway.store.snapshot
    u = snap.ups.get(name)
    if u is None:
        return None
    now = snap.taken_at
    details = style.item.join(cache.string(snap.strings[s], style, False, now) for s in u.strings)
    opened = f"{cache.ups(u, style)[:-1]}{style.field('string_details')}[{details}]"
    return cache.extend(opened, style, quantity_values(gateway, Level.UPS, u))


def string_text(
    gateway: Gateway,
    cache: JsonCache,
    style: Style,
    name: str,
    cells: bool = True,
    limits: Callable[[Any, str], dict[str, Any]] | None = None,
) -> str | None:
    """``string()`` as ``style`` encodes it; ``limits``: a cached ``cell_limits``."""
    s = gateway.store.snapshot.strings.get(name)
    if s is None:
        return None
    extra: dict[str, Any] = {"ups_index": s.ups_index}
    extra.update(quantity_values(gateway, Level.STRING, s))
    if cells:
        count = s.reading.cell_count if s.reading else 0
        extra["limits"] = (limits or cell_limits)(gateway, name)
        extra["baseline_mohm"] = baselines(gateway, name, count)
    extra |= derived(s, cells)
    return cache.extend(cache.string(s, style, cells, time.time())[:-1], style, extra)


def cell_limits(gateway: Gateway, name: str) -> dict[str, Any]:
    """The limits the alarm engine applies to this string's cells (overrides and
    block type resolved), so the chart marks exactly what would alarm."""
    from btms_gateway.core.api import rules_for

    settings = gateway.settings.alarms
    rules = rules_for(settings, name)
    engine_on = alarm_engine_present(gateway) and settings.enabled
    out: dict[str, Any] = {}
    for quantity, (low, high) in CELL_RULES.items():
        band: dict[str, Any] = {}
        for key, rule_name in (("low", low), ("high", high)):
            if rule_name is None:
                continue
            rule = rules[rule_name]
            band[key] = rule.limit
            band[f"{key}_source"] = "alarm" if engine_on and rule.enabled else "display"
        out[quantity] = band
    return out


class LimitsCache:
    """``cell_limits`` per string, kept while the alarm settings are the same
    object (config sections are frozen) and the engine's presence is the same:
    resolving every rule's overrides cost more than the rest of a cached answer."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[Any, bool, dict[str, Any]]] = {}

    def __call__(self, gateway: Gateway, name: str) -> dict[str, Any]:
        settings, on = gateway.settings.alarms, alarm_engine_present(gateway)
        entry = self._by_name.get(name)
        if entry is None or entry[0] is not settings or entry[1] != on:
            entry = self._by_name[name] = (settings, on, cell_limits(gateway, name))
        return entry[2]


def baselines(gateway: Gateway, name: str, count: int) -> list[float | None]:
    """Per-cell resistance baselines (index 0 = cell 1); None where a cell has
    none yet (still learning, or no alarm engine)."""
    values = gateway.alarms.baselines(name)
    return [values.get(i) for i in range(1, count + 1)]


def buses(gateway: Gateway) -> list[dict[str, Any]]:
    snap = gateway.store.snapshot
    out = []
    for b in gateway.bus_status():
        members = [s for s in snap.strings.values() if s.bus == b.name]
        out.append(
            {
                "name": b.name,
                "interval_s": b.interval_s,
                "last_cycle_s": b.last_cycle_s,
                "cycles": b.cycles,
                "port_open": b.port_open,
                "counters": b.counters.as_dict(),
                "strings": {s.name: gateway.string_counters(s.name).as_dict() for s in members},
            }
        )
    return out


def active_alarms(gateway: Gateway) -> list[dict[str, Any]]:
    return alarms_json(gateway.alarms.active())


def alarms_json(active: Iterable[ActiveAlarm]) -> list[dict[str, Any]]:
    return [event_dict(a) for a in active]


def log_health(gateway: Gateway) -> EventLogHealth:
    """How the event log is doing."""
    return gateway.alarms.log_health()


def event_log_health(gateway: Gateway) -> dict[str, Any]:
    return dataclasses.asdict(log_health(gateway))


def acknowledge(gateway: Gateway, alarm_id: str, user: str) -> str | None:
    """Acknowledge as ``user``; who the alarm engine has recorded (the first
    to acknowledge), or None if no such alarm is active. Blocking (the event
    log's commit): call it in an executor."""
    return gateway.alarms.acknowledge(alarm_id, user)


def readiness(gateway: Gateway, ready_when: str) -> tuple[bool, str]:
    """Ready means values worth serving, alarms recorded: the gateway runs,
    its event log is being written, and (any | all) strings have GOOD data.
    The reason names what holds it back."""
    if not gateway.is_ready:
        return False, "gateway is starting"
    log = log_health(gateway)
    if log.failing:
        return False, (
            f"event log failing since {_utc(log.since)}: {log.error}; {log.unwritten} alarm "
            "event(s) delivered but not yet written"
        )
    strings = list(gateway.store.snapshot.strings.values())
    if not strings:
        return False, "no strings configured"
    good = [s.name for s in strings if s.quality is Quality.GOOD]
    bad = [f"{s.name} {s.quality.name.lower()}" for s in strings if s.quality is not Quality.GOOD]
    if ready_when == "all" and bad:
        return False, "not every string has GOOD data: " + ", ".join(bad)
    if not good:
        return False, "no string has GOOD data yet: " + ", ".join(bad)
    return True, f"{len(good)} of {len(strings)} strings GOOD"


def events_json(events: list[AlarmEvent]) -> list[dict[str, Any]]:
    return [event_dict(e) for e in events]


def _utc(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
