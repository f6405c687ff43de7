"""The fast path (answer.Answerer.reply) answers every request exactly as
pymodbus's own route answers it (``fast_path = false``: its decoder, request
handling and SimCore datastore with the unit actions of pymodbus_adapter.py).

The property tests give both the same request PDU: :func:`library_reply`
runs it through pymodbus's decoder and the request's own
``datastore_update`` on the ``SimCore`` the library listener is built on,
as the guarded handler's library path does; the reply PDUs, and what each
added to the counters, must be equal. The wire tests check the running
server through pymodbus's client and a raw socket against that same
reference; test_modbus_direct.py compares whole servers byte for byte.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Coroutine
from dataclasses import asdict
from functools import cache
from typing import Any
from unittest import mock

from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.core.store import SnapshotStore
from btms_gateway.kit.testing import GatewayHarness, make_reading
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.answer import (
    ALLOWED_FUNCTIONS,
    Answerer,
    ServerStats,
    unit_registers,
)
from btms_gateway.plugins.modbus_tcp.image import ImageStore
from btms_gateway.plugins.modbus_tcp.map import AGE_REGISTER, STRING_EXTENTS, UPS_EXTENT
from btms_gateway.plugins.modbus_tcp.pymodbus_adapter import identity, library_devices
from hypothesis import example, given, settings
from hypothesis import strategies as st
from modbus_support import _publish_good, modbus_config, port_of
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.device import ModbusControlBlock
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse
from pymodbus.simulator.simcore import SimCore

UPS_UNITS = [1, 2]  # UPS 2 configured, no image (the plant has one UPS)
STRING_UNITS = [101, 102, 103]  # string 3 configured, no image
UNKNOWN_UNITS = [0, 3, 50, 104, 133, 255]
NOW = 1_800_000_000.0
READ_AT = NOW - 100.4  # the data-age register reads 100

#: where a unit's extents start and end: reads straddling these decide 02
EDGES = sorted({0, 65535} | {e for extent in (UPS_EXTENT, *STRING_EXTENTS) for e in extent})


@cache
def routes(good: bool, honest: bool) -> tuple[Answerer, SimCore, ServerStats]:
    """One UPS of two 120-cell strings (units 1, 101, 102), GOOD or STALE: the
    fast path and pymodbus's datastore over the same images and counters."""
    quality = Quality.GOOD if good else Quality.STALE
    strings = [
        StringSnapshot(f"S{i}", i, "UPS1", 1, i, "bus1", quality,
                       make_reading(120, read_at=READ_AT), READ_AT)
        for i in (1, 2)
    ]  # fmt: skip
    plant = SnapshotStore(strings, [("UPS1", 1)]).snapshot
    store = ImageStore(honest=honest)
    store.rebuild_all(plant)
    assert store.units.keys() == {1, 101, 102}
    assert all(img.good is (good or not honest) for img in store.units.values())
    stats = ServerStats()
    units = unit_registers(UPS_UNITS, STRING_UNITS, store, stats, (UPS_EXTENT,), STRING_EXTENTS)
    ModbusControlBlock().Identity.update(identity())  # what pymodbus's server does
    return Answerer(units, stats), SimCore(library_devices(units, stats)), stats


def finish(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a datastore call to its end: neither route ever waits for anything."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a request suspended")


async def library_reply(core: SimCore, stats: ServerStats, unit: int, pdu: bytes) -> bytes:
    """pymodbus's reply PDU, by the steps of the library path: the guard refuses
    unserved functions (01) before decoding; an undecodable PDU is 03;
    otherwise the request's ``datastore_update`` and its response's encoding,
    with pymodbus's request handler's 04 for a request that raises."""
    if pdu[0] not in ALLOWED_FUNCTIONS:
        stats.refused_function += 1
        return bytes([pdu[0] | 0x80, 1])
    request = DecodePDU(True).decode(pdu)
    if request is None:
        stats.malformed_pdu += 1
        return bytes([pdu[0] | 0x80, 3])
    try:
        response = await request.datastore_update(core, unit)
    except Exception:
        response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
    return bytes([response.function_code]) + response.encode()


async def _now(reply: Any, *args: Any) -> Any:
    """A plain call as a coroutine, for :func:`answer`."""
    return reply(*args)


def answer(coro: Coroutine[Any, Any, Any], stats: ServerStats) -> tuple[Any, dict[str, int]]:
    """The answer and what it added to the counters."""
    before = asdict(stats)
    with mock.patch("time.time", return_value=NOW):
        result = finish(coro)
    after = asdict(stats)
    return result, {k: after[k] - before[k] for k in after if after[k] != before[k]}


def both(good: bool, honest: bool, unit: int, pdu: bytes) -> tuple[Any, Any]:
    fast, core, stats = routes(good, honest)
    served = answer(_now(fast.reply, unit, pdu), stats)
    reference = answer(library_reply(core, stats, unit, pdu), stats)
    return served, reference


@st.composite
def reads(draw: st.DrawFn) -> tuple[int, int]:
    """(address, count): anywhere, or with the first or the last register near
    the edge of an extent, where a read straddles into what a unit does not answer."""
    count = draw(st.integers(1, 125))
    where = draw(st.sampled_from(["anywhere", "low", "first", "last"]))
    if where == "anywhere":
        return draw(st.integers(0, 65535)), count
    if where == "low":
        return draw(st.integers(0, 12300)), count
    near = draw(st.sampled_from(EDGES)) + draw(st.integers(-3, 3))
    address = near if where == "first" else near - count + 1
    return min(max(address, 0), 65535), count


@settings(max_examples=1000, deadline=None)
@given(
    unit=st.sampled_from(UPS_UNITS + STRING_UNITS + UNKNOWN_UNITS),
    function_code=st.sampled_from([3, 4]),
    read=reads(),
    good=st.booleans(),
    honest=st.booleans(),
)
@example(unit=101, function_code=3, read=(25, 10), good=True, honest=True)  # over 30
@example(unit=101, function_code=3, read=(95, 10), good=True, honest=True)  # into 100
@example(unit=101, function_code=3, read=(29, 72), good=True, honest=True)  # the gap
@example(unit=101, function_code=3, read=(12000, 100), good=True, honest=True)  # last
@example(unit=101, function_code=4, read=(12001, 100), good=True, honest=True)  # 12100
@example(unit=101, function_code=3, read=(0, 30), good=False, honest=True)  # 0x0B
@example(unit=101, function_code=3, read=(20, 2), good=False, honest=True)  # status
@example(unit=1, function_code=3, read=(0, 30), good=True, honest=True)
@example(unit=1, function_code=3, read=(1, 30), good=True, honest=True)  # 30
@example(unit=103, function_code=3, read=(0, 1), good=True, honest=True)  # no image
@example(unit=50, function_code=3, read=(65535, 1), good=True, honest=True)
def test_the_fast_path_answers_every_read_as_pymodbus_does(
    unit: int, function_code: int, read: tuple[int, int], good: bool, honest: bool
) -> None:
    address, count = read
    pdu = struct.pack(">BHH", function_code, address, count)
    served, reference = both(good, honest, unit, pdu)
    assert served == reference
    reply = served[0]
    if not reply[0] & 0x80:
        assert reply[1] == 2 * count and len(reply) == 2 + 2 * count
        kind = "ups" if unit < 100 else "string"
        if address <= AGE_REGISTER[kind] < address + count:
            at = 2 + 2 * (AGE_REGISTER[kind] - address)
            assert reply[at : at + 2] == (100).to_bytes(2, "big")


@settings(max_examples=1000, deadline=None)
@given(
    unit=st.sampled_from(UPS_UNITS + STRING_UNITS + UNKNOWN_UNITS),
    pdu=st.one_of(
        st.binary(min_size=1, max_size=8),
        st.builds(
            lambda fc, address, count, tail: struct.pack(">BHH", fc, address, count)[:tail],
            st.sampled_from([1, 2, 3, 4]),
            st.integers(0, 65535),
            st.one_of(st.integers(0, 2001), st.integers(0, 65535)),
            st.sampled_from([1, 3, 5, 5, 5]),
        ),
        st.builds(
            lambda mei, code, oid, tail: bytes([0x2B, mei, code, oid])[:tail],
            st.sampled_from([0x0E, 0x0E, 0x0D]),
            st.integers(0, 6),
            st.one_of(st.integers(0, 8), st.integers(0, 255)),
            st.sampled_from([1, 2, 3, 4, 4, 4]),
        ),
    ),
)
@example(unit=101, pdu=bytes([0x2B, 0x0E, 1, 0]))  # basic identification
@example(unit=50, pdu=bytes([0x2B, 0x0E, 2, 3]))  # regular, from an empty object: from 0
@example(unit=101, pdu=bytes([0x2B, 0x0E, 3, 0x80]))  # extended
@example(unit=101, pdu=bytes([0x2B, 0x0E, 4, 5]))  # one object
@example(unit=101, pdu=bytes([0x2B, 0x0E, 4, 3]))  # an empty one: 02
@example(unit=101, pdu=bytes([0x2B, 0x0E, 0, 0]))  # read code 0: 04
@example(unit=101, pdu=bytes([0x2B, 0x0E, 5, 0]))  # read code 5: 03
@example(unit=101, pdu=bytes([0x2B, 0x0D, 1]))  # another MEI type: 01
@example(unit=101, pdu=struct.pack(">BHH", 1, 12095, 16))  # bits past the end: 02
@example(unit=101, pdu=struct.pack(">BHH", 2, 29, 1))  # bits in the last register: 01
@example(unit=1, pdu=struct.pack(">BHH", 2, 29, 4))  # 13 + 4 bits: two registers, 30: 02
@example(unit=1, pdu=struct.pack(">BHH", 1, 16, 200))  # from bit 0: 13 registers, to 29: 01
@example(unit=50, pdu=struct.pack(">BHH", 1, 0, 2000))  # unknown unit: 0x0A
@example(unit=1, pdu=struct.pack(">BHH", 1, 0, 2001))  # 03
@example(unit=1, pdu=bytes([0x10, 0, 0, 0, 1, 2, 0, 0]))  # a write: 01
@example(unit=1, pdu=bytes([0x83, 2]))  # an exception response: 01
def test_the_fast_path_answers_every_other_request_as_pymodbus_does(unit: int, pdu: bytes) -> None:
    """Bit reads, device identification (every read code and object id),
    PDUs cut short or too long, and any function code at all."""
    for good, honest in ((True, True), (False, True)):
        served, reference = both(good, honest, unit, pdu)
        assert served == reference, (good, honest)


def test_every_read_near_an_edge_of_the_extents_is_decided_as_pymodbus_does() -> None:
    """Exhaustively, where 02 is decided: every read whose first or last
    register is within a few registers of an edge of a unit's extents."""
    fast, core, stats = routes(good=True, honest=True)
    reads = {
        (min(max(address, 0), 65535), count)
        for edge in EDGES
        for near in range(edge - 3, edge + 4)
        for count in range(1, 126)
        for address in (near, near - count + 1)  # first or last register near the edge
    }
    with mock.patch("time.time", return_value=NOW):  # the data-age register
        for unit in (1, 101):
            for address, count in reads:
                pdu = struct.pack(">BHH", 3, address, count)
                served = fast.reply(unit, pdu)
                reference = finish(library_reply(core, stats, unit, pdu))
                assert served == reference, (unit, address, count)


def test_the_property_covers_every_kind_of_answer() -> None:
    """The routes the properties run on give every kind of answer (a guard
    against one that, say, never holds an image and so compares only 0x0A)."""
    fast, _, _ = routes(good=False, honest=True)
    kinds = {
        got[:2] if got[0] & 0x80 else got[:1]
        for unit, pdu in [
            *[(u, struct.pack(">BHH", 3, a, n)) for u, a, n in
              ((101, 0, 2), (101, 0, 30), (101, 25, 10), (103, 0, 1), (50, 0, 1))],
            (101, struct.pack(">BHH", 3, 0, 0)), (101, struct.pack(">BHH", 1, 0, 8)),
            (101, bytes([0x2B, 0x0E, 1, 0])), (101, bytes([0x2B, 0x0E, 0, 0])),
        ]
        for got in [fast.reply(unit, pdu)]
    }  # fmt: skip
    assert kinds == {
        b"\x03", b"\x83\x0b", b"\x83\x02", b"\x83\x0a", b"\x83\x03", b"\x81\x01", b"\x2b",
        b"\xab\x04",
    }  # fmt: skip


async def _client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    return client


READS = [
    (101, 0, 30),  # string block with the data-age register
    (101, 100, 125),  # cell 1 and the start of cell 2
    (101, 11_975, 125),  # up to the last cell register
    (102, 200, 8),
    (1, 0, 30),  # the UPS, with its data-age register
    (101, 25, 10),  # straddles the gap: 02
    (101, 12_050, 51),  # one past the end: 02
    (1, 29, 2),  # 02
    (50, 0, 1),  # no such unit: 0x0A
]


def with_age_of(served: list[int], reference: list[int], unit: int, address: int) -> list[int]:
    """``reference`` with the data-age register taken from ``served`` when the two
    differ by one second at most (the two reads may straddle a tick)."""
    at = AGE_REGISTER["ups" if unit < 100 else "string"] - address
    if 0 <= at < len(reference) and abs(served[at] - reference[at]) <= 1:
        reference = [*reference[:at], served[at], *reference[at + 1 :]]
    return reference


async def test_the_wire_carries_what_pymodbus_would_answer() -> None:
    """pymodbus's client reads through the running server; each answer equals
    the pymodbus route's answer to the same request (values or exception)."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        await _publish_good(h)
        svc = plugin.service(h.gateway)
        assert svc.tcp is not None and isinstance(svc.tcp.context, SimCore)
        core = svc.tcp.context  # pymodbus's datastore: the library path's
        client = await _client(port_of(h))
        try:
            for unit, address, count in READS:
                for function_code, read in (
                    (3, client.read_holding_registers),
                    (4, client.read_input_registers),
                ):
                    rr = await read(address, count=count, device_id=unit)
                    expected = await core.async_getValues(unit, function_code, address, count)
                    where = (unit, function_code, address, count)
                    if isinstance(expected, ExcCodes):
                        assert rr.isError() and rr.exception_code == expected, where
                    else:
                        assert not rr.isError(), where
                        assert rr.registers == with_age_of(rr.registers, expected, unit, address)
        finally:
            client.close()


async def test_the_bytes_on_the_wire_are_pymodbus_own_encoding() -> None:
    """A raw socket sees the frame pymodbus's stock response class encodes
    from the pymodbus route's values: the same bytes, not only the same values."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        await _publish_good(h)
        core = plugin.service(h.gateway).tcp.context  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(h))
        try:
            for tid, (unit, address, count) in enumerate(READS[:5], start=7):
                writer.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count))
                got = await asyncio.wait_for(reader.readexactly(9 + 2 * count), 3)
                served = list(struct.unpack_from(f">{count}H", got, 9))
                values = with_age_of(
                    served, await core.async_getValues(unit, 3, address, count), unit, address
                )
                pdu = ReadHoldingRegistersResponse(registers=values).encode()
                mbap = struct.pack(">HHHBB", tid, 0, 2 + len(pdu), unit, 3)
                assert got == mbap + pdu, (unit, address, count)
        finally:
            writer.close()


async def test_requests_are_started_on_the_loop_without_a_thread_hop() -> None:
    """GuardedHandler answers reads in the data callback and starts anything
    else as a task on the running loop: pymodbus's run_coroutine_threadsafe
    (a self-pipe wake-up per request) is not used, and concurrent clients
    each get their own answer."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        await _publish_good(h)
        clients = [await _client(port_of(h)) for _ in range(5)]
        hop = mock.Mock(side_effect=AssertionError("run_coroutine_threadsafe used"))
        try:
            with mock.patch("pymodbus.server.requesthandler.asyncio.run_coroutine_threadsafe", hop):
                answers = await asyncio.gather(
                    *(
                        c.read_holding_registers(100 * k, count=8, device_id=101)
                        for k, c in enumerate(clients, start=1)
                    )
                )
        finally:
            for c in clients:
                c.close()
        assert not hop.called
        units = plugin.service(h.gateway).store.units
        for k, rr in enumerate(answers, start=1):
            assert rr.registers == units[101].regs[100 * k : 100 * k + 8].tolist()


async def test_pipelined_requests_are_all_answered_in_order() -> None:
    """A client may send several requests before the first answer, in one
    segment or split anywhere. pymodbus alone answered the first and lost the
    rest (its send empties the receive buffer). Mixed in: a write (01 without
    decoding), a read outside the map (02) and an unknown unit (0x0A)."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        await _publish_good(h)
        svc = plugin.service(h.gateway)
        requests = [
            (101, 3, 0, 25),
            (101, 6, 0, 5),  # write single register: refused
            (102, 4, 100, 125),
            (101, 3, 30, 1),  # outside the string map
            (50, 3, 0, 1),  # no such unit
            (1, 3, 0, 10),
        ] * 4
        frames = b"".join(
            struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, address, count)
            for tid, (unit, fc, address, count) in enumerate(requests, start=1)
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(h))
        try:
            writer.write(frames[:30])  # a frame and a half, then the rest in odd pieces
            await writer.drain()
            await asyncio.sleep(0.05)
            for i in range(30, len(frames), 37):
                writer.write(frames[i : i + 37])
                await writer.drain()
            answers = []
            for _ in requests:
                head = await asyncio.wait_for(reader.readexactly(7), 3)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                answers.append((tid, unit, await reader.readexactly(length - 1)))
        finally:
            writer.close()
        assert [a[0] for a in answers] == list(range(1, len(requests) + 1))
        for (tid, unit, pdu), (r_unit, fc, address, count) in zip(answers, requests, strict=True):
            assert unit == r_unit, tid
            if fc == 6:
                assert pdu == bytes([0x86, 0x01]), tid
            elif r_unit == 50:
                assert pdu == bytes([0x83, 0x0A]), tid
            elif address == 30:
                assert pdu == bytes([0x83, 0x02]), tid
            else:
                img = svc.store.units[r_unit]
                values = img.regs[address : address + count].tolist()
                got = list(struct.unpack(f">{count}H", pdu[2:]))
                if address <= img.age_register < address + count:  # live: seconds since read
                    at = img.age_register - address
                    assert got[at] <= 5, tid
                    values[at] = got[at]
                assert pdu[:2] == bytes([fc, 2 * count]), tid
                assert got == values, tid
