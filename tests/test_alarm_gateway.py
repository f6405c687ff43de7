"""The alarm engine inside a running gateway: events reach every plugin's
``alarm_event`` hook after they are in the log, a stalled plugin does not hold
up the next alarm, and ``gateway.alarms`` offers active()/acknowledge()."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from btms_gateway.core import hookimpl
from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    @hookimpl
    def alarm_event(self, event):
        self.events.append(event)


class Staller:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list = []

    @hookimpl
    def alarm_event(self, event):
        self.release.wait(30)  # a consumer stuck on a dead SNMP receiver, say
        self.events.append(event)


def config(tmp_path: Path, *plugins: str) -> dict:
    data = plant_config(strings=2, ups=1, plugins={n: {} for n in plugins})
    data["gateway"]["data_dir"] = str(tmp_path)
    data["alarms"] = {
        "rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}},
        "startup_grace_s": 3600,
    }
    return data


async def test_events_reach_plugins_after_commit_and_a_stalled_one_holds_up_nothing(tmp_path):
    recorder, staller = Recorder(), Staller()
    plugins = {"recorder": recorder, "staller": staller}
    h = GatewayHarness(config(tmp_path, *plugins), extra_plugins=plugins, alarms=True)
    async with h:
        assert isinstance(h.gateway.alarms, AlarmEngine)
        for k in range(1, 4):  # three alarms in a row while the staller is stuck on the first
            h.publish("S1", make_reading(4, cell_voltage_v=2.25 + 0.1 * k, read_at=time.time()))
        await h.wait_until(
            lambda: len([e for e in recorder.events if e.kind is EventKind.RAISED]) >= 4,
            what="the recorder to receive every raised alarm",
        )
        raised = [e for e in recorder.events if e.kind is EventKind.RAISED]
        assert {e.alarm_id for e in raised} == {f"cell_voltage_high:S1:{i}" for i in range(1, 5)}
        log = EventLog(tmp_path / "events.sqlite")
        stored = {e.seq: e for e in log.events()}
        assert all(stored[e.seq] == e for e in recorder.events)  # emitted == committed
        assert staller.events == []  # still stuck, and nobody waited for it
        # plugins acknowledge through gateway.alarms
        assert h.gateway.alarms.acknowledge("cell_voltage_high:S1:1", "bms-operator")
        await h.wait_until(
            lambda: any(e.kind is EventKind.ACKNOWLEDGED for e in recorder.events),
            what="the acknowledgement event",
        )
        active = {a.alarm_id: a for a in h.gateway.alarms.active()}
        assert active["cell_voltage_high:S1:1"].acknowledged_by == "bms-operator"
        staller.release.set()
        await h.wait_until(
            lambda: [e.seq for e in staller.events] == [e.seq for e in recorder.events],
            what="the staller to catch up, in order, with nothing dropped",
        )
        h.publish("S1", None, Quality.OFFLINE)
        await h.wait_until(
            lambda: any(e.alarm_id == "string_comm_lost:S1" for e in recorder.events),
            what="communication lost",
        )
        log.close()


class ActiveRecorder:
    """Keeps each event with the active alarms delivered alongside it."""

    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def alarm_event(self, event, active):
        self.seen.append((event, active))


async def test_each_event_comes_with_the_alarms_active_after_its_commit(tmp_path):
    """``alarm_event(event, active)``: raised alarms are in the tuple, cleared
    ones gone, an acknowledgement shows who; every plugin gets the very same
    immutable tuple, built once per commit."""
    first, second = ActiveRecorder(), ActiveRecorder()
    plugins = {"first": first, "second": second}
    h = GatewayHarness(config(tmp_path, *plugins), extra_plugins=plugins, alarms=True)
    async with h:
        h.publish("S1", make_reading(4, cell_voltage_v=2.5, read_at=time.time()))
        await h.wait_until(lambda: len(first.seen) >= 4, what="four raised alarms")
        ids = {f"cell_voltage_high:S1:{i}" for i in range(1, 5)}
        _, active = first.seen[-1]
        assert isinstance(active, tuple)
        assert {a.alarm_id for a in active} == ids  # one commit: all four raised
        assert active == tuple(h.gateway.alarms.active())
        h.gateway.alarms.acknowledge("cell_voltage_high:S1:2", "noc")
        h.publish("S1", make_reading(4, cell_voltage_v=2.25, read_at=time.time()))
        await h.wait_until(
            lambda: sum(e.kind is EventKind.CLEARED for e, _ in first.seen) == 4,
            what="the four clears",
        )
        acked = next(a for e, a in first.seen if e.kind is EventKind.ACKNOWLEDGED)
        assert {a.alarm_id: a.acknowledged_by for a in acked}["cell_voltage_high:S1:2"] == "noc"
        assert first.seen[-1][1] == ()  # after the last clear nothing is active
        await h.wait_until(lambda: len(second.seen) == len(first.seen), what="the second plugin")
        assert all(a is b for (_, a), (_, b) in zip(first.seen, second.seen, strict=True))
