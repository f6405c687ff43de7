"""The JSON the API and the live stream serve, built from the gateway's own
objects with core.serialize, so the web, exports and JSON-lines agree.

Everything here runs on the event loop and only reads: the plant snapshot is
immutable, counters are plain numbers the engine (same loop) updates.
"""

from __future__ import annotations

import time
from typing import Any

from btms_gateway.core.alarm_types import AlarmEvent
from btms_gateway.core.model import Quality
from btms_gateway.core.serialize import event_dict, plant_dict, string_dict, ups_dict
from btms_gateway.core.version import __version__

#: display bands when the alarm engine is off or a rule is disabled (2 V lead-acid
#: per cell, scaled by the block type like the rules themselves)
CELL_RULES = {
    "voltage_v": ("cell_voltage_low", "cell_voltage_high"),
    "temperature_c": (None, "cell_temperature_high"),
    "soc_pct": ("cell_soc_low", None),
    "soh_pct": ("cell_soh_low", None),
    "resistance_pct": ("cell_resistance_warning", "cell_resistance_alarm"),
}


def gateway_info(gateway: Any) -> dict[str, Any]:
    return {
        "name": gateway.settings.gateway.name,
        "version": __version__,
        "uptime_s": round(gateway.uptime_s(), 3),
        "demo": bool(getattr(gateway, "demo", False)),
        "alarm_engine": alarm_engine_present(gateway),
        "event_log": event_log(gateway) is not None,
    }


def alarm_engine_present(gateway: Any) -> bool:
    return gateway.event_log is not None


def event_log(gateway: Any) -> Any | None:
    """The gateway's SQLite event log if it has one (``gateway.event_log`` or the
    alarm engine's ``log``); None means only this plugin's in-memory ring."""
    log = gateway.event_log
    return log if log is not None and hasattr(log, "events") else None


def plant(gateway: Any) -> dict[str, Any]:
    out = plant_dict(gateway.store.snapshot, cells=False)
    out["gateway"] = gateway_info(gateway)
    return out


def ups(gateway: Any, name: str) -> dict[str, Any] | None:
    snap = gateway.store.snapshot
    u = snap.ups.get(name)
    if u is None:
        return None
    out = ups_dict(u)
    out["string_details"] = [string_dict(snap.strings[s], False, snap.taken_at) for s in u.strings]
    return out


def string(gateway: Any, name: str, cells: bool = True) -> dict[str, Any] | None:
    snap = gateway.store.snapshot
    s = snap.strings.get(name)
    if s is None:
        return None
    out = string_dict(s, cells, time.time())
    out["ups_index"] = s.ups_index
    if cells:
        count = s.reading.cell_count if s.reading else 0
        out["limits"] = cell_limits(gateway, name)
        out["baseline_mohm"] = baselines(gateway, name, count)
    return out


def cell_limits(gateway: Any, name: str) -> dict[str, Any]:
    """The limits the alarm engine applies to this string's cells (overrides and
    block type resolved), so the chart marks exactly what would alarm."""
    from btms_gateway.core.alarms.rules import resolve

    settings = gateway.settings.alarms
    rules = resolve(settings, name)
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


def baselines(gateway: Any, name: str, count: int) -> list[float | None]:
    """Per-cell resistance baselines (index 0 = cell 1); None where a cell has
    none yet (still learning, or no alarm engine)."""
    values = gateway.alarms.baselines(name)
    return [values.get(i) for i in range(1, count + 1)]


def buses(gateway: Any) -> list[dict[str, Any]]:
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


def active_alarms(gateway: Any) -> list[dict[str, Any]]:
    return [event_dict(a) for a in gateway.alarms.active()]


def readiness(gateway: Any, ready_when: str) -> tuple[bool, str]:
    """Ready means values worth serving: the gateway runs and (any | all)
    strings have GOOD data. The reason names the strings holding it back."""
    if not gateway.ready.is_set():
        return False, "gateway is starting"
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
