"""Synthetic plant snapshots for the alarm tests and benchmark.

The alarm engine consumes only ``core.model`` objects, so its unit tests and
bench build those directly (no serial link needed); the end-to-end tests with
the simulator live beside them and use the real engine. Test code, so it sits
in the kit rather than in core.
"""

from __future__ import annotations

from dataclasses import replace

from btms_gateway.core.aggregate import aggregate_ups
from btms_gateway.core.alarm_types import ActiveAlarms, AlarmEvent
from btms_gateway.core.model import (
    CellReading,
    PlantSnapshot,
    Quality,
    StringAlarm,
    StringReading,
    StringSnapshot,
    StringState,
)


def cells(
    n: int = 120,
    volts: float = 2.25,
    mohm: float = 0.5,
    *,
    v: dict[int, float | None] | None = None,
    r: dict[int, float | None] | None = None,
    t: dict[int, float | None] | None = None,
    soc: dict[int, float | None] | None = None,
    soh: dict[int, float | None] | None = None,
) -> tuple[CellReading, ...]:
    """``n`` healthy cells; ``v``/``r``/``t``/``soc``/``soh`` override single
    cells' values by 1-based index (None: no sensor)."""
    v, r, t, soc, soh = v or {}, r or {}, t or {}, soc or {}, soh or {}
    return tuple(
        CellReading(
            index=i,
            voltage_v=v.get(i, volts),
            resistance_mohm=r.get(i, mohm),
            temperature_c=t.get(i, 25.0),
            soc_pct=soc.get(i, 100.0),
            soh_pct=soh.get(i, 100.0),
        )
        for i in range(1, n + 1)
    )


def reading(
    at: float,
    cell_readings: tuple[CellReading, ...] | None = None,
    *,
    current: float = 0.5,
    soc: float = 100.0,
    alarms: StringAlarm = StringAlarm.NONE,
    voltage: float | None = None,
) -> StringReading:
    cs = cells() if cell_readings is None else cell_readings
    v = sum(c.voltage_v or 0.0 for c in cs) if voltage is None else voltage
    return StringReading(
        voltage_v=round(v, 2), current_a=current, soc_pct=soc, balance_pct=0.0,
        state=StringState.FLOAT_CHARGE, alarms=alarms, cell_count=len(cs),
        ambient_temperature_c=None, ambient_humidity_pct=None, relay_closed=None,
        aux_input_on=None, cells=cs, read_at=at,
    )  # fmt: skip


def string(
    name: str,
    r: StringReading | None,
    *,
    quality: Quality = Quality.GOOD,
    ups: str | None = "UPS1",
    index: int = 1,
    changed_at: float = 0.0,
) -> StringSnapshot:
    return StringSnapshot(
        name=name, index=index, ups=ups, ups_index=1 if ups else 0, slave_id=index,
        bus="bus1", quality=quality, reading=r, changed_at=changed_at,
    )  # fmt: skip


def plant(*strings: StringSnapshot, taken_at: float = 0.0) -> PlantSnapshot:
    by_ups: dict[str, list[StringSnapshot]] = {}
    for s in strings:
        if s.ups:
            by_ups.setdefault(s.ups, []).append(s)
    ups = {u: aggregate_ups(u, i + 1, members) for i, (u, members) in enumerate(by_ups.items())}
    return PlantSnapshot(strings={s.name: s for s in strings}, ups=ups, taken_at=taken_at)


def with_string(p: PlantSnapshot, s: StringSnapshot) -> PlantSnapshot:
    """The plant after one string was published (what the store hands the engine)."""
    members = [p.strings[n] if n != s.name else s for n in p.strings]
    return replace(plant(*members, taken_at=p.taken_at), taken_at=p.taken_at)


class Emitted(list[AlarmEvent]):
    """An alarm engine's ``emit`` for a test: the events in order, and the
    active alarms delivered with the newest one."""

    active: ActiveAlarms = ()

    def __call__(self, event: AlarmEvent, active: ActiveAlarms) -> None:
        self.append(event)
        self.active = active
