"""Alarms end to end: the BM-SM simulator on a pseudo-terminal, the real RTU
poller and engine, the alarm engine and its log, and a plugin receiving the
events through the ``alarm_event`` hook."""

from __future__ import annotations

import time

import pytest
from alarm_support import harness, show
from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms import baseline
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_voltage_crossing_raises_once_after_on_delay_wobble_is_silent_one_clear(tmp_path):
    rule = {"limit": 2.40, "hysteresis": 0.05, "on_delay_s": 1.0, "off_delay_s": 0.5}
    h, rec = harness(tmp_path, {"cell_voltage_high": rule})
    aid = "cell_voltage_high:S1:3"
    async with h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        crossed_at = time.time()
        sim.set_cell(slave, 3, voltage_v=2.45)
        await h.wait_until(lambda: rec.of(aid), what="the raise")
        [raised] = [e for e in rec.events if e.alarm_id == aid]
        assert raised.at >= crossed_at + 1.0  # not before the on-delay
        assert (raised.value, raised.limit, raised.unit) == (2.45, 2.4, "V")
        for v in (2.38, 2.36, 2.399, 2.351, 2.39):  # inside the band 2.35..2.40
            await show(h, 3, "voltage_v", v)
        h.gateway.alarms.tick(time.time() + 5)  # any off-delay would have run out by now
        assert rec.of(aid) == [EventKind.RAISED]
        await show(h, 3, "voltage_v", 2.30)
        await h.wait_until(lambda: len(rec.of(aid)) == 2, what="the clear")
        assert rec.of(aid) == [EventKind.RAISED, EventKind.CLEARED]
        assert [e.alarm_id for e in rec.events] == [aid, aid]  # nothing else was raised
    log = EventLog(tmp_path / "events.sqlite")
    assert [(e.seq, e.kind) for e in log.events()] == [(e.seq, e.kind) for e in rec.events]
    log.close()


async def test_resistance_drift_warns_then_alarms(tmp_path):
    fast = {"on_delay_s": 0.3, "off_delay_s": 0.3}
    h, rec = harness(
        tmp_path,
        {"cell_resistance_warning": fast, "cell_resistance_alarm": fast},
        baseline_readings=3,
    )
    warn, alarm = "cell_resistance_warning:S1:2", "cell_resistance_alarm:S1:2"
    async with h:
        await h.wait_quality(Quality.GOOD)
        log = EventLog(tmp_path / "events.sqlite")  # a second connection, as the CLI has

        def learned() -> float | None:
            rows = [r for r in baseline.load(log.db, "S1") if r.cell == 2]
            return rows[0].mohm if rows else None

        base = await h.wait_until(learned, what="the baseline of cell 2 to be learned")
        await show(h, 2, "resistance_mohm", round(base * 1.30, 3))  # +30 %: warning only
        await h.wait_until(lambda: rec.of(warn), what="the warning")
        await show(h, 2, "resistance_mohm", round(base * 1.30, 3))
        assert rec.of(alarm) == []
        await show(h, 2, "resistance_mohm", round(base * 1.60, 3))  # +60 %: alarm
        await h.wait_until(lambda: rec.of(alarm), what="the alarm")
        assert rec.of(warn) == [EventKind.RAISED]
        first = {e.alarm_id: e.seq for e in rec.events}
        assert first[warn] < first[alarm]
        assert [e.severity.name for e in rec.events] == ["WARNING", "ALARM"]
        log.close()


async def test_communication_loss_raises_and_clears(tmp_path):
    h, rec = harness(tmp_path, {})
    aid, ups = "string_comm_lost:S1", "ups_string_error:UPS1"
    async with h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        sim.vanish(slave, seconds=60)
        await h.wait_quality(Quality.OFFLINE)
        await h.wait_until(lambda: rec.of(aid) and rec.of(ups), what="comm lost + UPS error")
        active = {a.alarm_id for a in h.gateway.alarms.active()}
        assert {aid, ups} <= active
        sim.restore(slave)
        await h.wait_quality(Quality.GOOD)
        await h.wait_until(lambda: len(rec.of(aid)) == 2, what="comm lost to clear")
        await h.wait_until(lambda: len(rec.of(ups)) == 2, what="the UPS error to clear")
        assert rec.of(aid) == [EventKind.RAISED, EventKind.CLEARED]
        assert h.gateway.alarms.active() == []


async def test_gateway_restart_restores_active_alarms_without_raising_them_again(tmp_path):
    rule = {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}
    aid = "cell_voltage_high:S1:3"
    seqs = []
    for run in range(2):
        h, rec = harness(tmp_path, rule)
        sim, slave = h.sim_for("S1")  # the simulator runs before the gateway polls
        sim.set_cell(slave, 3, voltage_v=2.45)
        async with h:
            await h.wait_quality(Quality.GOOD)
            if run == 0:
                await h.wait_until(lambda r=rec: r.of(aid), what="the raise")
                seqs = [e.seq for e in rec.events]
                continue
            assert aid in {a.alarm_id for a in h.gateway.alarms.active()}  # restored
            await show(h, 3, "voltage_v", 2.45)  # polled, still high: nothing new
            assert rec.events == []
            await show(h, 3, "voltage_v", 2.30)
            await h.wait_until(lambda r=rec: r.of(aid), what="the clear")
            [cleared] = rec.events
            assert cleared.kind is EventKind.CLEARED and cleared.seq == seqs[-1] + 1
