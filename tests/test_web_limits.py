"""Hostile HTTP clients, short versions of bench attacks: idle connections
against the descriptor limit, clients outside the allowlist, connection caps,
slow request heads and idle keep-alive connections.

The descriptor test runs a whole gateway in a subprocess whose open-file
limit is set low with ``prlimit`` (256, soft and hard, so the gateway cannot
raise it), fed by the BM-SM simulator over a pseudo-terminal that lives in
the test process; Modbus TCP is checked with Debian's mbpoll.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from attack.net import closed_by_server, closed_unread, connect
from attack.web import close_held, open_idle, open_stream
from btms_gateway.core.netguard import FD_RESERVE
from btms_gateway.kit.ports import FreePorts
from btms_gateway.protocols.bmsm.simulator import Simulator
from conftest import require_tool
from modbus_support import mbpoll
from web_support import get_json, web_gateway

NOFILE = 256
IDLE = 300
CLI = [sys.executable, "-m", "btms_gateway.core"]
STRING_QUALITY = 20  # string unit register: 0 GOOD, 1 STALE, 2 OFFLINE (always readable)


@contextmanager
def _limited_gateway(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, Any]]:
    """(process, web port, Modbus port, simulator): a gateway limited to
    NOFILE descriptors, one string A1 on a simulator the test can unplug."""
    prlimit = require_tool("prlimit", "util-linux")
    sim = Simulator([1], {1: 12}, baud=115200, seed=1, frozen=True, link=str(tmp_path / "tty-b"))
    sim.start()
    ports = FreePorts()
    web, modbus = ports.tcp(), ports.tcp()
    config = tmp_path / "gw.toml"
    config.write_text(f"""
[gateway]
poll_interval_s = 0.2
data_dir = "{tmp_path}"
[[buses]]
name = "b"
port = "{tmp_path / "tty-b"}"
baudrate = 115200
timeout_s = 0.2
[[strings]]
name = "A1"
bus = "b"
slave_id = 1
[plugins.web]
port = {web}
max_connections = 1000           # the descriptor reserve is what must hold here
max_connections_per_client = 1000
header_timeout_s = 60
[plugins.modbus_tcp]
port = {modbus}
""")
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(
        [prlimit, f"--nofile={NOFILE}:{NOFILE}", *CLI, "run", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc, web, modbus, sim
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        sim.stop()


async def _quality(modbus: int) -> int | None:
    """A1's quality register read by mbpoll; None when it got no answer."""
    rc, values, _ = await mbpoll(modbus, 101, STRING_QUALITY, 1)
    return values.get(STRING_QUALITY) if rc == 0 else None


async def _until(fetch: Any, want: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := await fetch()) != want:
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {got})"
        await asyncio.sleep(0.2)


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_idle_connections_leave_descriptors_for_modbus_and_the_serial_port(
    tmp_path: Path,
) -> None:
    with _limited_gateway(tmp_path) as (proc, web, modbus, sim):
        await _until(lambda: _quality(modbus), 0, "A1 GOOD over Modbus")
        idle = open_idle(web, IDLE)
        try:
            await asyncio.sleep(0.5)  # the gateway accepts (and refuses) the rest
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            assert fds <= NOFILE - FD_RESERVE // 2, fds  # the reserve is still free
            assert await _quality(modbus) == 0  # a new Modbus connection is served
            sim.unplug()
            await _until(lambda: _quality(modbus), 2, "A1 OFFLINE with the adapter gone")
            sim.replug()
            await _until(lambda: _quality(modbus), 0, "A1 GOOD after the port reopened")
        finally:
            for s in idle:
                s.close()
        assert proc.poll() is None
        status, _ = await get_json(f"http://127.0.0.1:{web}/health/live")
        assert status == 200
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{web}/metrics") as r:
            metrics = await r.text()
        assert 'btms_web_requests_refused_total{reason="descriptors"}' in metrics
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log and "Too many open files" not in log
    assert "port working again" in log
    assert log.count("southbound reserve") == 1  # once, with a count; not per connection


async def test_a_client_outside_the_allowlist_is_closed_before_anything_is_read(
    tmp_path: Path,
) -> None:
    async with web_gateway(tmp_path, web={"allow": ["127.0.0.2"]}) as (_, svc):
        assert await closed_unread(svc.port)  # from 127.0.0.1, sending nothing
        assert svc.stats.refused["allowlist"] == 1
        reader, writer = await connect(svc.port, "127.0.0.2")
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
        assert svc.stats.refused["allowlist"] == 1


async def test_connection_caps_per_client_and_in_all_make_room_from_the_idle(
    tmp_path: Path,
) -> None:
    web = {"max_connections": 4, "max_connections_per_client": 2}
    async with web_gateway(tmp_path, web=web) as (h, svc):
        listener, refused = svc.listener, svc.stats.refused
        idle = [await connect(svc.port, "127.0.0.3") for _ in range(2)]
        await h.wait_until(lambda: len(listener.connections) == 2, what="2 connections kept")
        # a third from the same address: its own connection idle longest makes room
        idle.append(await connect(svc.port, "127.0.0.3"))
        assert await closed_by_server(idle[0][0], 2) and refused["evicted_idle"] == 1
        held: list[Any] = []
        try:
            for _ in range(2):  # an address whose connections are all busy is refused
                assert await open_stream(svc.url, "127.0.0.2", held) == 200
            assert await closed_unread(svc.port, "127.0.0.2")
            assert refused["connections_per_client"] == 1
            # all 4 taken: a client with a request gets the slot idle longest
            await h.wait_until(lambda: len(listener.connections) == 4, what="all 4 taken")
            status, body = await get_json(svc.url + "/health/live")
            assert status == 200 and body["status"] == "live"
            assert refused["evicted_idle"] == 2 and "connections" not in refused
            assert await closed_by_server(idle[1][0], 2)  # the older idle one went
            assert svc.stats.clients == 2  # the streams go on
        finally:
            await close_held(held)
            for _, writer in idle:
                writer.close()


async def test_a_request_head_must_arrive_in_time_and_idle_connections_close(
    tmp_path: Path,
) -> None:
    web = {"header_timeout_s": 0.5, "keepalive_timeout_s": 0.5}
    async with web_gateway(tmp_path, web=web) as (_, svc):
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        started = time.monotonic()
        closed = False
        for byte in b"GET /health/live HTTP/1.1\r\nHost: x\r\n":  # a byte every 0.1 s
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if reader.at_eof() or await closed_by_server(reader, 0.1):
                closed = True
                break
        assert closed and time.monotonic() - started < 3.0
        assert svc.stats.refused["header_timeout"] == 1
        writer.close()
        # a complete request is answered; the idle connection after it is closed
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(v for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n"))
                          if k.lower() == b"content-length"))  # fmt: skip
        await reader.readexactly(length)
        assert await asyncio.wait_for(reader.read(100), 3) == b""  # keep-alive ran out
        writer.close()
