"""Connections from other loopback hosts, and telling a server's close apart
from its silence."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def attacker(n: int) -> str:
    """The n-th attacking host (n >= 0): 127.0.0.2, 127.0.0.3, ... (a
    well-behaved client stays on 127.0.0.1)."""
    return f"127.0.{(n + 2) // 250}.{(n + 2) % 250 or 250}"


async def connect(port: int, host: str = "127.0.0.1") -> tuple[asyncio.StreamReader, Any]:
    """A TCP connection to 127.0.0.1:``port`` from ``host``."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes (EOF or reset) within ``timeout``; whatever
    it sends meanwhile is read and dropped."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not chunk:
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


async def closed_unread(port: int, host: str = "127.0.0.1", send: bytes = b"") -> bool:
    """Whether the server closes a new connection from ``host`` (after
    ``send``) without answering anything."""
    reader, writer = await connect(port, host)
    try:
        if send:
            writer.write(send)
        try:
            return await asyncio.wait_for(reader.read(100), 2) == b""
        except ConnectionError:
            return True
    finally:
        writer.close()


async def hold(port: int, hosts: list[str], count: int) -> list[tuple[asyncio.StreamReader, Any]]:
    """``count`` connections that never send a byte, from ``hosts`` in turn;
    those the server refuses are skipped (nothing to hold)."""
    held = []
    for n in range(count):
        try:
            held.append(await connect(port, hosts[n % len(hosts)]))
        except OSError:
            continue
    return held


def release(held: list[tuple[asyncio.StreamReader, Any]]) -> None:
    for _, writer in held:
        writer.close()
