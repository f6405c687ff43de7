"""Shared helpers of the alarm tests (no tests here): a gateway polling one
simulated string with the alarm engine on, a plugin recording the alarm
events it is given, and a bounded wait for a cell value to be evaluated."""

from __future__ import annotations

from pathlib import Path

from btms_gateway.core import hookimpl
from btms_gateway.core.alarm_types import AlarmEvent, EventKind
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import PlantSnapshot, Quality, StringAlarm
from btms_gateway.kit import synthetic as sy
from btms_gateway.kit.testing import GatewayHarness, plant_config


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlarmEvent] = []

    @hookimpl
    def alarm_event(self, event):
        self.events.append(event)

    def of(self, alarm_id: str) -> list[EventKind]:
        return [e.kind for e in self.events if e.alarm_id == alarm_id]


def harness(tmp_path: Path, rules: dict, **alarms: object) -> tuple[GatewayHarness, Recorder]:
    bus = {"name": "bus1", "port": "/placeholder", "baudrate": 115200, "timeout_s": 0.15}
    data = plant_config(
        strings=1, ups=1, buses=[bus], plugins={"rec": {}}, data_dir=str(tmp_path),
        poll_interval_s=0.2, offline_after_failures=2,
    )  # fmt: skip
    data["alarms"] = {"rules": rules, **alarms}
    recorder = Recorder()
    h = GatewayHarness(data, simulate=True, alarms=True, extra_plugins={"rec": recorder})
    return h, recorder


async def show(h: GatewayHarness, cell: int, field: str, value: float) -> None:
    """Set a cell in the simulator and wait until the gateway has evaluated a
    poll that carries it (the store is updated in the same call that
    evaluates alarms), then one more poll, so the value was seen at least twice."""
    sim, slave = h.sim_for("S1")
    sim.set_cell(slave, cell, **{field: value})

    def read_at_with_value() -> float | None:
        r = h.gateway.store.string("S1").reading
        return r.read_at if r is not None and getattr(r.cells[cell - 1], field) == value else None

    first = await h.wait_until(read_at_with_value, what=f"cell {cell} {field} = {value}")
    await h.wait_until(
        lambda: (read_at_with_value() or 0) > first, what=f"a second poll with {field} = {value}"
    )


class Rig:
    """One engine + log + the events it emitted, with a plant of strings A (and B)."""

    def __init__(self, path: Path, settings: AlarmsSection, names: tuple[str, ...] = ("A",)):
        self.path = path
        self.settings = settings
        self.log = EventLog(path)
        self.events = sy.Emitted()
        self.engine = AlarmEngine(settings, self.log, self.events)
        self.plant: PlantSnapshot = sy.plant(
            *(sy.string(n, None, quality=Quality.OFFLINE, index=i + 1) for i, n in enumerate(names))
        )
        self.engine.restore(self.plant)

    def feed(self, at: float, name: str = "A", quality: Quality = Quality.GOOD, **kw: object):
        alarms = kw.pop("alarms", StringAlarm.NONE)
        current = kw.pop("current", 0.5)
        r = sy.reading(at, sy.cells(**kw), alarms=alarms, current=current)  # type: ignore[arg-type]
        self.publish(name, r, quality, changed_at=0.0)

    def publish(self, name: str, r, quality: Quality, changed_at: float) -> None:
        old = self.plant.strings[name]
        s = sy.string(name, r, quality=quality, index=old.index, changed_at=changed_at)
        self.plant = sy.with_string(self.plant, s)
        self.engine.on_string(s, self.plant)

    def kinds(self, alarm_id: str) -> list[EventKind]:
        return [e.kind for e in self.events if e.alarm_id == alarm_id]


def settings(**rules: dict) -> AlarmsSection:
    return AlarmsSection.model_validate({"rules": rules, "baseline_readings": 3})
