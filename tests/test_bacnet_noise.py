"""Hostile BACnet datagrams are counted and summarized, not logged one by one
(a traceback per datagram would let anyone on the network fill the disk),
and the device goes on answering."""

from __future__ import annotations

import asyncio
import logging
import random
import socket

from bacnet_support import DEVICE, PI, device, rid, rusty
from btms_gateway.plugins.bacnet.plugin import service


def hostile(rng: random.Random) -> bytes:
    """BVLL-looking garbage: right type byte, random function, lying lengths."""
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    length = rng.choice([len(body) + 4, rng.randrange(65536), 0, 3])
    return bytes([0x81, rng.randrange(256), length >> 8 & 0xFF, length & 0xFF]) + body


async def test_malformed_datagrams_are_counted_not_logged_each(caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with device() as (h, address), rusty() as c:
        noise = service(h.gateway).decode_failures
        host, port = address.split(":")
        rng = random.Random(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(600):
                s.sendto(hostile(rng), (host, int(port)))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)  # let the device drain its socket
        await h.wait_until(lambda: noise.dropped >= 100, what="malformed datagrams counted")
        name = await c.read_property(address, rid("device", DEVICE), PI.OBJECT_NAME)
        assert name.value  # still answering a well-behaved client
        assert sum(noise.kinds.values()) == noise.dropped  # counted by kind too
        assert "DecodingError" in noise.kinds
    from_bacpypes3 = [r for r in caplog.records if r.name.startswith("bacpypes3")]
    tracebacks = [r for r in caplog.records if r.exc_info]
    summaries = [r for r in caplog.records if "malformed BACnet message" in r.getMessage()]
    assert from_bacpypes3 == [] and tracebacks == []
    assert 1 <= len(summaries) <= 2  # one summary per minute, not one per datagram
