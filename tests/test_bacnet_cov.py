"""COV, quality and alarms on the wire: what a BMS subscribed to the device sees.

rusty-bacnet (independent) and bacpypes3's client subscribe; values set in
the BM-SM simulators, strings that stop answering and come back, and alarm
events must reach them as notifications with the right present value and
status flags.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from bacnet_support import PI, _by_name, device, next_for, poll, rid, rusty, sim, truth
from bacpypes3.apdu import SimpleAckPDU, SubscribeCOVPropertyRequest
from bacpypes3.pdu import Address
from bacpypes3.service.cov import SubscriptionContextManager
from btms_gateway.core.alarm_types import (
    ActiveAlarm,
    AlarmEvent,
    EventKind,
    ObjectPath,
    Severity,
)
from btms_gateway.core.model import CellStatus, Quality, StringAlarm, StringState
from btms_gateway.kit.bacnet_client import make_client, oid
from btms_gateway.kit.events import active_alarm
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness
from btms_gateway.plugins.bacnet.plugin import service

IN_ALARM, FAULT = 0x80, 0x40


def flags(values: dict[str, Any]) -> int:
    return values["STATUS_FLAGS"]["data"][0]


def set_string(h: GatewayHarness, name: str, **values: Any) -> None:
    simulator, slave = sim(h, name)
    simulator.set_string(slave, **values)


def silence(h: GatewayHarness, name: str, silent: bool = True) -> None:
    """The string master stops answering (or answers again)."""
    simulator, slave = sim(h, name)
    (simulator.vanish if silent else simulator.restore)(slave)


def served(h: GatewayHarness, name: str, attr: str = "presentValue") -> Any:
    svc = service(h.gateway)
    point = next(p for p in svc.points if p.name == name)
    return getattr(svc.objects[point.oid], attr)


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_cov_on_value_past_increment_and_on_quality_changes() -> None:
    async with device() as (h, address), rusty() as c:
        volts = rid(*_by_name(h)["S1.voltage"].oid)
        base = truth(h, "S1").voltage_v
        it = await c.cov_notifications()
        await c.subscribe_cov(address, 11, volts, True, 60)
        first = await next_for(it, volts)
        assert (first["PRESENT_VALUE"], flags(first)) == (pytest.approx(base), 0)

        # 0.2 V is below the 0.5 V increment: served, but not notified
        set_string(h, "S1", voltage_v=round(base + 0.2, 2))
        await h.wait_until(lambda: served(h, "S1.voltage") == pytest.approx(base + 0.2))
        set_string(h, "S1", voltage_v=round(base + 1.0, 2))
        moved = await next_for(it, volts)
        assert moved["PRESENT_VALUE"] == pytest.approx(base + 1.0)

        silence(h, "S1")  # polls fail: STALE first, OFFLINE after N failures
        stale = await next_for(it, volts, timeout=10)
        assert flags(stale) == FAULT
        assert stale["PRESENT_VALUE"] == pytest.approx(base + 1.0)  # last good value kept
        offline = await next_for(it, volts, timeout=10)  # reliability changed: notified too
        assert flags(offline) == FAULT
        assert (await c.read_property(address, volts, PI.RELIABILITY)).value == 12

        silence(h, "S1", False)
        recovered = await next_for(it, volts, timeout=10)
        assert flags(recovered) == 0
        assert (await c.read_property(address, volts, PI.RELIABILITY)).value == 0


async def test_stale_string_reads_unreliable_other() -> None:
    # OFFLINE only after 1,000 failed polls: the string stays STALE here
    async with device(offline_after=1000) as (h, address), rusty() as c:
        cell = rid(*_by_name(h)["S2.cell005.temperature"].oid)
        it = await c.cov_notifications()
        await c.subscribe_cov(address, 12, cell, False, 60)  # unconfirmed
        assert flags(await next_for(it, cell)) == 0
        silence(h, "S2")
        assert flags(await next_for(it, cell, timeout=10)) == FAULT
        assert h.gateway.store.string("S2").quality is Quality.STALE
        assert (await c.read_property(address, cell, PI.RELIABILITY)).value == 7
        silence(h, "S2", False)
        await h.wait_quality(Quality.GOOD, "S2")
        assert (await c.read_property(address, cell, PI.RELIABILITY)).value == 0


async def test_active_alarm_sets_in_alarm_and_clearing_resets_it() -> None:
    async with device() as (h, address), rusty() as c:
        cell = rid(*_by_name(h)["S1.cell003.voltage"].oid)
        bit = rid(*_by_name(h)["S1.alarm_voltage_high"].oid)
        it = await c.cov_notifications()
        await c.subscribe_cov(address, 13, cell, True, 60)
        await c.subscribe_cov(address, 14, bit, True, 60)
        assert flags(await next_for(it, cell)) == 0
        assert flags(await next_for(it, bit)) == 0
        path = ObjectPath(ups="UPS1", string="S1", cell=3)
        # each event with the alarms active after it, as the alarm engine delivers them
        high = _event(1, EventKind.RAISED, "cell_voltage_high:S1:3", "cell_voltage_high", path)
        h.gateway.emit(high, active=(active_alarm(high),))
        assert flags(await next_for(it, cell)) == IN_ALARM
        assert (await c.read_property(address, cell, PI.EVENT_STATE)).value == 3  # high-limit
        bmsm = _event(2, EventKind.RAISED, "bmsm_voltage_high:S1", "bmsm_voltage_high",
                      ObjectPath(ups="UPS1", string="S1"))  # fmt: skip
        h.gateway.emit(bmsm, active=(active_alarm(high), active_alarm(bmsm)))
        assert flags(await next_for(it, bit)) == IN_ALARM
        h.gateway.emit(replace(high, seq=3, kind=EventKind.CLEARED), active=(active_alarm(bmsm),))
        assert flags(await next_for(it, cell)) == 0
        assert (await c.read_property(address, cell, PI.EVENT_STATE)).value == 0
        assert (await c.read_property(address, bit, PI.EVENT_STATE)).value == 2  # offnormal


async def test_objects_show_the_active_alarms_delivered_with_each_event() -> None:
    """Event state follows the tuple delivered with each alarm event (the alarms
    active after its commit), not the events: an acknowledgement brings an
    alarm whose raise the plugin never saw (dropped from its queue, say), and
    the next commit's tuple, which no longer holds it, clears it."""
    async with device() as (h, address), rusty() as c:
        cell = rid(*_by_name(h)["S1.cell003.voltage"].oid)
        it = await c.cov_notifications()
        await c.subscribe_cov(address, 15, cell, True, 60)
        assert flags(await next_for(it, cell)) == 0
        path = ObjectPath(ups="UPS1", string="S1", cell=3)
        high = _event(1, EventKind.RAISED, "cell_voltage_high:S1:3", "cell_voltage_high", path)
        acked = replace(high, seq=2, kind=EventKind.ACKNOWLEDGED, by="noc")
        h.gateway.emit(acked, active=(active_alarm(high, "noc"),))
        assert flags(await next_for(it, cell)) == IN_ALARM
        assert (await c.read_property(address, cell, PI.EVENT_STATE)).value == 3  # high-limit
        soc = _event(3, EventKind.RAISED, "string_soc_low:S2", "string_soc_low",
                     ObjectPath(ups="UPS2", string="S2"))  # fmt: skip
        h.gateway.emit(soc, active=(active_alarm(soc),))
        assert flags(await next_for(it, cell)) == 0
        assert (await c.read_property(address, cell, PI.EVENT_STATE)).value == 0


async def test_alarms_active_at_start_up_show_at_once() -> None:
    active = ActiveAlarm(
        alarm_id="string_soc_low:S2", rule="string_soc_low", severity=Severity.WARNING,
        path=ObjectPath(ups="UPS2", string="S2"), value=40.0, limit=50.0, unit="%",
        message="test", raised_at=time.time(),
    )  # fmt: skip
    async with device(active_alarms=(active,)) as (h, address), rusty() as c:
        soc = rid(*_by_name(h)["S2.soc"].oid)
        flags_value = await c.read_property(address, soc, PI.STATUS_FLAGS)
        assert flags_value.value["data"][0] == IN_ALARM
        assert (await c.read_property(address, soc, PI.EVENT_STATE)).value == 4  # low-limit


def _event(seq: int, kind: EventKind, alarm_id: str, rule: str, path: ObjectPath) -> AlarmEvent:
    return AlarmEvent(seq=seq, kind=kind, alarm_id=alarm_id, rule=rule,
                      severity=Severity.ALARM, path=path, value=2.5, limit=2.4, unit="V",
                      message="test", at=time.time())  # fmt: skip


async def test_bacpypes3_unconfirmed_cov_on_multistate_and_binary_inputs() -> None:
    async with device() as (h, address):
        app = make_client(free_udp_port())
        points = _by_name(h)
        try:
            state = oid(*points["S1.state"].oid)
            alarm = oid(*points["S1.alarm_soc_low"].oid)
            async with (
                app.change_of_value(Address(address), state, None, False, 30) as state_cov,
                app.change_of_value(Address(address), alarm, None, False, 30) as alarm_cov,
            ):
                assert await _value(state_cov, "present-value") == 3  # discharge
                assert await _value(alarm_cov, "present-value") == 0
                set_string(h, "S1", state=int(StringState.IDLE), alarms=int(StringAlarm.SOC_LOW))
                assert await _value(state_cov, "present-value") == 4  # idle
                assert await _value(alarm_cov, "present-value") == 1  # active
        finally:
            app.close()


async def _value(scm: Any, prop: str, timeout: float = 3.0) -> Any:
    """Skip to the next notified value of ``prop`` (each notification lists
    present-value then status-flags)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no notification of {prop} within {timeout} s")
        name, value = await asyncio.wait_for(scm.get_value(), left)
        if str(name) == prop:
            return value


async def test_subscription_lifetime_expires_and_shows_in_the_device() -> None:
    async with device(cov_max_lifetime_s=100) as (h, address), rusty() as c:
        soc = rid(*_by_name(h)["S1.soc"].oid)
        volts = rid(*_by_name(h)["S1.voltage"].oid)
        await c.subscribe_cov(address, 21, soc, False, 2)
        await c.subscribe_cov(address, 22, volts, True, None)  # no lifetime: indefinite asked
        app = make_client(free_udp_port())
        try:
            dev = oid("device", 1234)

            async def active() -> dict[int, Any]:
                subs = await app.read_property(Address(address), dev, "activeCovSubscriptions")
                return {s.recipient.processIdentifier: s for s in subs}

            subs = await poll(active, what="subscriptions in active-cov-subscriptions")
            assert sorted(subs) == [21, 22]
            assert 0 <= subs[21].timeRemaining <= 2
            assert subs[21].monitoredPropertyReference.objectIdentifier[1] == soc.instance
            assert 90 <= subs[22].timeRemaining <= 100  # granted the longest lifetime, no more

            async def expired() -> bool:
                return sorted(await active()) == [22]

            await poll(expired, timeout=6, what="the 2 s subscription to expire")
        finally:
            app.close()


async def test_subscribe_cov_property_with_its_own_increment() -> None:
    async with device() as (h, address):
        app = make_client(free_udp_port())
        server = Address(address)
        current = oid(*_by_name(h)["S1.current"].oid)
        try:
            scm = await _subscribe_property(app, server, current, "present-value", 31, 5.0)
            assert await _value(scm, "present-value") == pytest.approx(-42.5)
            # 2 A is past the object's 1 A increment but not the subscriber's 5 A
            set_string(h, "S1", current_a=-44.5)
            await h.wait_until(lambda: served(h, "S1.current") == pytest.approx(-44.5))
            set_string(h, "S1", current_a=-50.0)
            assert await _value(scm, "present-value") == pytest.approx(-50.0)
            [sub] = list(
                await app.read_property(server, oid("device", 1234), "activeCovSubscriptions")
            )
            assert (sub.covIncrement, str(sub.monitoredPropertyReference.propertyIdentifier)) == (
                5.0,
                "present-value",
            )
            flags_scm = await _subscribe_property(app, server, current, "status-flags", 32, None)
            assert list(await _value(flags_scm, "status-flags")) == [0, 0, 0, 0]
            silence(h, "S1")
            assert list(await _value(flags_scm, "status-flags", timeout=10)) == [0, 1, 0, 0]
        finally:
            app.close()


async def _subscribe_property(
    app: Any, server: Address, monitored: Any, prop: str, proc_id: int, increment: float | None
) -> Any:
    """Send SubscribeCOVProperty (bacpypes3 has no client helper for it) and
    route the notifications into a bacpypes3 subscription context."""
    request = SubscribeCOVPropertyRequest(
        subscriberProcessIdentifier=proc_id,
        monitoredObjectIdentifier=monitored,
        issueConfirmedNotifications=False,
        lifetime=30,
        monitoredPropertyIdentifier=prop,  # bacpypes3 casts names, not PropertyReference
        destination=server,
    )
    if increment is not None:
        request.covIncrement = increment
    scm = SubscriptionContextManager(app, server, monitored, proc_id, False, 30)
    app._cov_contexts[(server, proc_id)] = scm
    response = await app.request(request)
    assert isinstance(response, SimpleAckPDU), response
    return scm


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_value_and_quality_changes_are_served_subscribed_or_not() -> None:
    """A subscribed object (kept alive, its monitors told) and an unsubscribed
    one (a view made per request) serve the same truth after every change:
    new values, a lost sensor (last value kept, no-sensor), a string that
    stops answering, and recovery."""
    async with device() as (h, address), rusty() as c:
        points = _by_name(h)
        watched = rid(*points["S2.cell002.voltage"].oid)
        plain = rid(*points["S2.cell003.voltage"].oid)
        simulator, slave = sim(h, "S2")
        it = await c.cov_notifications()
        await c.subscribe_cov(address, 41, watched, False, 60)
        await next_for(it, watched)

        async def wire(oid: Any) -> tuple[float, int, int]:
            specs = [(oid, [(PI.PRESENT_VALUE, None), (PI.RELIABILITY, None),
                            (PI.STATUS_FLAGS, None)])]  # fmt: skip
            [result] = await c.read_property_multiple(address, specs)
            value, reliability, status = (r["value"].value for r in result["results"])
            return value, reliability, status["data"][0]

        async def both(expected: dict[Any, tuple[float, int, int]]) -> None:
            async def equal() -> bool:
                got = {o: await wire(o) for o in expected}
                return all(
                    got[o][0] == pytest.approx(v[0]) and got[o][1:] == v[1:]
                    for o, v in expected.items()
                )

            await poll(equal, timeout=10, what=f"served {expected}")

        simulator.set_cell(slave, 2, voltage_v=2.311)
        simulator.set_cell(slave, 3, voltage_v=2.322)
        assert (await next_for(it, watched))["PRESENT_VALUE"] == pytest.approx(2.311)
        await both({watched: (2.311, 0, 0), plain: (2.322, 0, 0)})

        lost = int(CellStatus.SENSOR_LOST)
        simulator.set_cell(slave, 2, status=lost)
        simulator.set_cell(slave, 3, status=lost)
        notified = await next_for(it, watched)
        assert (notified["PRESENT_VALUE"], flags(notified)) == (pytest.approx(2.311), FAULT)
        await both({watched: (2.311, 1, FAULT), plain: (2.322, 1, FAULT)})  # no-sensor

        simulator.set_cell(slave, 2, status=0, voltage_v=2.333)
        simulator.set_cell(slave, 3, status=0, voltage_v=2.344)
        await both({watched: (2.333, 0, 0), plain: (2.344, 0, 0)})

        silence(h, "S2")  # STALE, then OFFLINE: the last values stay, with the fault
        await both({watched: (2.333, 7, FAULT), plain: (2.344, 7, FAULT)})
        await both({watched: (2.333, 12, FAULT), plain: (2.344, 12, FAULT)})
        silence(h, "S2", False)
        await both({watched: (2.333, 0, 0), plain: (2.344, 0, 0)})


async def test_cancelling_a_subscription_that_does_not_exist_pins_nothing() -> None:
    """A BMS that unsubscribes after its subscriptions lapsed (or sends
    'unsubscribe all') must not leave COV machinery behind: bacpypes3 builds
    an object's COV detection before it looks for the subscription to cancel,
    and that would keep the object's view alive and refreshed for good. A real
    subscription, cancelled, must leave nothing behind either."""
    async with device() as (h, address), rusty() as c:
        svc = service(h.gateway)
        names = ["S1.voltage", "S1.cell001.voltage", "S2.cell002.voltage"]
        for n, name in enumerate(names, start=40):
            await c.unsubscribe_cov(address, n, rid(*_by_name(h)[name].oid))
        assert svc.app._cov_detections == {}
        assert svc.image is not None and svc.image.live == {}
        soc = rid(*_by_name(h)["S1.soc"].oid)
        await c.subscribe_cov(address, 50, soc, False, 60)
        assert len(svc.app._cov_detections) == 1 and len(svc.image.live) == 1
        await c.unsubscribe_cov(address, 50, soc)

        async def released() -> bool:  # the view is let go at its string's next reading
            return svc.app._cov_detections == {} and not svc.image.live

        await poll(released, timeout=5, what="the cancelled subscription's view to be let go")
