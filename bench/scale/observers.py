"""The observers of a benchmark: BACnet COV subscribers and the age probe
with its Modbus, SNMP and REST watchers, which time how old the data each
protocol serves is. They run on an event loop of their own
(``ObserverThread``), so the load generators' work never delays when a
change is seen."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from .clients import SNMP_STRING_CURRENT, Stats, s32


class Observed:
    """First time each protocol saw a value (for the age probe), and what the
    probe is waiting for: the polling watchers read only that string, only
    from ``due`` (shortly before the poll that carries the change ends) and
    only until they have seen the new value, so that measuring the age does
    not load the gateway (eight strings read 50 times a second by three
    protocols was 1,200 requests a second, more than all the clients
    together; reading from the moment of the change, 100 times a second, cost
    it 0.013-0.018 of a core, more than the COV and dashboard clients)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, float], float] = {}
        self.probe: tuple[str, float] | None = None
        self.due = 0.0  # time.time() from which the watchers read the probed string
        # the gateway's read_at of a value (from REST), to split an age into parts
        self.read_at: dict[tuple[str, float], float] = {}
        self.old_read_at: dict[str, float] = {}  # read_at of the last reading before the change

    def saw(self, proto: str, string: str, value: float) -> None:
        self.seen.setdefault((proto, string, round(value, 2)), time.time())

    def pending(self, proto: str) -> str | None:
        """The string ``proto``'s watcher should read now, or None."""
        if self.probe is None or time.time() < self.due:
            return None
        name, value = self.probe
        return None if (proto, name, value) in self.seen else name


async def _next_pending(obs: Observed, proto: str, stop: asyncio.Event) -> str | None:
    while not stop.is_set():
        name = obs.pending(proto)
        if name is not None:
            return name
        await asyncio.sleep(0.02)
    return None


async def bacnet_cov(
    address: str,
    oids: list[tuple[str, int]],
    names: dict[tuple[str, int], str],
    obs: Observed,
    stats: Stats,
    stop: asyncio.Event,
) -> None:
    """rusty-bacnet (independent stack): unconfirmed COV on every object in ``oids``."""
    import rusty_bacnet as rb

    kinds = {
        "analogInput": rb.ObjectType.ANALOG_INPUT,
        "binaryInput": rb.ObjectType.BINARY_INPUT,
        "multiStateInput": rb.ObjectType.MULTI_STATE_INPUT,
    }
    import socket

    from .procs import free_port

    port = free_port(socket.SOCK_DGRAM)
    async with rb.BACnetClient(
        interface="127.0.0.1", port=port, broadcast_address="127.255.255.255"
    ) as c:
        it = await c.cov_notifications()
        for n, (kind, inst) in enumerate(oids, start=1):
            try:
                await c.subscribe_cov(
                    address, n, rb.ObjectIdentifier(kinds[kind], inst), False, 3600
                )
                stats.ops["bacnet_subscriptions"] += 1
            except Exception as exc:
                stats.fail("bacnet_subscribe", exc)
        by_instance = {inst: names[(k, inst)] for k, inst in oids}
        while not stop.is_set():
            try:
                note = await asyncio.wait_for(it.__anext__(), 1.0)
            except TimeoutError:
                continue
            stats.ops["bacnet_cov"] += 1
            name = by_instance.get(note.monitored_object_identifier.instance)
            if name and name.endswith(".current"):
                for v in note.values:
                    if str(v["property_id"]).endswith("PRESENT_VALUE"):
                        obs.saw("bacnet", name.split(".")[0], float(v["value"].value))


async def watch_modbus(
    port: int,
    targets: dict[str, int],
    obs: Observed,
    stats: Stats,
    stop: asyncio.Event,
    every: float = 0.01,
) -> None:
    """Reads the probed string's current (registers 4-5) every ``every`` s
    until the new value shows."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    await client.connect()
    try:
        while (name := await _next_pending(obs, "modbus", stop)) is not None:
            try:
                r = await client.read_holding_registers(4, count=2, device_id=100 + targets[name])
                stats.ops["modbus_probe_reads"] += 1
                if not r.isError():
                    obs.saw("modbus", name, s32(*r.registers) / 100)
            except Exception as exc:
                stats.fail("modbus_probe", exc)
                await asyncio.sleep(0.5)
                if not client.connected:
                    await client.connect()
            await asyncio.sleep(every)
    finally:
        client.close()


async def watch_rest(
    web_port: int,
    names: list[str],
    obs: Observed,
    stats: Stats,
    stop: asyncio.Event,
    every: float = 0.01,
) -> None:
    """GET /api/strings/NAME?cells=false of the probed string until the new
    value shows; records the served age_s of GOOD data (sampled just before a
    new reading lands, where it is largest)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while (name := await _next_pending(obs, "rest", stop)) is not None:
            try:
                url = f"http://127.0.0.1:{web_port}/api/strings/{name}?cells=false"
                async with session.get(url) as resp:
                    body = await resp.json()
                stats.ops["rest_probe_reads"] += 1
                if body["quality"] == "good" and body["reading"]:
                    value, read_at = body["reading"]["current_a"], body["reading"]["read_at"]
                    obs.saw("rest", name, value)
                    obs.read_at.setdefault((name, round(value, 2)), read_at)
                    if obs.probe is not None and obs.probe != (name, round(value, 2)):
                        obs.old_read_at[name] = read_at
                    stats.ages["rest_age_s"].append(body["age_s"])
            except Exception as exc:
                stats.fail("rest_probe", exc)
                await asyncio.sleep(0.5)
            await asyncio.sleep(every)


async def watch_snmp(
    port: int,
    targets: dict[str, int],
    obs: Observed,
    stats: Stats,
    stop: asyncio.Event,
    every: float = 0.01,
) -> None:
    """pysnmp GET of btmsStringCurrent (0.01 A) of the probed string until the
    new value shows."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    engine = SnmpEngine()
    target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1)
    oids = {name: f"{SNMP_STRING_CURRENT}.{index}" for name, index in targets.items()}
    while (name := await _next_pending(obs, "snmp", stop)) is not None:
        try:
            err, status, _idx, binds = await get_cmd(
                engine,
                CommunityData("public", mpModel=1),
                target,
                ContextData(),
                ObjectType(ObjectIdentity(oids[name])),
            )
            stats.ops["snmp_probe_gets"] += 1
            if err or status:
                stats.fail("snmp_probe", str(err or status))
            else:
                for _oid, value in binds:
                    with contextlib.suppress(TypeError, ValueError):
                        obs.saw("snmp", name, int(value) / 100)
        except Exception as exc:
            stats.fail("snmp_probe", exc)
            await asyncio.sleep(0.5)
        await asyncio.sleep(every)
    engine.close_dispatcher()


async def age_probe(
    runner: Any,
    probes: list[tuple[str, str, int]],
    obs: Observed,
    stats: Stats,
    stop: asyncio.Event,
    protocols: tuple[str, ...],
    every: float = 2.5,
    interval_s: float = 1.0,
    after_poll_s: float = 0.25,
    early_s: float = 0.15,
) -> None:
    """Changes one probe string's current in the simulator at a time and
    times, for each protocol, the age of the data it served just before the
    change showed: (first time the new value was seen) - (end of the poll the
    old value came from, what the gateway stamps as read_at). That is the
    oldest data the protocol served.

    The change is made ``after_poll_s`` after a poll of the string ended (the
    simulator's truth log says when), so the poll that carries it ends about
    one interval after the last; the watchers start reading ``early_s``
    before that. Where the change is made does not move the age (the poll
    before the one that carries it is the same), and a change that showed
    before the watchers looked would only be seen late: the age could be
    overstated, never understated."""
    k = 0
    await asyncio.sleep(3.0)  # subscriptions and first reads settle
    while not stop.is_set():
        name, bus, slave = probes[k % len(probes)]
        value = round(3.0 + (k % 40) * 1.5 + 0.01 * (k % 7), 2)
        k += 1
        for p in protocols:
            obs.seen.pop((p, name, value), None)
        obs.old_read_at.pop(name, None)
        obs.read_at.pop((name, value), None)
        last = (await asyncio.to_thread(runner.call, op="last_reply", bus=bus, slave=slave))["at"]
        now = time.time()
        set_at = now if last is None else last + after_poll_s
        while set_at < now:
            set_at += interval_s
        await asyncio.sleep(set_at - now)
        obs.due = set_at - after_poll_s + interval_s - early_s if last is not None else 0.0
        obs.probe = (name, value)
        t_set = (
            await asyncio.to_thread(
                runner.call, op="set_string", bus=bus, slave=slave, values={"current_a": value}
            )
        )["t"]
        deadline = time.time() + 6.0
        while time.time() < deadline and not all((p, name, value) in obs.seen for p in protocols):
            await asyncio.sleep(0.05)
        obs.probe = None
        if stop.is_set():
            break  # the watchers stopped mid-probe: not a miss
        served = await asyncio.to_thread(
            runner.call, op="first_data_after", bus=bus, slave=slave, t=t_set
        )
        sights = [obs.seen.get((p, name, value)) for p in protocols]
        if served.get("prev") is not None and None not in sights:
            stats.windows.append((served["prev"], max(sights)))  # type: ignore[type-var]
        for p, seen in zip(protocols, sights, strict=True):
            if seen is None or served.get("at") is None:
                stats.missed[p] += 1
                continue
            stats.lags[p].append(seen - served["at"])
            if served.get("prev") is not None:
                stats.ages[p].append(seen - served["prev"])
            if (new_at := obs.read_at.get((name, value))) is not None:
                stats.parts[f"after read_at {p}"].append(seen - new_at)
        new_at, before = obs.read_at.get((name, value)), obs.old_read_at.get(name)
        if before is not None and new_at is not None and served.get("prev") is not None:
            # an age = (device's last reply -> read_at) + (read_at -> next read_at)
            # + (read_at -> seen, per protocol, above)
            stats.parts["reply -> read_at"].append(before - served["prev"])
            stats.parts["read_at -> next read_at"].append(new_at - before)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


class ObserverThread:
    """Runs the observers' coroutines on an event loop in a thread of its own.

    ``make(stop)`` returns the coroutines, given the stop event of that loop.
    An observer failing is kept and raised in the caller's thread."""

    def __init__(self, make: Any) -> None:
        self.failures: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        started = threading.Event()

        async def guarded(observer: Any) -> None:
            try:
                await observer
            except Exception as exc:  # kept at once, so a mid-run check sees it
                self.failures.append(exc)

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await asyncio.gather(*(guarded(o) for o in make(self._stop)))

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="observers")
        self._thread.start()
        started.wait(10)

    def raise_if_failed(self) -> None:
        if self.failures:
            raise self.failures[0]

    def stop(self, timeout: float) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
