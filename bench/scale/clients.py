"""Northbound clients that load the gateway while a benchmark runs: a
Modbus TCP sweeper, snmpbulkwalk and the dashboard's live stream, with the
counters every client and observer reports into (the observers that time
the age of served data are in observers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

SNMP_BASE = "1.3.6.1.4.1.8072.9999.9999.1"
SNMP_CELL_TABLE = f"{SNMP_BASE}.4"
SNMP_STRING_CURRENT = f"{SNMP_BASE}.3.1.9"


@dataclass
class Stats:
    """What every client did; ``errors`` are failures a well-behaved client saw."""

    ops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_error: dict[str, str] = field(default_factory=dict)
    ages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lags: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    missed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    parts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # one per age probe: (end of the poll the old value came from, last protocol's first sight)
    windows: list[tuple[float, float]] = field(default_factory=list)

    def fail(self, who: str, exc: BaseException | str) -> None:
        self.errors[who] += 1
        self.last_error[who] = repr(exc)[:200]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if q < 100
        else max(values)
    )


def s32(hi: int, lo: int) -> int:
    v = (hi << 16) | lo
    return v - (1 << 32) if v & 0x80000000 else v


def scada_reads(cells: int, limit: int = 125) -> list[tuple[int, int]]:
    """The reads a SCADA driver makes of one string unit when every string
    and cell point of the map is a tag: tags coalesced the way Kepware's and
    Ignition's Modbus drivers do, a request starting at the next tag and
    taking every tag that ends within ``limit`` registers of it. The unmapped
    registers between two cells' points are read, those past the last tag of
    a request are not: two cells (108 registers) a request, 61 reads a
    120-cell string with the string section. (Until 2026-12-02 the bench walked the whole cell range
    in 125-register blocks, 97 reads a string, 92 % of the registers unmapped.)"""
    from btms_gateway.plugins.modbus_tcp.map import (
        CELL_POINTS,
        CELL_STRIDE,
        STRING_POINTS,
        cell_register,
    )

    string_end = max(p.offset + p.words for p in STRING_POINTS)
    cell_end = max(p.offset + p.words for p in CELL_POINTS)
    assert cell_end <= CELL_STRIDE
    # the string section alone: the registers between it and cell 1 are not
    # the unit's (exception 02), so no driver spans them twice
    reads = [(0, string_end)]
    for address, count in ((cell_register(ci, 0), cell_end) for ci in range(1, cells + 1)):
        if len(reads) > 1 and address + count - reads[-1][0] <= limit:
            reads[-1] = (reads[-1][0], address + count - reads[-1][0])
        else:
            reads.append((address, count))
    return reads


async def modbus_sweeper(
    port: int,
    indexes: list[int],
    period: float,
    stats: Stats,
    stop: asyncio.Event,
    cells: int = 120,
) -> None:
    """Every ``period`` s read each string's section and all its cells (a SCADA scan)."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    await client.connect()
    ranges = scada_reads(cells)
    try:
        while not stop.is_set():
            started = time.monotonic()
            for i in indexes:
                for address, count in ranges:
                    try:
                        r = await client.read_holding_registers(
                            address, count=count, device_id=100 + i
                        )
                        if r.isError() and getattr(r, "exception_code", 0) != 0x0B:
                            stats.fail("modbus", f"unit {100 + i} @{address}: {r}")
                        stats.ops["modbus"] += 1
                    except Exception as exc:
                        stats.fail("modbus", exc)
                        await asyncio.sleep(0.5)
                        if not client.connected:
                            await client.connect()
                    if stop.is_set():
                        return
            stats.ops["modbus_sweeps"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, period - (time.monotonic() - started)))
    finally:
        client.close()


async def snmp_walker(port: int, period: float, stats: Stats, stop: asyncio.Event) -> None:
    """snmpbulkwalk (net-snmp) of the whole cell table, again and again."""
    while not stop.is_set():
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "snmpbulkwalk",
            "-v2c",
            "-c",
            "public",
            "-On",
            "-Cr50",
            "-t",
            "5",
            "-r",
            "1",
            f"127.0.0.1:{port}",
            SNMP_CELL_TABLE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        rows = out.count(b"\n")
        if proc.returncode != 0 or rows == 0:
            stats.fail(
                "snmpbulkwalk", err.decode(errors="replace")[:200] or f"rc {proc.returncode}"
            )
        else:
            stats.ops["snmpbulkwalk"] += 1
            stats.ops["snmp_varbinds"] += rows
            stats.ages["snmpbulkwalk_s"].append(time.monotonic() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, period - (time.monotonic() - started)))


async def sse_reader(web_port: int, stats: Stats, stop: asyncio.Event) -> None:
    """The dashboard's live stream, kept open the whole run."""
    import aiohttp

    # no total timeout: the stream is meant to stay open (aiohttp's default ends it at 300 s)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            try:
                async with session.get(f"http://127.0.0.1:{web_port}/api/stream") as resp:
                    async for line in resp.content:
                        if line.startswith(b"data:"):
                            stats.ops["sse_events"] += 1
                        if stop.is_set():
                            return
            except Exception as exc:
                stats.fail("sse", exc)
                await asyncio.sleep(1)
