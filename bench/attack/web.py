"""Web attacks: idle connections, parallel password guesses, live-update
slots taken by one address."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp


def open_idle(port: int, count: int, hosts: list[str] | None = None) -> list[socket.socket]:
    """``count`` connections that never send a byte, from ``hosts`` in turn
    (127.0.0.1 if none); those the server closes at once are kept too: they
    cost the caller nothing."""
    sources = hosts or ["127.0.0.1"]
    out = []
    for n in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.bind((sources[n % len(sources)], 0))
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        out.append(s)
    return out


async def open_stream(url: str, host: str, held: list[Any]) -> int:
    """A live stream (``/api/stream``) from ``host``: its status. The session
    and response go into ``held``; close them with ``close_held``."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(host, 0)))
    held.append(session)
    response = await session.get(url + "/api/stream")
    held.append(response)
    return response.status


async def close_held(held: list[Any]) -> None:
    for item in reversed(held):
        if isinstance(item, aiohttp.ClientResponse):
            item.close()
        else:
            await item.close()


async def login(session: aiohttp.ClientSession, url: str, user: str, password: str) -> int:
    """The status of one login; 0 when the server closed the connection first
    (over its connection caps)."""
    try:
        async with session.post(url + "/api/login", json={"user": user, "password": password}) as r:
            return r.status
    except aiohttp.ClientError:
        return 0


async def login_flood(
    url: str, count: int, user: str = "tech", host: str = "127.0.0.1"
) -> list[int]:
    """``count`` wrong passwords sent at once from ``host``: the statuses
    (401: checked, 429: over the limit, 503: too many checks waiting, 0:
    the connection closed by the server)."""
    connector = aiohttp.TCPConnector(local_addr=(host, 0), limit=count)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await asyncio.gather(
            *(login(session, url, user, f"guess-{n}") for n in range(count))
        )
