"""The MQTT plugin's parts without a broker: report by exception, the inbox
and the disk buffer (settings: test_mqtt_settings.py; the payloads as protoc
decodes them: test_mqtt_protoc.py)."""

from __future__ import annotations

import json
import random
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from btms_gateway.core.alarm_types import Severity
from btms_gateway.core.model import CellStatus, Quality, StringSnapshot
from btms_gateway.core.serialize import event_dict
from btms_gateway.kit.events import active_alarm, make_event
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.mqtt.buffer import EVENT, READING, DiskBuffer
from btms_gateway.plugins.mqtt.exception import Delta, ExceptionFilter, _moved
from btms_gateway.plugins.mqtt.quantities import (
    CELL,
    CELL_STRIDE,
    string_values,
    unslot,
)
from btms_gateway.plugins.mqtt.session import Inbox, MqttSession
from btms_gateway.plugins.mqtt.settings import MqttSettings
from conftest import wait_for

DEADBANDS = MqttSettings().deadbands()


def snapshot(reading: Any, quality: Quality = Quality.GOOD, name: str = "S1") -> StringSnapshot:
    return StringSnapshot(name, 1, "UPS1", 1, 1, "bus1", quality, reading, 1000.0)


# -- report by exception ---------------------------------------------------------------
def test_first_reading_reports_everything_then_only_what_moved_past_its_deadband() -> None:
    f = ExceptionFilter(DEADBANDS)
    r = make_reading(cells=3)
    first = f.update(snapshot(r))
    assert first is not None and first.full and first.rebirth
    assert len(first.values) == 14 + 3 * 6
    assert f.update(snapshot(replace(r, read_at=r.read_at + 1))) is None  # nothing moved
    # cell 2 voltage +1 mV: inside the 2 mV deadband; the string current +0.5 A: outside 0.1 A
    cells = list(r.cells)
    cells[1] = replace(cells[1], voltage_v=cells[1].voltage_v + 0.001)
    r2 = replace(r, cells=tuple(cells), current_a=r.current_a + 0.5)
    d = f.update(snapshot(r2))
    assert d is not None and not d.full and not d.rebirth
    assert d.values == [(3, r2.current_a)]
    # another +2 mV: 3 mV from the value last reported, so now it is reported
    cells[1] = replace(cells[1], voltage_v=cells[1].voltage_v + 0.002)
    d = f.update(snapshot(replace(r2, cells=tuple(cells))))
    assert d is not None and d.values == [(2 * CELL_STRIDE + 0, cells[1].voltage_v)]
    # a sensor lost: its voltage becomes None, reported whatever the deadband
    cells[0] = replace(cells[0], voltage_v=None)
    d = f.update(snapshot(replace(r2, cells=tuple(cells))))
    assert d is not None and (1 * CELL_STRIDE, None) in d.values


def test_quality_change_reports_every_value_and_a_new_cell_count_asks_for_a_birth() -> None:
    f = ExceptionFilter(DEADBANDS)
    r = make_reading(cells=2)
    f.update(snapshot(r))
    stale = f.update(snapshot(r, Quality.STALE))
    assert stale is not None and stale.full and stale.quality_changed
    assert dict(stale.values)[0] == "stale"
    assert f.update(snapshot(r, Quality.STALE)) is None
    bigger = make_reading(cells=3)
    d = f.update(snapshot(bigger, Quality.STALE))
    assert d is not None and d.rebirth
    assert {s for s, _ in f.current("S1")} >= {3 * CELL_STRIDE + q for q in range(6)}
    smaller = make_reading(cells=1)
    d = f.update(snapshot(smaller, Quality.STALE))
    assert d is not None and d.rebirth
    assert max(s for s, _ in f.current("S1")) < 2 * CELL_STRIDE  # cells 2, 3 forgotten


def test_without_report_by_exception_every_reading_is_a_full_report() -> None:
    f = ExceptionFilter(DEADBANDS, by_exception=False)
    r = make_reading(cells=2)
    f.update(snapshot(r))
    d = f.update(snapshot(r))
    assert d is not None and d.full and len(d.values) == 14 + 12


def test_delta_survives_its_json_form() -> None:
    d = Delta("S1", 3, Quality.STALE, 1, 2, [(0, "stale"), (17, 2.25), (18, None)], True, False)
    d.quality_changed = True
    back = Delta.from_json(json.loads(json.dumps(d.to_json())), 7)
    assert back == replace(d, rid=7)


def reference_reports(readings: list[Any]) -> list[list[tuple[int, Any]] | None]:
    """Report by exception done the plain way: every slot of every reading held
    against the value last reported (no shortcut for what did not change)."""
    reported: dict[int, Any] = {}
    out: list[list[tuple[int, Any]] | None] = []
    for r in readings:
        slots = dict(enumerate(string_values(snapshot(r), r.soh_pct)))
        for c in r.cells:
            for q, quantity in enumerate(CELL):
                value = getattr(c, quantity.key)
                slots[c.index * CELL_STRIDE + q] = int(value) if q == len(CELL) - 1 else value
        bands = {s: DEADBANDS.get(unslot(s)[1].deadband or "") for s in slots}
        changes = [(s, v) for s, v in sorted(slots.items()) if _moved(v, reported.get(s), bands[s])]
        reported.update(changes)
        out.append(changes or None)
    return out


def random_walk(steps: int, seed: int) -> list[Any]:
    """Readings of one string whose cells drift in small and large steps, lose
    and regain sensors, change status bits and SOH, now and then not at all,
    and once in a while come in another order."""
    rng = random.Random(seed)
    r = make_reading(cells=12)
    out = [r]
    for _ in range(steps):
        cells = list(r.cells)
        for _ in range(rng.choice((0, 0, 1, 2, 5))):
            i = rng.randrange(len(cells))
            key = rng.choice([q.key for q in CELL])
            value: Any
            if key == "status":
                value = CellStatus(rng.randrange(4))
            elif rng.random() < 0.05:
                value = None
            else:
                step = rng.choice((0.001, 0.002, 0.003, 0.05, 0.2, 1.0)) * rng.choice((-1, 1))
                value = round((getattr(cells[i], key) or 2.0) + step, 3)
            cells[i] = replace(cells[i], **{key: value})
        if rng.random() < 0.05:
            rng.shuffle(cells)
        current = r.current_a + rng.choice((0.0, 0.05, 0.3)) * rng.choice((-1, 1))
        r = replace(r, cells=tuple(cells), current_a=round(current, 2), read_at=r.read_at + 1)
        out.append(r)
    return out


def test_filter_reports_what_a_plain_comparison_of_every_slot_reports() -> None:
    readings = random_walk(600, seed=28)
    f = ExceptionFilter(DEADBANDS)
    expected = reference_reports(readings)
    for k, (r, want) in enumerate(zip(readings, expected, strict=True)):
        d = f.update(snapshot(r))
        got = None if d is None else sorted(d.values, key=lambda sv: sv[0])
        assert got == want, f"reading {k}"
        for s, v in got or []:
            if s % CELL_STRIDE == len(CELL) - 1 and s >= CELL_STRIDE:
                assert type(v) is int  # a status is a plain number, never the flag
    assert sum(x is not None for x in expected) > 300  # the walk did report often
    assert sum(x is None for x in expected) > 50  # and stayed within deadbands often


# -- the session thread's inbox ---------------------------------------------------------
def test_inbox_wakes_the_thread_per_batch_of_readings() -> None:
    latest: dict[str, StringSnapshot] = {}
    inbox = Inbox(latest, batch_s=0.25)
    assert not inbox.due and inbox.wait_s(1.0) == 1.0
    s1 = snapshot(make_reading(cells=1), name="S1")
    inbox.reading(s1)
    assert latest == {"S1": s1}  # at once: the snapshot it replaces is freed on the loop
    assert inbox.due and inbox.wait_s(1.0) == 0  # the first reading after a quiet spell
    control, events, readings = inbox.take()
    assert not control and not events and len(readings) == 1
    assert not inbox.due and inbox.wait_s(1.0) == 0.25  # more are expected: a batch
    inbox.reading(snapshot(make_reading(cells=1), name="S2"))
    inbox.reading(snapshot(make_reading(cells=1), name="S3"))
    assert not inbox.due  # readings keep coming: they wait for the batch
    inbox.event({"kind": "raised"}, ())
    assert inbox.due  # an event does not wait
    control, events, readings = inbox.take()
    assert [s.name for s in readings] == ["S2", "S3"] and len(events) == 1
    assert inbox.take() == ([], [], [])  # a pass without readings ends the batch
    inbox.reading(snapshot(make_reading(cells=1), name="S1"))
    assert inbox.due
    inbox.take()
    inbox.post(("spb", "ended", 1, "gone"))
    assert inbox.due  # paho's session news wakes it
    inbox.reading(snapshot(make_reading(cells=1), name="S2"))
    inbox.take()  # readings are coming: a batch
    # a string polled faster than the batch ends it: both readings are taken
    first, second, third = (make_reading(cells=1, read_at=t) for t in (1.0, 2.0, 3.0))
    inbox.reading(snapshot(first, name="S1"))
    assert not inbox.due
    inbox.reading(snapshot(second, name="S1"))
    assert inbox.due
    assert [s.reading for s in inbox.take()[2]] == [first, second]
    assert inbox.coalesced == 0
    # a third before the thread took them: it is behind, the newest wins
    for r in (first, second, third):
        inbox.reading(snapshot(r, name="S1"))
    assert [s.reading for s in inbox.take()[2]] == [first, third]
    assert inbox.coalesced == 1
    inbox.close()  # the thread has ended (stopped, or failed): offers are not errors
    inbox.event({"kind": "raised"}, ())
    inbox.wake()


def test_a_batch_goes_to_the_buffer_in_one_transaction(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port where no broker listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = MqttSettings.model_validate({"host": "127.0.0.1", "port": port})
    svc = MqttSession(settings, gateway_name="gw", data_dir=tmp_path)
    puts: list[list[str]] = []
    put = svc.buffer.put
    svc.buffer.put = lambda rows: puts.append([kind for _, _, kind, _ in rows]) or put(rows)
    for name in ("S1", "S2", "S3", "S4"):  # queued before the thread starts: one batch
        svc.offer_reading(snapshot(make_reading(cells=2), name=name))
    for seq in (1, 2):
        svc.offer_event(
            {"seq": seq, "kind": "raised", "alarm_id": f"a{seq}", "severity": "alarm"}, ()
        )
    svc.start()
    try:
        wait_for(lambda: svc.buffer.pending() == 6, 10, "the batch in the buffer")
    finally:
        assert svc.stop(5)
    assert puts == [[EVENT, EVENT], [READING] * 4]


def test_an_event_record_counts_the_active_alarms_delivered_with_it(tmp_path: Path) -> None:
    """``active`` in an event record counts the tuple the gateway delivers with
    the event (the alarms active after its commit), not alarms kept from the
    events: here the session saw none of the raises before, and one commit's
    two events share one tuple."""
    with socket.socket() as s:  # a port where no broker listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = MqttSettings.model_validate({"host": "127.0.0.1", "port": port})
    svc = MqttSession(settings, gateway_name="gw", data_dir=tmp_path)
    bodies: list[dict[str, Any]] = []
    put = svc.buffer.put
    svc.buffer.put = lambda rows: bodies.extend(json.loads(r[3]) for r in rows) or put(rows)
    critical = make_event(rule="cell_voltage_high", severity=Severity.CRITICAL, cell=1)
    warning = make_event(rule="cell_temperature_high", severity=Severity.WARNING, cell=2)
    raised = make_event(rule="cell_voltage_low", severity=Severity.ALARM, cell=3)
    after = (
        active_alarm(critical),
        active_alarm(warning, acknowledged_by="op"),
        active_alarm(raised),
    )
    for event in (raised, make_event("acknowledged", rule="cell_temperature_high", cell=2)):
        svc.offer_event(event_dict(event), after)  # one commit: one tuple
    cleared = make_event("cleared", severity=Severity.CRITICAL, cell=1)
    svc.offer_event(event_dict(cleared), after[1:])
    svc.start()
    try:
        wait_for(lambda: svc.buffer.pending() == 3, 10, "the events in the buffer")
    finally:
        assert svc.stop(5)
    counts = {"total": 3, "critical": 1, "alarm": 1, "warning": 1, "unacknowledged": 2}
    assert [b["active"] for b in bodies] == [
        counts,
        counts,
        {"total": 2, "critical": 0, "alarm": 1, "warning": 1, "unacknowledged": 1},
    ]
    assert svc.plant.active == bodies[-1]["active"]  # what the next Alarms birth carries


# -- the disk buffer ---------------------------------------------------------------------
def test_buffer_drops_the_oldest_readings_past_its_bound_never_events(tmp_path: Path) -> None:
    path = tmp_path / "mqtt" / "buffer.sqlite"
    buf = DiskBuffer(path, max_bytes=15_000)  # 10 events and 5 readings
    body = "x" * 1000
    rows = []
    for i in range(30):
        kind = EVENT if i % 3 == 0 else READING
        rows.append((buf.next_rid(), "spb", kind, body))
    for row in rows:
        buf.put([row])
    assert buf.bytes <= 15_000
    kept = buf.head("spb", 100)
    assert [r.rid for r in kept if r.kind == EVENT] == [r[0] for r in rows if r[2] == EVENT]
    assert buf.dropped == 15 and len(kept) == 15
    readings = [r.rid for r in kept if r.kind == READING]
    assert readings == [r[0] for r in rows if r[2] == READING][-5:]  # the newest
    # past the bound with events only: they stay, over the bound
    for _ in range(20):
        buf.put([(buf.next_rid(), "spb", EVENT, body)])
    assert buf.pending(kind=EVENT) == 30
    top = kept[-1].rid
    buf.close()
    again = DiskBuffer(path, max_bytes=15_000)  # a restart: the count and the order go on
    assert again.dropped == buf.dropped
    assert again.next_rid() > top + 20
    assert again.pending(kind=EVENT) == 30
    again.close()


def test_bdseq_counts_across_restarts_and_wraps_at_256(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = DiskBuffer(path, 1 << 20)
    assert [buf.next_bdseq() for _ in range(3)] == [0, 1, 2]
    buf.close()
    buf = DiskBuffer(path, 1 << 20)
    assert buf.next_bdseq() == 3
    seen = [buf.next_bdseq() for _ in range(253)]
    assert seen[-1] == 0 and seen[-2] == 255
    buf.close()
