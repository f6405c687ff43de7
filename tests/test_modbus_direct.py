"""The fast path (answer.py, ``fast_path = true``) against pymodbus's own
request handling (``fast_path = false``), over real sockets, byte for byte.

Two servers share each image store, both on one event loop in a thread,
listening on 127.0.0.1:

- ``fast``: the plugin's server as it runs by default (every frame answered
  by ``Answerer.reply`` in ``data_received``);
- ``library``: the same listener and guard with ``fast_path=False``, so
  every request goes through pymodbus's framer, decoder, request handler,
  ``SimCore`` datastore (one ``SimDevice`` per unit) and send path: the
  reference.

Each gets the same bytes on its own connection; the byte streams that come
back, and what each batch added to each server's counters, must be equal.
The data-age register reads a fixed clock here so that both compute the
same age.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass
from itertools import pairwise
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.core.netguard import ClientAllowlist
from btms_gateway.core.store import SnapshotStore
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.modbus_tcp import answer
from btms_gateway.plugins.modbus_tcp.answer import ServerStats, unit_registers
from btms_gateway.plugins.modbus_tcp.image import ImageStore
from btms_gateway.plugins.modbus_tcp.map import STRING_EXTENTS, UPS_EXTENT
from btms_gateway.plugins.modbus_tcp.server import (
    ANSWERS_PER_CALLBACK,
    GatewayTcpServer,
    GatewayTlsServer,
    Guard,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pymodbus.simulator.simcore import SimCore

UPS_UNITS = [1, 2]  # UPS 2 configured, no image (the plant has one UPS)
STRING_UNITS = [101, 102, 103]  # S1 GOOD, S2 STALE, string 3 configured without an image
UNKNOWN_UNITS = [0, 3, 50, 104, 255]
NOW = 1_800_000_000.0
READ_AT = NOW - 100.4  # the data-age register reads 100
EDGES = sorted({0, 65535} | {e for extent in (UPS_EXTENT, *STRING_EXTENTS) for e in extent})
SIDES = ("fast", "library")
IDENTIFY = bytes([0x2B, 0x0E, 0x01, 0x00])  # FC 0x2B / MEI 0x0E: basic device identification


def image_store(honest: bool) -> ImageStore:
    strings = [
        StringSnapshot(f"S{i}", i, "UPS1", 1, i, "bus1", quality,
                       make_reading(120, read_at=READ_AT), READ_AT)
        for i, quality in ((1, Quality.GOOD), (2, Quality.STALE))
    ]  # fmt: skip
    store = ImageStore(honest=honest)
    store.rebuild_all(SnapshotStore(strings, [("UPS1", 1)]).snapshot)
    return store


class Counting:
    """pymodbus's datastore (``SimCore``), counting the reads its request
    handling asks for: the fast path never asks it."""

    def __init__(self, core: SimCore) -> None:
        self.core = core
        self.calls = 0

    def device_ids(self) -> list[int]:
        return self.core.device_ids()

    async def async_getValues(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.core.async_getValues(*args, **kwargs)

    async def async_setValues(self, *args: Any, **kwargs: Any) -> Any:
        return await self.core.async_setValues(*args, **kwargs)


@dataclass
class Side:
    server: GatewayTcpServer
    stats: ServerStats
    reads: Counting  # the datastore pymodbus's request handling asks
    sock: socket.socket | None = None


async def serve(store: ImageStore, side: str, tls: ssl.SSLContext | None = None) -> Side:
    stats = ServerStats()
    units = unit_registers(UPS_UNITS, STRING_UNITS, store, stats, (UPS_EXTENT,), STRING_EXTENTS)
    guard = Guard(ClientAllowlist([]), 8, stats)
    kwargs: dict[str, Any] = dict(address=("127.0.0.1", 0))
    cls = GatewayTcpServer if tls is None else GatewayTlsServer
    if tls is not None:
        kwargs["sslctx"] = tls
    server = cls(units, guard, fast_path=side == "fast", **kwargs)
    reads = server.context = Counting(server.context)
    await server.serve_forever(background=True)
    return Side(server, stats, reads)


class Loop:
    """An event loop in a thread: the servers run there, the test talks to them
    with blocking sockets (hypothesis drives plain functions)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[bool, dict[str, Side]]]:
    """honest -> side -> a running server with a connected client socket."""
    loop = Loop()
    with mock.patch.object(answer, "time", SimpleNamespace(time=lambda: NOW)):
        sides = {
            honest: {side: loop.run(serve(store, side)) for side in SIDES}
            for honest in (True, False)
            for store in [image_store(honest)]
        }
        for by_side in sides.values():
            for s in by_side.values():
                s.sock = socket.create_connection(("127.0.0.1", s.server.bound_port), timeout=5)
                s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # One answered request: the server has taken the connection (its
                # counter moved) before any example measures what a batch moved.
                s.sock.sendall(mbap(0, 101, struct.pack(">BHH", 3, 0, 1)))
                recv_answers(s.sock, 1)
                assert s.stats.connections == 1
        try:
            yield sides
        finally:
            for by_side in sides.values():
                for s in by_side.values():
                    assert s.sock is not None
                    s.sock.close()
                    loop.run(s.server.shutdown())
            loop.close()


def recv_answers(sock: socket.socket, n: int) -> bytes:
    """``n`` whole response ADUs (the MBAP length field says where each ends)."""
    buf = b""
    got = 0
    end = 0
    while got < n:
        while len(buf) < end + 6 or len(buf) < end + 6 + (buf[end + 4] << 8 | buf[end + 5]):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {got} of {n} answers"
            buf += chunk
        end += 6 + (buf[end + 4] << 8 | buf[end + 5])
        got += 1
    assert len(buf) == end, "more bytes than answers"
    return buf


def exchange(side: Side, frames: list[bytes], cuts: list[int]) -> tuple[bytes, dict[str, int]]:
    """Send the frames as one stream cut at ``cuts``; the answers and the
    counters the batch moved."""
    assert side.sock is not None
    stream = b"".join(frames)
    before = asdict(side.stats)
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        if cut > start:
            side.sock.sendall(stream[start:cut])
            start = cut
    answers = recv_answers(side.sock, len(frames))
    after = asdict(side.stats)
    return answers, {k: after[k] - before[k] for k in after if after[k] != before[k]}


# --- requests ----------------------------------------------------------------
def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@st.composite
def addresses(draw: st.DrawFn, count: int) -> int:
    """Anywhere, or with the first or the last register near an edge of an
    extent (where 02 is decided), or past the end of the address space."""
    where = draw(st.sampled_from(["anywhere", "low", "first", "last"]))
    if where == "anywhere":
        return draw(st.integers(0, 65535))
    if where == "low":
        return draw(st.integers(0, 12300))
    near = draw(st.sampled_from(EDGES)) + draw(st.integers(-3, 3))
    address = near if where == "first" else near - max(count, 1) + 1
    return min(max(address, 0), 65535)


@st.composite
def reads(draw: st.DrawFn) -> bytes:
    """An FC 03/04 read: mostly valid, counts at and past the limits."""
    count = draw(st.one_of(st.integers(1, 125), st.sampled_from([0, 1, 125, 126, 65535])))
    pdu = struct.pack(">BHH", draw(st.sampled_from([3, 4])), draw(addresses(count)), count)
    if draw(st.integers(0, 19)) == 0:  # a PDU with a byte too many, or two too few
        pdu = draw(st.sampled_from([pdu + b"\x00", pdu[:3]]))
    unit = draw(st.sampled_from(UPS_UNITS + STRING_UNITS + UNKNOWN_UNITS))
    return mbap(draw(st.integers(0, 65535)), unit, pdu)


@st.composite
def bit_reads(draw: st.DrawFn) -> bytes:
    """An FC 01/02 read (coils, discrete inputs): 01, or 02 where pymodbus's bit
    addressing leaves a unit's blocks, or 03 past its count limits."""
    count = draw(st.one_of(st.integers(1, 2000), st.sampled_from([0, 1, 2000, 2001, 65535])))
    pdu = struct.pack(">BHH", draw(st.sampled_from([1, 2])), draw(addresses(count // 16)), count)
    if draw(st.integers(0, 9)) == 0:
        pdu = draw(st.sampled_from([pdu + b"\x00", pdu[:3]]))
    return pdu


@st.composite
def identifications(draw: st.DrawFn) -> bytes:
    """FC 0x2B: device identification of every read code (0 and 5: errors), any
    object id, another MEI type, PDUs cut short."""
    read_code = draw(st.integers(0, 5))
    object_id = draw(st.one_of(st.integers(0, 8), st.sampled_from([0x7F, 0x80, 0xFF])))
    pdu = bytes([0x2B, 0x0E, read_code, object_id])
    if draw(st.integers(0, 5)) == 0:
        pdu = draw(st.sampled_from([pdu[:1], pdu[:2], pdu[:3], pdu + b"\x00", b"\x2b\x0d\x01"]))
    return pdu


@st.composite
def others(draw: st.DrawFn) -> bytes:
    """Everything but register reads: coil reads, device identification,
    writes and diagnostics (refused before decoding), unknown functions."""
    pdu = draw(
        st.one_of(
            bit_reads(),
            identifications(),
            st.sampled_from([
                struct.pack(">BHH", 6, 0, 5),  # write single register: refused before decoding
                struct.pack(">BHH", 8, 0, 0),  # diagnostics: refused
                bytes([0x11]),  # report server id
                bytes([0x83, 0x02]),  # an exception response sent as a request
                IDENTIFY,
            ]),
        )
    )  # fmt: skip
    unit = draw(st.sampled_from(UPS_UNITS + STRING_UNITS + UNKNOWN_UNITS))
    return mbap(draw(st.integers(0, 65535)), unit, pdu)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    honest=st.booleans(),
    frames=st.lists(st.one_of(reads(), reads(), reads(), others()), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 10_000), max_size=4),
)
@example(honest=True, frames=[mbap(1, 101, struct.pack(">BHH", 3, 0, 30))], cuts=[])  # age
@example(honest=True, frames=[mbap(2, 102, struct.pack(">BHH", 3, 0, 30))], cuts=[])  # 0x0B
@example(honest=False, frames=[mbap(3, 102, struct.pack(">BHH", 4, 0, 30))], cuts=[])
@example(honest=True, frames=[mbap(4, 101, struct.pack(">BHH", 3, 11_975, 125))], cuts=[])
@example(honest=True, frames=[mbap(5, 101, struct.pack(">BHH", 3, 11_976, 125))], cuts=[])
@example(honest=True, frames=[mbap(6, 101, struct.pack(">BHH", 3, 65535, 1))], cuts=[])
@example(honest=True, frames=[mbap(7, 101, struct.pack(">BHH", 3, 65535, 125))], cuts=[])
@example(honest=True, frames=[mbap(8, 1, struct.pack(">BHH", 3, 0, 126))], cuts=[])  # 03
@example(honest=True, frames=[mbap(9, 1, struct.pack(">BHH", 4, 0, 0))], cuts=[])  # 03
@example(honest=True, frames=[mbap(10, 103, struct.pack(">BHH", 3, 0, 1))], cuts=[])  # 0x0A
@example(honest=True, frames=[mbap(11, 50, struct.pack(">BHH", 3, 0, 1))], cuts=[])  # 0x0A
@example(honest=True, frames=[mbap(12, 50, struct.pack(">BHH", 3, 65535, 1))], cuts=[])  # 02
@example(honest=True, frames=[mbap(13, 101, struct.pack(">BHH", 1, 12095, 16))], cuts=[])  # 02
@example(honest=True, frames=[mbap(14, 101, bytes([0x2B, 0x0E, 0, 0]))], cuts=[])  # 04
@example(honest=True, frames=[mbap(15, 101, bytes([0x2B, 0x0E, 3, 0x80]))], cuts=[])
@example(honest=True, frames=[mbap(16, 101, bytes([0x2B, 0x0E, 4, 3]))], cuts=[])  # 02
@example(honest=True, frames=[mbap(17, 101, bytes([0x2B, 0x0D, 1]))], cuts=[])  # 01
@example(
    honest=True,  # reads behind other answers, then a run past one callback's budget
    frames=[mbap(12, 101, IDENTIFY), mbap(13, 101, struct.pack(">BHH", 6, 0, 1))]
    + [mbap(14 + i, 101, struct.pack(">BHH", 3, 100 * i, 125))
       for i in range(ANSWERS_PER_CALLBACK + 4)],
    cuts=[],
)  # fmt: skip
def test_the_fast_path_answers_what_pymodbus_answers_byte_for_byte(
    servers: dict[bool, dict[str, Side]], honest: bool, frames: list[bytes], cuts: list[int]
) -> None:
    by_side = servers[honest]
    answers = {side: exchange(s, frames, cuts) for side, s in by_side.items()}
    assert answers["fast"][0] == answers["library"][0]
    assert answers["fast"][1] == answers["library"][1]


def test_the_fast_path_never_reaches_pymodbus_request_handling(
    servers: dict[bool, dict[str, Side]],
) -> None:
    """The comparison above is not pymodbus against itself: the fast server
    answered every request without pymodbus's datastore being asked, while the
    library server asked it once per decodable read; both gave every kind of
    answer (values, 02, 0x0A, 0x0B; 01 and device identification)."""
    requests = [
        mbap(tid, unit, pdu)
        for tid, (unit, pdu) in enumerate(
            [(unit, struct.pack(">BHH", 3, address, count))
             for unit, address, count in
             ((101, 100, 125), (101, 25, 10), (102, 0, 30), (103, 0, 1), (1, 0, 30), (50, 0, 1))]
            * 10
            + [(101, struct.pack(">BHH", 1, 0, 8)), (101, IDENTIFY), (1, IDENTIFY)]
        )
    ]  # fmt: skip
    by_side = servers[True]
    calls = {side: by_side[side].reads.calls for side in SIDES}
    answers = {side: exchange(by_side[side], requests, [])[0] for side in SIDES}
    assert answers["fast"] == answers["library"]
    assert by_side["fast"].reads.calls == calls["fast"]
    assert by_side["library"].reads.calls == calls["library"] + 6 * 10 + 1
    pdus, at = set(), 0
    while at < len(answers["fast"]):
        length = struct.unpack_from(">H", answers["fast"], at + 4)[0]
        pdu = answers["fast"][at + 7 : at + 6 + length]
        pdus.add(pdu[:2] if pdu[0] & 0x80 else pdu[:1])
        at += 6 + length
    assert pdus == {b"\x03", b"\x83\x02", b"\x83\x0a", b"\x83\x0b", b"\x81\x01", b"\x2b"}


class Recorder:
    """A transport that keeps what it is asked to write (the handler under test
    is real; only the socket is left out so that callbacks can be counted)."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.log.append(data)

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    close = abort

    def pause_reading(self) -> None:  # the handler's backlog is full: nothing more to read
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def burst(kind: str) -> list[bytes]:
    """200 requests for one segment: reads of 125 registers with two slow
    requests among them; refused writes; device identifications (decoded and
    answered by pymodbus)."""
    if kind == "reads":
        frames = [mbap(tid, 101, struct.pack(">BHH", 3, 100 + tid, 125)) for tid in range(200)]
        frames[50] = mbap(50, 101, IDENTIFY)
        frames[120] = mbap(120, 101, struct.pack(">BHH", 6, 0, 1))
        return frames
    pdu = struct.pack(">BHH", 6, 0, 1) if kind == "refusals" else IDENTIFY
    return [mbap(tid, 101, pdu) for tid in range(200)]


@pytest.mark.parametrize("kind", ["reads", "refusals", "identification"])
async def test_a_long_pipelined_burst_is_answered_a_few_requests_per_callback(kind: str) -> None:
    """No loop callback decides or answers more than ANSWERS_PER_CALLBACK of
    200 requests that came in one segment, and all are answered, in request
    order. A tick re-scheduled with call_soon marks every loop iteration in
    the log of answers, with the count of refusals decided so far."""
    side = await serve(image_store(True), "fast")
    log: list[Any] = []
    handler = side.server.callback_new_connection()
    handler.connection_made(Recorder(log))
    loop = asyncio.get_running_loop()
    ticking = True

    def tick() -> None:
        log.append(side.stats.refused_function)
        if ticking:
            loop.call_soon(tick)

    frames = burst(kind)
    try:
        loop.call_soon(tick)
        await asyncio.sleep(0)
        handler.data_received(b"".join(frames))
        decided_at_once = side.stats.refused_function
        for _ in range(10 * len(frames)):  # loop iterations, not time: ample for 200 answers
            if sum(isinstance(x, bytes) for x in log) == len(frames):
                break
            await asyncio.sleep(0)
    finally:
        ticking = False
        handler.connection_lost(None)
        await side.server.shutdown()
    runs, run = [], 0
    for item in log:
        if isinstance(item, int):
            runs.append(run)
            run = 0
        else:
            run += 1
    runs.append(run)
    assert max(runs) <= ANSWERS_PER_CALLBACK, runs
    assert sum(runs) == len(frames)
    tids = [struct.unpack_from(">H", x)[0] for x in log if isinstance(x, bytes)]
    assert tids == list(range(len(frames)))
    refused = [x for x in log if isinstance(x, int)]
    steps = [b - a for a, b in pairwise(refused)]
    assert max(steps) <= ANSWERS_PER_CALLBACK, steps
    if kind == "refusals":
        assert decided_at_once == ANSWERS_PER_CALLBACK
        assert side.stats.refused_function == len(frames)


def tls_context(files: dict[str, str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files["server_crt"], files["server_key"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(files["ca"])
    return server, client


def test_the_tls_listener_answers_by_the_fast_path_and_alike(pki: dict[str, str]) -> None:
    """GatewayTlsServer hands out the same handler: over TLS the fast server
    answers like the library server, byte for byte, without pymodbus's request
    handling (pymodbus's TLS framer reads the same MBAP frames)."""
    server_ctx, client_ctx = tls_context(pki)
    loop = Loop()
    store = image_store(True)
    frames = [
        mbap(tid, unit, struct.pack(">BHH", fc, address, count))
        for tid, (unit, fc, address, count) in enumerate(
            [(101, 3, 100, 125), (102, 4, 0, 30), (101, 3, 25, 10), (1, 3, 0, 30), (50, 3, 0, 1),
             (101, 3, 0, 126), (101, 1, 0, 8)] * 5
        )
    ]  # fmt: skip
    # per round, the datastore calls pymodbus's request handling makes: all six
    # decodable reads on the library server; none on the fast one
    asked = {"fast": 0, "library": 6 * 5}
    answers: dict[str, bytes] = {}
    try:
        with mock.patch.object(answer, "time", SimpleNamespace(time=lambda: NOW)):
            for name in SIDES:
                side = loop.run(serve(store, name, server_ctx))
                raw = socket.create_connection(("127.0.0.1", side.server.bound_port), timeout=5)
                side.sock = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                try:
                    calls = side.reads.calls
                    answers[name], _ = exchange(side, frames, [])
                    assert side.reads.calls - calls == asked[name], name
                finally:
                    side.sock.close()
                    loop.run(side.server.shutdown())
    finally:
        loop.close()
    assert answers["fast"] == answers["library"]
