"""SNMP reflection and amplification: request datagrams (pyasn1, through
pysnmp's v2c API) and a burst from one source that counts what came back."""

from __future__ import annotations

import socket
import time

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.api import v2c

#: the cell table's voltage column under the default enterprise base
CELL_VOLTAGE = (1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 1, 4, 1, 3)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def v2c_message(
    community: str,
    kind: str,
    oids: list[tuple[int, ...]],
    n: int = 0,
    m: int = 0,
    request_id: int = 4242,
) -> bytes:
    """An SNMPv2c request datagram (kind: get, next, bulk or set; a SET sets
    every OID to the INTEGER 1; bulk: ``n`` non-repeaters, ``m`` repetitions)."""
    if kind == "bulk":
        pdu = v2c.GetBulkRequestPDU()
        v2c.apiBulkPDU.set_defaults(pdu)
        v2c.apiBulkPDU.set_non_repeaters(pdu, n)
        v2c.apiBulkPDU.set_max_repetitions(pdu, m)
    else:
        pdu = {"get": v2c.GetRequestPDU, "next": v2c.GetNextRequestPDU, "set": v2c.SetRequestPDU}[
            kind
        ]()
        v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    value = v2c.Integer(1) if kind == "set" else v2c.null
    v2c.apiPDU.set_varbinds(pdu, [(oid, value) for oid in oids])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def request_id(reply: bytes) -> int:
    """The request id of a v2c response datagram."""
    msg, _ = decoder.decode(reply, asn1Spec=v2c.Message())
    return int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(msg)))


def burst(
    address: tuple[str, int], source: str, request: bytes, count: int, wait_s: float = 3.0
) -> list[bytes]:
    """Send ``request`` ``count`` times at once from ``source``; the replies
    that came within ``wait_s`` (1 s of quiet ends the wait earlier)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for _ in range(count):
            s.sendto(request, address)
        return _replies(s, wait_s)


def flood(
    address: tuple[str, int], source: str, request: bytes, seconds: float, rate: float
) -> tuple[int, list[int]]:
    """``request`` from ``source`` at ``rate`` a second for ``seconds``:
    (requests sent, the size of every reply that came back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setblocking(False)
        sent, sizes = 0, []
        started = time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            while sent < (now - started) * rate:
                s.sendto(request, address)
                sent += 1
            sizes += _drain(s)
            time.sleep(0.002)
        s.setblocking(True)
        sizes += [len(r) for r in _replies(s, 1.0)]
        return sent, sizes


def _drain(s: socket.socket) -> list[int]:
    sizes = []
    while True:
        try:
            sizes.append(len(s.recv(65535)))
        except (BlockingIOError, InterruptedError):
            return sizes


def _replies(s: socket.socket, wait_s: float) -> list[bytes]:
    replies = []
    s.settimeout(1.0)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            replies.append(s.recv(65535))
        except TimeoutError:
            break
    return replies
