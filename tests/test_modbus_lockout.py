"""Hostile clients, short versions: lock-out by connection count, slow-loris,
lying MBAP lengths, pipelined floods, clients that never read, TLS sockets
that never handshake. Each time a well-behaved SCADA (pymodbus and mbpoll,
from another loopback address than the attacker) must still be served.

127.0.0.0/8 is all loopback on Linux, so an attacker bound to 127.0.0.2..
is "another host" without any set-up. Every loop is bounded in count and
time; every wait is for a condition with a deadline. The attacks are
bench/attack's, which bench/attack.py runs for longer against a gateway
process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any

import pytest
from attack.modbus import lying_header, lying_mbap, pipelined, read_answers, read_frame, slow_loris
from attack.net import attacker, closed_by_server, connect
from btms_gateway.kit.testing import GatewayHarness
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.server import MAX_BACKLOG
from modbus_support import _publish_good, good_read, mbpoll, modbus_config, port_of
from pymodbus.client import AsyncModbusTcpClient

SCADA = [1, 2]  # string 1's registers 0..1 (UPS index 1, status 2: never read)


async def test_sixteen_connections_from_one_host_do_not_lock_the_scada_out() -> None:
    """The lock-out of the issue: 20 idle connections from one host (the old
    server refused everyone past 16). Now one address holds at most
    max_connections_per_address, and the SCADA, connected and polling, is
    never the one evicted for them."""
    config = modbus_config(2, 1, max_connections=16, max_connections_per_address=4)
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        scada = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        assert await scada.connect()
        held = []
        try:
            for _ in range(20):
                held.append(await connect(port, attacker(0)))
                rr = await scada.read_holding_registers(0, count=2, device_id=101)
                assert rr.registers == SCADA
            await h.wait_until(lambda: svc.guard.counts.evicted >= 16, what="16 evicted")
            assert svc.guard.slots.count(attacker(0)) == 4
            assert svc.stats.connections == 5
            assert await good_read(port) == SCADA
            rc, values, text = await mbpoll(port, 101, 0, 2)
            assert rc == 0 and list(values.values()) == SCADA, text
            rr = await scada.read_holding_registers(0, count=2, device_id=101)
            assert rr.registers == SCADA  # the first SCADA connection was never evicted
        finally:
            scada.close()
            for _, w in held:
                w.close()


async def test_a_flood_from_the_scadas_own_address_evicts_only_idle_sockets() -> None:
    """Connections that never sent a valid request rank below every one that
    did: 30 sockets opened from the SCADA's own address (a NAT, or a test
    bench), idle or sending junk (a write, refused with 01), evict each
    other, never the polling SCADA."""
    async with GatewayHarness(modbus_config(2, 1, max_connections_per_address=4)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        scada = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        assert await scada.connect()
        held = []
        try:
            assert (
                await scada.read_holding_registers(0, count=2, device_id=101)
            ).registers == SCADA
            for n in range(30):
                held.append(await connect(port))
                if n % 2:  # junk: answered, but not a valid request
                    held[-1][1].write(read_frame(n, fc=6))
                    assert (await held[-1][0].readexactly(9))[7:] == b"\x86\x01"
            await h.wait_until(lambda: svc.guard.counts.evicted >= 27, what="27 evicted")
            rr = await scada.read_holding_registers(0, count=2, device_id=101)
            assert rr.registers == SCADA
        finally:
            scada.close()
            for _, w in held:
                w.close()


async def test_a_full_server_from_many_hosts_still_lets_the_scada_in() -> None:
    """Every slot taken by idle sockets from 16 hosts: a new SCADA connection
    evicts the least recently active of them, and keeps its slot while more
    hosts connect (each newcomer evicts an idle attacker, not the SCADA)."""
    config = modbus_config(2, 1, max_connections=16, max_connections_per_address=4)
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        held = [await connect(port, attacker(n)) for n in range(16)]
        await h.wait_until(lambda: svc.stats.connections == 16, what="16 attackers")
        scada = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        try:
            assert await scada.connect()
            assert (
                await scada.read_holding_registers(0, count=2, device_id=101)
            ).registers == SCADA
            for n in range(16, 26):
                held.append(await connect(port, attacker(n)))
                rr = await scada.read_holding_registers(0, count=2, device_id=101)
                assert rr.registers == SCADA
            rc, values, text = await mbpoll(port, 101, 0, 2)  # and another SCADA gets in too
            assert rc == 0 and list(values.values()) == SCADA, text
            assert svc.stats.connections <= 16
            assert svc.guard.counts.evicted >= 11
        finally:
            scada.close()
            for _, w in held:
                w.close()


async def test_eleven_hundred_idle_connections_hold_at_most_the_slots(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The descriptor exhaustion of the issue, against this listener: 1,100
    connections that never send a byte, from 100 hosts. The server keeps at
    most max_connections of them open (the sockets it holds are what counts
    against its 1,024 open files), closes the rest as they come, logs the
    evictions as a few counted lines, and serves the SCADA throughout."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        svc.guard.tally.every_s = 0.5
        held = []
        try:
            with caplog.at_level(logging.WARNING, logger="btms_gateway.plugins.modbus_tcp"):
                for n in range(1100):
                    held.append(await connect(port, attacker(n % 100)))
                    assert svc.stats.connections <= 16
                    if n % 100 == 99:
                        assert await good_read(port) == SCADA
                        assert len(svc.tcp.active_connections) <= 16 + 2  # + closing ones
                await h.wait_until(lambda: svc.guard.counts.evicted >= 1100 - 16, what="evicted")
            assert len(svc.tcp.active_connections) <= 16
            lines = [r.getMessage() for r in caplog.records if "closed the least" in r.getMessage()]
            assert 1 <= len(lines) <= 20, len(lines)
            assert not any(r.exc_info for r in caplog.records)
        finally:
            for _, w in held:
                w.close()


async def test_a_slow_loris_is_closed_after_the_request_timeout() -> None:
    """One byte every 0.1 s: each byte used to push the idle timer back, so
    the connection was held forever. The request timeout runs from the
    request's first byte and no byte resets it."""
    config = modbus_config(2, 1, request_timeout_s=0.5, idle_timeout_s=30.0)
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        frame = read_frame(1) * 10  # ten requests' worth of bytes: enough for 12 s
        closed, seconds = await slow_loris(port, attacker(0), frame, 0.1, 15.0)
        assert closed, "a byte every 0.1 s held the connection open"
        assert seconds < 10
        assert svc.guard.counts.request_timeouts >= 1
        assert await good_read(port) == SCADA


async def test_a_lying_mbap_length_is_closed_and_counted() -> None:
    """A header announcing 254 bytes followed by 6, then silence: closed after
    the request timeout (the idle timeout is far away). A length outside
    2..254 or a protocol id other than 0 is closed at once."""
    config = modbus_config(2, 1, request_timeout_s=0.5, idle_timeout_s=60.0)
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        assert await lying_mbap(port, attacker(0), lying_header(1), 5.0)
        assert svc.guard.counts.request_timeouts == 1
        assert svc.stats.truncated >= 1
        for header in (
            struct.pack(">HHHB", 2, 0, 255, 101),  # longer than any Modbus ADU
            struct.pack(">HHHB", 3, 0, 1, 101),  # no function code
            struct.pack(">HHHB", 4, 7, 6, 101),  # not Modbus (protocol id 7)
        ):
            reader, writer = await connect(port, attacker(0))
            writer.write(header + b"\x03\x00\x00\x00\x02")
            await writer.drain()
            assert await closed_by_server(reader, 2.0), header
            writer.close()
        assert svc.stats.malformed_header == 3
        assert await good_read(port) == SCADA


async def test_nine_thousand_pipelined_bytes_are_all_answered_in_order() -> None:
    """750 requests (9,000 bytes) in one write: the old server answered the
    first ones and dropped every byte past its 8,320-byte buffer, silently,
    with the connection left open. Now reading pauses while MAX_BACKLOG
    requests wait and every request is answered, in order."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        port = port_of(h)
        n = 750
        frames = pipelined(n)
        assert len(frames) == 9000 > 32 * 260
        reader, writer = await connect(port)
        try:
            writer.write(frames)
            await writer.drain()
            answers = await read_answers(reader, n, 10)
        finally:
            writer.close()
        assert [tid for tid, _ in answers] == list(range(n))
        assert all(pdu[:2] == bytes([3, 2 * (1 + tid % 2)]) for tid, pdu in answers)
        assert await good_read(port) == SCADA


async def test_a_client_that_never_reads_its_answers_is_closed() -> None:
    """24,000 pipelined 125-register reads (6 MB of answers, more than the
    kernel buffers hold) from a client that reads
    nothing: the answers cannot grow the server's memory (no more are made
    while the transport's buffer is full, and reading stops) and the
    connection is closed after the request timeout."""
    config = modbus_config(2, 1, request_timeout_s=0.5)
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        await _publish_good(h)  # whole answers (a string not GOOD answers 9-byte exceptions)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((attacker(0), 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        burst = b"".join(read_frame(tid & 0xFFFF, address=100, count=125) for tid in range(24_000))
        sent, deadline = 0, time.monotonic() + 15
        try:
            while time.monotonic() < deadline and svc.guard.counts.write_stalled == 0:
                if sent < len(burst):
                    try:
                        sent += sock.send(burst[sent : sent + 65536])
                    except BlockingIOError:
                        pass
                    except OSError:
                        break  # closed by the server
                await asyncio.sleep(0.02)
                handlers = svc.tcp.handlers() if svc.tcp else []
                for handler in handlers:  # answers held back: bounded, whatever was sent
                    assert len(handler._pending) <= MAX_BACKLOG
                    if handler.transport is not None:
                        assert handler.transport.get_write_buffer_size() < 256 * 1024
        finally:
            sock.close()
        assert svc.guard.counts.write_stalled == 1, svc.guard.counts
        await h.wait_until(lambda: svc.stats.connections == 0, what="the connection released")
        assert await good_read(port) == [1, 1]  # S1 GOOD: status OK


async def test_refusals_and_evictions_are_logged_once_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """200 refused connections write one line at once and one line with the
    count of the rest, never a line (or a traceback) each."""
    config = modbus_config(2, 1, allow=["127.0.0.1"])
    async with GatewayHarness(config) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        svc.guard.tally.every_s = 0.5
        with caplog.at_level(logging.WARNING, logger="btms_gateway.plugins.modbus_tcp"):
            for _ in range(200):
                reader, writer = await connect(port, attacker(0))
                assert await closed_by_server(reader, 2.0)
                writer.close()
            assert svc.stats.refused_allowlist == 200
            await h.wait_until(
                lambda: any("more like this" in r.getMessage() for r in caplog.records),
                what="the counted summary",
            )
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert 2 <= len(lines) <= 4, lines
        assert sum(_count(line) for line in lines) == 200, lines
        assert not any(r.exc_info for r in caplog.records)


def _count(line: str) -> int:
    """How many events a line stands for: 1, or N for "... (N more like this ...)"."""
    if "more like this" not in line:
        return 1
    return int(line.rsplit("(", 1)[1].split()[0])


async def test_a_connection_on_a_reserved_descriptor_is_refused(monkeypatch: Any) -> None:
    """The southbound reserve (netguard.may_accept): when the descriptor the
    kernel hands a new connection lies in the last FD_RESERVE below the limit,
    Modbus closes it at once (so a replugged serial adapter can still be
    reopened), and serves again once descriptors are free. The reserve is
    widened to the whole limit instead of opening ~1,000 sockets: every
    descriptor then lies in it, and the rule under test is the same comparison."""
    import resource

    from btms_gateway.core import netguard

    config = modbus_config(2, 1)
    async with GatewayHarness(config) as h:
        port = port_of(h)
        assert await good_read(port) == SCADA
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        monkeypatch.setattr(netguard, "FD_RESERVE", soft)
        reader, writer = await connect(port, attacker(0))
        try:
            assert await closed_by_server(reader, 3.0)
        finally:
            writer.close()
        monkeypatch.setattr(netguard, "FD_RESERVE", 64)
        assert await good_read(port) == SCADA
