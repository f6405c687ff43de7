"""Late replies on the RTU link: a reply that comes after its request timed out
must never be taken for the next request's answer (RTU frames carry no
transaction id: same slave, function and length, valid CRC, the next request
would get the previous one's data). Over a pty and over RTU over TCP, with the
simulator answering 250 ms late and ``timeout_s = 0.2``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from btms_gateway.core import hookimpl
from btms_gateway.core.model import Quality
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp.map import cell_register
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator
from btms_gateway.protocols.rtu import open_link
from btms_gateway.protocols.rtu.link import RtuLink
from snmp_support import V2C, agent_address, net_snmp, snmp_settings
from web_support import get_json

CELLS = 16
#: cell arrays of the same length: a reply to one fits a request for another
VOLTAGES, RESISTANCES, TEMPERATURES = (1000, CELLS), (1200, CELLS), (1400, CELLS)


def _open(sim: Simulator, **kw: object) -> RtuLink:
    link = open_link(sim.bus_config(timeout_s=0.2, retries=0, **kw))
    assert isinstance(link, RtuLink)
    link.open()
    return link


def _read(link: RtuLink, what: tuple[int, int]) -> list[int] | ErrorKind:
    try:
        return link.read_holding_registers(1, *what)
    except PollError as exc:
        return exc.kind


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_a_reply_250_ms_late_is_never_the_next_requests_answer(transport: str) -> None:
    with Simulator([1], cells=CELLS, baud=115200, frozen=True, transport=transport) as sim:
        link = _open(sim)
        truth = {r: sim.registers(1, *r) for r in (VOLTAGES, RESISTANCES, TEMPERATURES)}
        try:
            sim.inject(1, Fault.LATE, delay_s=0.25)
            first = _read(link, VOLTAGES)
            second = _read(link, RESISTANCES)
            third = _read(link, TEMPERATURES)
        finally:
            link.close()
    assert first is ErrorKind.TIMEOUT
    assert second == truth[RESISTANCES], f"resistances read as {second}"
    assert third == truth[TEMPERATURES]
    for c in (link.counters, link.counters_for(1)):  # the late reply, dropped and named
        assert c.errors[ErrorKind.LATE] == 1
        assert c.errors[ErrorKind.CRC] == 0
    assert "late reply from slave 1" in (link.counters.last_error or "")


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_a_slave_always_250_ms_late_gives_no_data_at_all(transport: str) -> None:
    """Every reply late: each read times out and its reply is dropped; none
    returns another read's registers."""
    with Simulator(
        [1], cells=CELLS, baud=115200, frozen=True, transport=transport, reply_delay_s=0.25
    ) as sim:
        link = _open(sim)
        try:
            got = [_read(link, r) for r in (VOLTAGES, RESISTANCES, TEMPERATURES, VOLTAGES)]
            sim.set_reply_delay(1, 0.0)
            back = _read(link, RESISTANCES)
            truth = sim.registers(1, *RESISTANCES)
        finally:
            link.close()
    assert got == [ErrorKind.TIMEOUT] * 4
    assert back == truth  # on time again: data at once, and the right data
    assert link.counters.errors[ErrorKind.LATE] == 4


async def test_the_guard_window_is_a_bus_setting_and_costs_only_failed_transactions() -> None:
    """A clean transaction is followed by the frame gap only (five of them take
    far less than the guard); after a timeout the next request waits for the
    guard's silence (here 0.3 s, configured)."""
    import time

    with Simulator([1], cells=CELLS, baud=115200, frozen=True) as sim:
        link = _open(sim, late_reply_guard_s=0.3)
        try:
            t = time.monotonic()
            for _ in range(5):
                assert isinstance(_read(link, VOLTAGES), list)
            clean = time.monotonic() - t
            sim.inject(1, Fault.NO_REPLY)
            assert _read(link, VOLTAGES) is ErrorKind.TIMEOUT
            t = time.monotonic()
            assert isinstance(_read(link, VOLTAGES), list)
            after_failure = time.monotonic() - t
        finally:
            link.close()
    assert clean < 0.3 <= after_failure


# -- through the whole gateway: nothing shifted is ever served as GOOD -----------


class _Published:
    """Every snapshot the engine publishes (a plugin like any other)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def string_reading(self, string: Any) -> None:
        self.seen.append(string)


def _cells_of(reading: Any) -> list[tuple[Any, ...]]:
    return [
        (c.voltage_v, c.resistance_mohm, c.temperature_c, c.soc_pct, c.soh_pct)
        for c in reading.cells
    ]


async def _served_good(h: GatewayHarness, client: Any, url: str) -> list[tuple[str, str, Any]]:
    """What REST and Modbus serve as GOOD now: (protocol, string, cell values)."""
    out = []
    for name in ("S1", "S2"):
        status, body = await get_json(f"{url}/api/strings/{name}")
        assert status == 200
        if body["quality"] == "good":
            cells = [
                tuple(c[k] for k in ("voltage_v", "resistance_mohm", "temperature_c", "soc_pct",
                                     "soh_pct"))
                for c in body["reading"]["cells"]
            ]  # fmt: skip
            out.append(("rest", name, cells))
        unit = 100 + h.gateway.store.string(name).index
        cells = []
        for ci in range(1, CELLS + 1):
            r = await client.read_holding_registers(cell_register(ci, 0), count=8, device_id=unit)
            if r.isError():  # 0x0B: the string's data is not GOOD
                break
            c = r.registers
            cells.append(
                (c[1] / 1000, ((c[2] << 16) | c[3]) / 1000, _s16(c[4]) / 10, float(c[5]),
                 float(c[6]))
            )  # fmt: skip
        else:
            out.append(("modbus", name, cells))
    return out


def _s16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


#: the MIB's cell columns and the BACnet cell objects, in the order of _cells_of
SNMP_CELL_COLUMNS = ("Voltage", "Resistance", "Temperature", "Soc", "Soh")
BACNET_CELL_OBJECTS = ("voltage", "resistance", "temperature", "soc", "soh")
#: decimals of each (the datasheet's resolutions): BACnet serves REALs (float32)
DECIMALS = (3, 3, 1, 0, 0)


async def _snmp_served_good(h: GatewayHarness) -> list[tuple[str, str, Any]]:
    """net-snmp's snmpget: per string, GETs of its quality and four cells each
    (the agent's 1472-byte answer limit holds about 40 values); the cells
    are served as current when the quality in the same answer is good."""
    out = []
    for name in ("S1", "S2"):
        i = h.gateway.store.string(name).index
        cells: list[tuple[float, ...]] = []
        for first in range(1, CELLS + 1, 4):
            oids = [f"BTMS-GATEWAY-MIB::btmsStringQuality.{i}"] + [
                f"BTMS-GATEWAY-MIB::btmsCell{col}.{i}.{c}"
                for c in range(first, min(first + 4, CELLS + 1))
                for col in SNMP_CELL_COLUMNS
            ]
            # values only, in the order asked, enums as numbers, no units
            r = await net_snmp("snmpget", *V2C, "-Oqv", "-Oe", "-OU", agent_address(), *oids)
            assert r.returncode == 0, r.stderr
            quality, *values = r.stdout.split()
            if quality != "1":  # not good(1): nothing of this answer is current
                break
            cells += [tuple(float(v) for v in values[k : k + 5]) for k in range(0, len(values), 5)]
        else:
            out.append(("snmp", name, cells))
    return out


async def _bacnet_served_good(
    h: GatewayHarness, c: Any, address: str
) -> list[tuple[str, str, Any]]:
    """rusty-bacnet: per string, one ReadPropertyMultiple of every cell
    object's present value, reliability and status flags; a value is served
    as current when its reliability is no-fault-detected and its fault flag
    clear (the others are left out: None)."""
    from bacnet_support import PI, rid
    from btms_gateway.plugins.bacnet.plugin import service

    points = {p.name: p.oid for p in service(h.gateway).points}
    props = [(PI.PRESENT_VALUE, None), (PI.RELIABILITY, None), (PI.STATUS_FLAGS, None)]
    out = []
    for name in ("S1", "S2"):
        specs = [
            (rid(*points[f"{name}.cell{ci:03d}.{q}"]), props)
            for ci in range(1, CELLS + 1)
            for q in BACNET_CELL_OBJECTS
        ]
        results = await c.read_property_multiple(address, specs)
        values = []
        for k, result in enumerate(results):
            value, reliability, flags = (r["value"].value for r in result["results"])
            current = reliability == 0 and not flags["data"][0] & 0x40
            values.append(round(value, DECIMALS[k % 5]) if current else None)
        if any(v is not None for v in values):
            cells = [tuple(values[k : k + 5]) for k in range(0, len(values), 5)]
            out.append(("bacnet", name, cells))
    return out


def _differs(served: list[tuple[Any, ...]], truth: list[tuple[Any, ...]]) -> bool:
    """Whether a served cell list is not the truth (values not served as
    current, None, left out of the comparison)."""
    if len(served) != len(truth):
        return True
    return any(
        v is not None and v != t
        for cell, want in zip(served, truth, strict=True)
        for v, t in zip(cell, want, strict=True)
    )


@pytest.mark.slow  # ~12 s on a shared 2-core box
@pytest.mark.peer
async def test_late_replies_never_serve_a_shifted_value_as_good() -> None:
    """Issue 23 item 1, the way it was seen: S1 on a pty, S2 behind an RTU over
    TCP converter, ``timeout_s = 0.2``. First single replies come 250 ms late
    (some), then every reply for a while (all). Each snapshot the engine
    published as GOOD, and each cell REST, Modbus, SNMP (snmpget) and BACnet
    (rusty-bacnet) served as GOOD, equals what the simulators hold (frozen);
    before, cell arrays shifted by one transaction were served as GOOD (a cell
    voltage read as its resistance)."""
    from bacnet_support import rusty
    from btms_gateway.kit.ports import free_udp_port
    from btms_gateway.plugins.modbus_tcp import plugin as modbus
    from btms_gateway.plugins.web.plugin import service
    from pymodbus.client import AsyncModbusTcpClient

    buses = [
        {"name": "bus1", "port": "/placeholder", "baudrate": 115200, "timeout_s": 0.2},
        {"name": "bus2", "transport": "rtu-over-tcp", "host": "127.0.0.1", "tcp_port": 1,
         "baudrate": 115200, "timeout_s": 0.2},
    ]  # fmt: skip
    bacnet_port = free_udp_port()
    plugins = {
        "web": {"port": 0},
        "modbus_tcp": {"port": 0},
        "snmp": snmp_settings(),
        "bacnet": {"address": f"127.0.0.1/8:{bacnet_port}", "device_instance": 2323,
                   "cells_per_string": CELLS},
    }  # fmt: skip
    data = plant_config(strings=2, ups=1, buses=buses, plugins=plugins)
    data["strings"][1] |= {"bus": "bus2", "slave_id": 1}
    published = _Published()
    harness = GatewayHarness(
        data, simulate=True, cells=CELLS, extra_plugins={"published": published}
    )
    async with harness as h, rusty() as bacnet:
        await h.wait_quality(Quality.GOOD)
        truth = {n: _cells_of(h.sim_for(n)[0].expected(1)) for n in ("S1", "S2")}
        url = service(h.gateway).url
        client = AsyncModbusTcpClient("127.0.0.1", port=modbus.service(h.gateway).port)
        assert await client.connect()
        served: list[tuple[str, str, Any]] = []

        async def served_good() -> list[tuple[str, str, Any]]:
            return (
                await _served_good(h, client, url)
                + await _snmp_served_good(h)
                + await _bacnet_served_good(h, bacnet, f"127.0.0.1:{bacnet_port}")
            )

        try:
            for after in range(7):  # some: one late reply at each read of a poll
                for name in ("S1", "S2"):
                    sim, slave = h.sim_for(name)
                    sim.inject(slave, Fault.LATE, after=after, delay_s=0.25)
                await asyncio.sleep(0.6)
                served += await served_good()
            for name in ("S1", "S2"):  # all
                sim, slave = h.sim_for(name)
                sim.set_reply_delay(slave, 0.25)
            await h.wait_quality(Quality.OFFLINE, timeout=20)
            for _ in range(5):
                served += await served_good()
                await asyncio.sleep(0.3)
            for name in ("S1", "S2"):
                sim, slave = h.sim_for(name)
                sim.set_reply_delay(slave, 0.0)
            await h.wait_quality(Quality.GOOD, timeout=20)
            served += await served_good()
        finally:
            client.close()
        late = {n: h.gateway.string_counters(n).errors[ErrorKind.LATE] for n in ("S1", "S2")}
    good = [s for s in published.seen if s.quality is Quality.GOOD and s.reading is not None]
    wrong = [(s.name, _cells_of(s.reading)) for s in good if _cells_of(s.reading) != truth[s.name]]
    assert not wrong, f"{len(wrong)} of {len(good)} GOOD readings shifted, first {wrong[0]}"
    protocols = ("rest", "modbus", "snmp", "bacnet")
    assert {(p, n) for p, n, _ in served} == {(p, n) for p in protocols for n in truth}
    bad = [(p, n, cells) for p, n, cells in served if _differs(cells, truth[n])]
    by_protocol = {p: sum(1 for b in bad if b[0] == p) for p in protocols}
    assert not bad, f"served as GOOD but not what the device holds {by_protocol}: {bad[0]}"
    assert all(n > 0 for n in late.values()), late  # the late replies came, and were dropped


def test_the_guard_window_is_validated_and_defaults_to_the_timeout(tmp_path: Any) -> None:
    """``late_reply_guard_s``: 0..10 s, by default ``timeout_s``, never below
    the frame gap; a bad value names the file, the key path and what was
    expected, like every configuration error."""
    from btms_gateway.core.config import BusConfig
    from btms_gateway.core.config_load import ConfigError
    from btms_gateway.core.plugin_manager import create_manager
    from btms_gateway.core.registry import load_config

    bus = {"name": "b", "port": "/dev/ttyUSB0", "timeout_s": 0.3}
    assert BusConfig(**bus).guard_s() == 0.3
    assert BusConfig(**bus, late_reply_guard_s=1.5).guard_s() == 1.5
    assert BusConfig(**bus, late_reply_guard_s=0).guard_s() == BusConfig(**bus).frame_gap_s()
    for bad in ("-0.1", "11", '"long"', "nan"):
        path = tmp_path / "gw.toml"
        path.write_text(
            f'[[buses]]\nname = "b"\nport = "/dev/ttyUSB0"\nlate_reply_guard_s = {bad}\n'
        )
        with pytest.raises(ConfigError) as err:
            load_config(path, create_manager())
        text = str(err.value)
        assert f"{path}: buses[0].late_reply_guard_s: expected" in text, text
