"""Hardening: allowlist, connection limit, idle timeout, malformed and truncated frames."""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import threading
import time

import pytest
from btms_gateway.core.gateway import GatewayStartError
from btms_gateway.kit.testing import GatewayHarness
from btms_gateway.plugins.modbus_tcp import plugin
from modbus_support import good_read, mbpoll, modbus_config, port_of
from pymodbus.client import AsyncModbusTcpClient

FUZZ_FRAMES = 10_000
FUZZ_DEADLINE_S = 90.0


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), timeout) == b""
    except ConnectionError:  # reset: closed too
        return True
    except TimeoutError:
        return False


@pytest.mark.slow  # ~3 s on a shared 2-core box
async def test_a_client_outside_the_allowlist_is_refused() -> None:
    async with GatewayHarness(modbus_config(2, 1, allow=["127.0.0.2", "10.0.0.0/8"])) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        assert await good_read(port) is None  # we connect from 127.0.0.1
        rc, _, text = await mbpoll(port, 101, 0, 2)
        assert rc != 0, text
        assert svc.stats.refused_allowlist >= 2
        assert svc.stats.connections == 0


async def test_an_allowlisted_network_is_served() -> None:
    async with GatewayHarness(modbus_config(2, 1, allow=["127.0.0.0/8"])) as h:
        assert await good_read(port_of(h)) == [1, 2]  # S1 configured, never read: error
        assert plugin.service(h.gateway).stats.refused_allowlist == 0


async def test_a_port_in_use_stops_the_gateway_with_a_clear_error() -> None:
    async with GatewayHarness(modbus_config(2, 1)) as h:
        taken = port_of(h)
        with pytest.raises(
            GatewayStartError, match=rf"modbus_tcp.*cannot listen on 127.0.0.1:{taken}"
        ):
            async with GatewayHarness(modbus_config(2, 1, port=taken)):
                pass
        assert await good_read(taken) == [1, 2]  # the first gateway still serves


async def test_a_connection_past_the_limit_evicts_the_least_recently_active() -> None:
    """A full server never refuses (that was a lock-out): the newcomer gets
    the slot of the connection whose last request is oldest."""
    async with GatewayHarness(modbus_config(2, 1, max_connections=2)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        busy = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await busy.connect()
        try:
            await h.wait_until(lambda: svc.stats.connections == 2, what="two connections")
            assert (await busy.read_holding_registers(0, count=2, device_id=101)).registers == [
                1,
                2,
            ]
            assert await good_read(port) == [1, 2]  # a third client: the idle one goes
            assert await _closed_by_server(idle_r, 5.0)
            assert svc.guard.counts.evicted == 1 and svc.stats.refused_limit == 0
            assert (await busy.read_holding_registers(0, count=2, device_id=101)).registers == [
                1,
                2,
            ]
        finally:
            busy.close()
            idle_w.close()


async def test_idle_and_truncated_connections_are_closed_and_counted() -> None:
    async with GatewayHarness(modbus_config(2, 1, idle_timeout_s=0.3)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        cut_r, cut_w = await asyncio.open_connection("127.0.0.1", port)
        cut_w.write(b"\x00\x01\x00\x00\x00\x06\x65\x03")  # 8 of 12 bytes, then silence
        await cut_w.drain()
        assert await _closed_by_server(idle_r, 5.0)
        assert await _closed_by_server(cut_r, 5.0)
        assert svc.stats.idle_closed >= 2
        assert svc.stats.truncated >= 1
        idle_w.close()
        cut_w.close()
        assert await good_read(port) == [1, 2]


def _fuzz_frame(rng: random.Random) -> bytes:
    """One of: random bytes; a valid MBAP header with a random PDU; a bad
    protocol id; a length field that lies; a truncated request."""
    kind = rng.randrange(5)
    pdu = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12)))
    unit = rng.choice((1, 101, 102, 0, 50, 255, rng.randrange(256)))
    tid = rng.randrange(65536)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    if kind == 1:
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
    if kind == 2:
        return struct.pack(">HHHB", tid, rng.randrange(1, 65536), len(pdu) + 1, unit) + pdu
    if kind == 3:
        return struct.pack(">HHHB", tid, 0, rng.choice((0, 1, 255, 300, 65535)), unit) + pdu
    full = struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, rng.randrange(65536), rng.randrange(130))
    return full[: rng.randrange(1, len(full))]


def _fuzz(port: int, frames: int, deadline: float, stop: threading.Event) -> int:
    """Send ``frames`` malformed frames from a thread (the server runs on the test's
    loop), reconnecting whenever the server drops the connection and every 20
    frames. Returns how many were sent."""
    rng = random.Random(20261125)
    sent = 0
    sock: socket.socket | None = None
    while sent < frames and time.monotonic() < deadline and not stop.is_set():
        if sock is None:
            # from another host (127.0.0.2): the good client is 127.0.0.1
            sock = socket.create_connection(
                ("127.0.0.1", port), timeout=2, source_address=("127.0.0.2", 0)
            )
        try:
            sock.sendall(_fuzz_frame(rng))
            sent += 1
            time.sleep(0.0002)  # give the server a chance to read frames one by one
            if select.select([sock], [], [], 0)[0] and sock.recv(4096) == b"":
                raise ConnectionResetError("closed by the server")
        except OSError:
            sock.close()
            sock = None
            continue
        if sent % 20 == 0:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return sent


@pytest.mark.slow  # ~8 s on a shared 2-core box
async def test_ten_thousand_malformed_frames_leave_the_server_serving_others() -> None:
    async with GatewayHarness(modbus_config(2, 1, idle_timeout_s=5.0)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        deadline = time.monotonic() + FUZZ_DEADLINE_S
        stop = threading.Event()
        fuzz = asyncio.ensure_future(asyncio.to_thread(_fuzz, port, FUZZ_FRAMES, deadline, stop))
        good_reads = 0
        try:
            while not fuzz.done():  # a well-behaved client is served all along
                assert await good_read(port) == [1, 2]
                good_reads += 1
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await fuzz
        assert fuzz.result() == FUZZ_FRAMES, f"only {fuzz.result()} frames in {FUZZ_DEADLINE_S} s"
        assert good_reads > 0
        assert await good_read(port) == [1, 2]
        stats = svc.stats
        dropped = stats.malformed_header + stats.malformed_pdu + stats.refused_function
        assert dropped > 1000 and stats.truncated > 0, stats
        # every fuzz connection was released: the connection limit cannot leak shut
        await h.wait_until(lambda: svc.stats.connections == 0, what="all connections released")
        print(stats)
