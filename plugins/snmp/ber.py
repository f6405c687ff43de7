"""Pre-encoded variable bindings for the table walk's hot path.

Building a pyasn1 VarBind (ObjectName + nested CHOICE value) and encoding it
costs about 80 us per varbind, three quarters of an snmpbulkwalk's time. For
the OIDs under our base the agent hands pysnmp the varbind already encoded
(wrapped in ``univ.Any``, which pyasn1 copies verbatim into the message);
the message, the PDU header and USM security stay pysnmp's. The encoding
rules used here are the few the MIB needs (OBJECT IDENTIFIER, INTEGER,
Gauge32/Unsigned32, Counter32, TimeTicks, OCTET STRING), and a test checks
them byte for byte against pyasn1's encoder.
"""

from __future__ import annotations

from typing import Any

TAGS = {
    "Integer32": 0x02,
    "INTEGER": 0x02,
    "OCTET STRING": 0x04,
    "BITS": 0x04,
    "Counter32": 0x41,
    "Gauge32": 0x42,
    "Unsigned32": 0x42,
    "TimeTicks": 0x43,
}
SIGNED = frozenset({"Integer32", "INTEGER"})


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _arc(arc: int) -> bytes:
    if arc < 0x80:
        return bytes((arc,))
    out = [arc & 0x7F]
    arc >>= 7
    while arc:
        out.append(0x80 | (arc & 0x7F))
        arc >>= 7
    return bytes(reversed(out))


def oid_content(oid: tuple[int, ...], first: bool = True) -> bytes:
    """Content octets of an OID (``first``: fold the first two arcs)."""
    if first:
        return _arc(oid[0] * 40 + oid[1]) + b"".join(_arc(a) for a in oid[2:])
    return b"".join(_arc(a) for a in oid)


def decode_oid_content(content: bytes) -> tuple[int, ...]:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def oid_tlv(content: bytes) -> bytes:
    return b"\x06" + length(len(content)) + content


def value_tlv(base: str, raw: Any) -> bytes:
    tag = TAGS[base]
    if tag == 0x04:
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
    elif base in SIGNED:
        bits = (~raw).bit_length() if raw < 0 else raw.bit_length()
        data = raw.to_bytes(bits // 8 + 1, "big", signed=True)
    else:
        data = raw.to_bytes(raw.bit_length() // 8 + 1, "big")  # leading 0 when bit 7 set
    return bytes((tag,)) + length(len(data)) + data


def varbind(oid_tlv_bytes: bytes, base: str, raw: Any) -> bytes:
    body = oid_tlv_bytes + value_tlv(base, raw)
    return b"\x30" + length(len(body)) + body


class Prebuilt:
    """A varbind value slot holding the whole varbind already encoded."""

    __slots__ = ("ber",)

    def __init__(self, ber: bytes) -> None:
        self.ber = ber

    def __repr__(self) -> str:
        return f"Prebuilt({self.ber.hex()})"
