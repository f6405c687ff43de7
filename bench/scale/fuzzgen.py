"""Hostile inputs for each northbound protocol: valid frames built by hand
(so the fuzzer shares no code with the servers), then mutated: bit flips,
byte insertions and deletions, truncations, oversized length fields, random
bytes, and frames glued together. Seeded: the same seed, the same inputs."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable


# -- Modbus TCP ---------------------------------------------------------------
def modbus_valid(rng: random.Random) -> bytes:
    unit = rng.choice([0, 1, 2, 101, 102, 132, 200, 255])
    fc = rng.choice([3, 4, 1, 2, 5, 6, 15, 16, 43, 23, 8, 0x7F])
    if fc in (3, 4, 1, 2):
        pdu = struct.pack(">BHH", fc, rng.choice([0, 20, 100, 12099, 65535]), rng.randrange(0, 130))
    elif fc in (5, 6):
        pdu = struct.pack(">BHH", fc, rng.randrange(65536), rng.randrange(65536))
    elif fc in (15, 16):
        n = rng.randrange(0, 130)
        pdu = struct.pack(">BHHB", fc, 0, n, (2 * n) & 0xFF) + bytes(2 * n)
    elif fc == 43:
        pdu = bytes([43, 14, rng.choice([1, 2, 3, 4]), rng.randrange(256)])
    else:
        pdu = bytes([fc]) + rng.randbytes(rng.randrange(0, 8))
    return struct.pack(">HHHB", rng.randrange(65536), 0, len(pdu) + 1, unit) + pdu


def modbus_hostile(rng: random.Random) -> bytes:
    frame = modbus_valid(rng)
    kind = rng.randrange(6)
    if kind == 0:  # oversized or undersized MBAP length
        return (
            frame[:4] + struct.pack(">H", rng.choice([0, 1, 2, 254, 255, 260, 65535])) + frame[6:]
        )
    if kind == 1:  # wrong protocol id
        return frame[:2] + struct.pack(">H", rng.randrange(1, 65536)) + frame[4:]
    return mutate(rng, frame)


# -- SNMP (BER) -----------------------------------------------------------------
def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


SNMP_OIDS = [
    "1.3.6.1.2.1.1.1.0",
    "1.3.6.1.2.1.1.3.0",
    "1.3.6.1.4.1.8072.9999.9999.1.3.1.9.1",
    "1.3.6.1.4.1.8072.9999.9999.1.4",
    "1.3.6.1.4.1.8072.9999.9999",
    "1.3",
    "0.0",
]


def snmp_valid(rng: random.Random) -> bytes:
    version = rng.choice([0, 1, 1, 3])
    pdu_tag = rng.choice([0xA0, 0xA1, 0xA5, 0xA3, 0xA6, 0xA7])  # get, next, bulk, set, inform, trap
    binds = b"".join(
        _tlv(0x30, _oid(rng.choice(SNMP_OIDS)) + (b"\x05\x00" if rng.random() < 0.8 else _int(7)))
        for _ in range(rng.randrange(1, 6))
    )
    second, third = (
        (0, 0) if pdu_tag != 0xA5 else (rng.randrange(3), rng.choice([10, 1000, 2**31 - 1]))
    )
    pdu = _tlv(pdu_tag, _int(rng.randrange(2**31)) + _int(second) + _int(third) + _tlv(0x30, binds))
    community = rng.choice([b"public", b"private", b"", b"x" * 300])
    return _tlv(0x30, _int(version) + _tlv(0x04, community) + pdu)


def snmp_hostile(rng: random.Random) -> bytes:
    frame = snmp_valid(rng)
    kind = rng.randrange(6)
    if kind == 0:  # a length that claims more than there is (or an absurd long form)
        return (
            frame[:1] + rng.choice([b"\x84\xff\xff\xff\xff", b"\x82\xff\xff", b"\x80"]) + frame[2:]
        )
    if kind == 1:  # deep nesting
        body = b""
        for _ in range(rng.randrange(10, 400)):
            body = _tlv(0x30, body)
        return body
    return mutate(rng, frame)


# -- BACnet/IP -------------------------------------------------------------------
def _bvlc(npdu_apdu: bytes, function: int = 0x0A) -> bytes:
    return bytes([0x81, function]) + struct.pack(">H", 4 + len(npdu_apdu)) + npdu_apdu


def _objid(kind: int, instance: int) -> bytes:
    return struct.pack(">I", (kind << 22) | (instance & 0x3FFFFF))


def bacnet_valid(rng: random.Random) -> bytes:
    invoke = rng.randrange(256)
    choice = rng.randrange(5)
    if choice == 0:  # Who-Is (unconfirmed), optionally with a range
        apdu = b"\x10\x08" + (b"\x09\x00\x1a\xff\xff" if rng.random() < 0.5 else b"")
    elif choice == 1:  # ReadProperty
        obj = rng.choice([(8, 47808), (0, rng.randrange(100000, 400000)), (8, 4194303)])
        apdu = (
            bytes([0x00, 0x05, invoke, 0x0C, 0x0C])
            + _objid(*obj)
            + b"\x19"
            + bytes([rng.choice([85, 76, 77, 111, 103])])
        )
    elif choice == 2:  # ReadPropertyMultiple of the object list (segmentation)
        apdu = bytes([0x02, 0x75, invoke, 0x0E, 0x0C]) + _objid(8, 47808) + b"\x1e\x09\x4c\x1f"
    elif choice == 3:  # SubscribeCOV
        apdu = (
            bytes([0x00, 0x05, invoke, 0x05, 0x09, rng.randrange(256), 0x1C])
            + _objid(0, rng.randrange(100000, 400000))
            + b"\x29\x00\x39"
            + bytes([rng.randrange(1, 255)])
        )
    else:  # a Simple-ACK / Abort / segment ACK nobody asked for
        apdu = rng.choice(
            [
                b"\x20" + bytes([invoke, 12]),
                b"\x70" + bytes([invoke, 4]),
                b"\x40" + bytes([invoke, 0, 4]),
            ]
        )
    npdu = b"\x01\x04" if apdu[0] >> 4 == 0 else b"\x01\x00"
    return _bvlc(npdu + apdu, 0x0A if rng.random() < 0.8 else rng.choice([0x0B, 0x04, 0x09, 0x0C]))


def bacnet_hostile(rng: random.Random) -> bytes:
    frame = bacnet_valid(rng)
    kind = rng.randrange(5)
    if kind == 0:  # BVLC length lies
        return frame[:2] + struct.pack(">H", rng.choice([0, 3, 4, 1497, 65535])) + frame[4:]
    if kind == 1:  # NPDU with a destination network and a hop count of 0
        return frame[:4] + b"\x01\x20\xff\xff\x00\x00" + frame[6:]
    return mutate(rng, frame)


# -- HTTP ---------------------------------------------------------------------------
HTTP_PATHS = [
    "/",
    "/api/plant",
    "/api/strings/S1",
    "/api/strings/S1/history?since=abc",
    "/api/events?limit=-1",
    "/api/events?after_seq=99999999999999999999",
    "/api/strings/%00",
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/metrics",
    "/api/stream",
    "/api/alarms/1/acknowledge",
    "/api/login",
    "/health/ready",
    "/" + "a" * 9000,
]


def http_valid(rng: random.Random) -> bytes:
    method = rng.choice(["GET", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])
    path = rng.choice(HTTP_PATHS)
    body = rng.choice([b"", b'{"user": "admin", "password": "x"}', b"{", rng.randbytes(64)])
    headers = [
        "Host: 127.0.0.1",
        "Connection: keep-alive" if rng.random() < 0.5 else "Connection: close",
    ]
    if body or rng.random() < 0.2:
        headers.append(f"Content-Length: {rng.choice([len(body), len(body), 10**9, -1])}")
    if rng.random() < 0.1:
        headers.append("Transfer-Encoding: chunked")
    if rng.random() < 0.1:
        headers.append("X-Big: " + "b" * rng.choice([100, 9000, 70000]))
    head = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return head.encode() + body


def http_hostile(rng: random.Random) -> bytes:
    frame = http_valid(rng)
    return frame if rng.random() < 0.3 else mutate(rng, frame)


# -- shared mutations --------------------------------------------------------------
def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            data[rng.randrange(len(data) + 1) : rng.randrange(len(data) + 1)] = rng.randbytes(
                rng.randrange(1, 16)
            )
        elif op == 3 and len(data) > 1:
            del data[rng.randrange(1, len(data)) :]  # truncated
        elif op == 4:
            data += frame  # two frames glued
        elif op == 5:
            data = bytearray(rng.randbytes(rng.randrange(0, 300)))  # pure noise
        elif op == 6 and data:
            i = rng.randrange(len(data))
            data[i] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
    return bytes(data)


GENERATORS: dict[str, Callable[[random.Random], bytes]] = {
    "modbus": modbus_hostile,
    "snmp": snmp_hostile,
    "bacnet": bacnet_hostile,
    "http": http_hostile,
}
