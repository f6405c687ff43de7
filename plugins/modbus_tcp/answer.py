"""The fast path: the reply PDU to any Modbus request, from the register image.

:meth:`Answerer.reply` is the one answer route of the fast path: given the
unit id and the request PDU it returns the response PDU, deciding everything
pymodbus decides on its own route (``fast_path = false``: its decoder,
request handling and ``SimCore`` datastore with the per-unit actions of
pymodbus_adapter.py) and counting the same :class:`ServerStats`:

- a function the gateway does not serve: 01 (before any decoding);
- a PDU pymodbus's decoder refuses (too short; a register read of 0 or more
  than 125 registers, a bit read of 0 or more than 2000): 03;
- a register read (FC 03/04): 02 outside the unit's extents (pymodbus's
  blocks come from the same extents, so it answers 02 there before asking
  the unit, uncounted); 0x0A for a unit id with no UPS/string (pymodbus's
  device 0); else the image's registers, or 0x0A (no image yet) or 0x0B
  (measured values of a string that is not GOOD, honest mode);
- a coil or discrete-input read (FC 01/02): 02 where pymodbus's bit
  addressing leaves the extents, else 01 (0x0A for an unknown unit id);
- device identification (FC 0x2B / MEI 0x0E), any unit id: the objects of
  :data:`IDENTITY` as pymodbus's ``ReadDeviceInformationResponse`` encodes
  them; another MEI type: 01.

Nothing here imports pymodbus: pymodbus is the reference this module is
proven against byte for byte (tests/test_modbus_fastpath.py for every PDU
kind, tests/test_modbus_direct.py over sockets), not a dependency of it.
"""

from __future__ import annotations

import enum
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

from btms_gateway.core.api import PRODUCT, VENDOR, __version__

from .image import ImageStore, UnitImage

READ_FUNCTIONS = frozenset((3, 4))
BIT_FUNCTIONS = frozenset((1, 2))
READS = READ_FUNCTIONS | BIT_FUNCTIONS
#: everything else answers 01 before decoding: 1/2 are decoded (no coils: 01)
ALLOWED_FUNCTIONS = frozenset((1, 2, 3, 4, 0x2B))
MAX_READ_COUNT = 125  # pymodbus's ReadHoldingRegistersRequest.MAX_COUNT (its decoder's limit)
MAX_BIT_COUNT = 2000  # pymodbus's ReadCoilsRequest.MAX_COUNT
MEI, READ_DEVICE_ID = 0x2B, 0x0E


class Exc(enum.IntEnum):
    """Modbus exception codes the gateway answers (pymodbus's ExcCodes values)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_ADDRESS = 0x02
    ILLEGAL_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_NO_RESPONSE = 0x0B


#: FC 0x2B/0x0E objects (vendor, product code, version: core/version.py), by object id
IDENTITY: Mapping[int, str] = {
    0x00: VENDOR,  # VendorName
    0x01: PRODUCT,  # ProductCode
    0x02: __version__,  # MajorMinorRevision
    0x04: f"{PRODUCT} Modbus TCP server (BM-GW v2 compatible map)",  # ProductName
    0x05: PRODUCT,  # ModelName
}


@dataclass
class ServerStats:
    """Counters a test or an operator reads to see what the server refused."""

    requests: int = 0
    withheld_stale: int = 0  # answered 0x0B
    unknown_unit: int = 0  # answered 0x0A
    refused_function: int = 0  # answered 01 (writes, coil reads)
    malformed_header: int = 0  # bad MBAP header: connection dropped
    malformed_pdu: int = 0  # undecodable PDU: exception answered, connection kept
    truncated: int = 0  # connection ended with a partial frame buffered
    refused_allowlist: int = 0
    refused_limit: int = 0
    idle_closed: int = 0
    connections: int = 0  # open now


_SWAP = sys.byteorder == "little"  # array('H') holds native words; Modbus is big-endian
_ADDRESS_COUNT = struct.Struct(">HH")


def _age(img: UnitImage) -> int:
    """The live data-age register: whole seconds since the data was read, 0xFFFF
    when never read or older than that."""
    read_at = img.read_at
    age = 0xFFFF if read_at is None else int(max(0.0, time.time() - read_at))
    return min(age, 0xFFFF)


@cache
def _answered_prefix(extents: tuple[tuple[int, int], ...]) -> list[int]:
    """answered[r]: how many of registers 0..r-1 lie in one of the (sorted,
    disjoint) extents. A read of [a, a + n) is inside them iff a + n <= the
    last extent's end and answered[a + n] - answered[a] == n."""
    inside = bytearray(extents[-1][1])
    for start, end in extents:
        inside[start:end] = b"\x01" * (end - start)
    return list(accumulate(inside, initial=0))


class Extents:
    """The registers a unit id answers: what pymodbus's blocks for it hold."""

    __slots__ = ("answered", "last", "spans")

    def __init__(self, spans: tuple[tuple[int, int], ...]) -> None:
        self.spans = spans
        self.answered = _answered_prefix(spans)
        self.last = spans[-1][1]

    def holds(self, address: int, count: int) -> bool:
        """Every register of [address, address + count) lies in an extent (one
        prefix-sum lookup where pymodbus loops over each register's flags)."""
        end = address + count
        return end <= self.last and self.answered[end] - self.answered[address] == count


#: pymodbus's device 0, "every other unit id": one block of registers 0..65534
UNKNOWN_UNIT_EXTENTS = Extents(((0, 65535),))


class UnitRegisters:
    """One configured unit id's registers, as its image holds them now."""

    __slots__ = ("extents", "stats", "store", "unit")

    def __init__(
        self, unit: int, store: ImageStore, stats: ServerStats, extents: tuple[tuple[int, int], ...]
    ) -> None:
        self.unit = unit
        self.store = store
        self.stats = stats
        self.extents = Extents(extents)

    def read(self, address: int, count: int) -> bytes | Exc:
        """Registers [address, address + count), inside the extents, big-endian
        (an array slice and a byte swap), or 0x0A (no image yet) or 0x0B
        (measured values that are not current); counted."""
        stats = self.stats
        stats.requests += 1
        img = self.store.image(self.unit)
        if img is None:  # configured, but no image yet (only before the first build)
            stats.unknown_unit += 1
            return Exc.GATEWAY_PATH_UNAVAILABLE
        end = address + count
        if not img.good and img.measured[end] != img.measured[address]:
            stats.withheld_stale += 1
            return Exc.GATEWAY_NO_RESPONSE
        block = img.regs[address:end]
        age_reg = img.age_register
        if address <= age_reg < end:
            block[age_reg - address] = _age(img)
        if _SWAP:
            block.byteswap()
        return block.tobytes()


def exception_pdu(function_code: int, code: int) -> bytes:
    return bytes((function_code | 0x80, code))


def identification(read_code: int, object_id: int) -> bytes:
    """FC 0x2B/0x0E's answer, as pymodbus 3.16's DeviceInformationFactory picks
    the objects and its ReadDeviceInformationResponse encodes them (a read
    code pymodbus has no table for fails there: 04)."""
    if read_code > 4:
        return exception_pdu(MEI, Exc.ILLEGAL_VALUE)
    if read_code == 0:
        return exception_pdu(MEI, Exc.DEVICE_FAILURE)
    have = IDENTITY.get(object_id, "")
    if read_code == 4:  # specific: that object alone
        if 0x07 <= object_id < 0x80 or not have:
            return exception_pdu(MEI, Exc.ILLEGAL_ADDRESS)
        ids: list[int] = [object_id]
    elif read_code == 1:  # basic
        ids = list(range(object_id, 0x03))
    else:  # regular (2), extended (3): from object_id if it exists, else from 0
        stop = 0x07 if read_code == 2 else 0x100
        ids = [x for x in range(object_id if have else 0, stop) if not 0x07 <= x < 0x80]
    objects, count, space, more, next_id = b"", 0, 253 - 6, 0x00, 0x00
    for oid in ids:
        if not (text := IDENTITY.get(oid, "")):
            continue
        data = text.encode()
        space -= 2 + len(data)
        if space <= 0:
            more, next_id = 0xFF, oid
            break
        objects += bytes((oid, len(data))) + data
        count += 1
    return bytes((MEI, READ_DEVICE_ID, read_code, 0x83, more, next_id, count)) + objects


class Answerer:
    """The fast path's one answer route: :meth:`reply` (see the module docstring)."""

    __slots__ = ("stats", "units")

    def __init__(self, units: Mapping[int, UnitRegisters], stats: ServerStats) -> None:
        self.units = units
        self.stats = stats

    def reply(self, unit: int, pdu: bytes) -> bytes:
        """The response PDU to request ``pdu`` (function code first) for ``unit``."""
        fc = pdu[0]
        if fc in READS:
            return self._read(unit, fc, pdu)
        if fc not in ALLOWED_FUNCTIONS:
            self.stats.refused_function += 1
            return exception_pdu(fc, Exc.ILLEGAL_FUNCTION)
        # FC 0x2B: pymodbus decodes the MEI type, then (0x0E) three bytes
        if len(pdu) < 2:
            return self._malformed(fc)
        if pdu[1] != READ_DEVICE_ID:
            return exception_pdu(fc, Exc.ILLEGAL_FUNCTION)
        if len(pdu) < 4:
            return self._malformed(fc)
        return identification(pdu[2], pdu[3])

    def _read(self, unit: int, fc: int, pdu: bytes) -> bytes:
        """A register read (FC 03/04) or a coil or discrete-input read (01/02).
        For bits pymodbus checks the registers that hold them (the address as
        a register, ``(address % 16 + count + 15) // 16`` of them) against the
        blocks, then asks the unit, which refuses bits."""
        if len(pdu) < 5:
            return self._malformed(fc)
        address, count = _ADDRESS_COUNT.unpack_from(pdu, 1)
        registers = fc in READ_FUNCTIONS
        if not 1 <= count <= (MAX_READ_COUNT if registers else MAX_BIT_COUNT):
            return self._malformed(fc)
        regs = self.units.get(unit)
        words = count if registers else (address % 16 + count + 15) // 16
        if not (UNKNOWN_UNIT_EXTENTS if regs is None else regs.extents).holds(address, words):
            return bytes((fc | 0x80, Exc.ILLEGAL_ADDRESS))
        if regs is None:
            return self._unknown_unit(fc)
        if not registers:
            self.stats.requests += 1
            self.stats.refused_function += 1
            return exception_pdu(fc, Exc.ILLEGAL_FUNCTION)
        got = regs.read(address, count)
        if isinstance(got, Exc):
            return bytes((fc | 0x80, got))
        return bytes((fc, 2 * count)) + got

    def _unknown_unit(self, fc: int) -> bytes:
        self.stats.requests += 1
        self.stats.unknown_unit += 1
        return exception_pdu(fc, Exc.GATEWAY_PATH_UNAVAILABLE)

    def _malformed(self, fc: int) -> bytes:
        self.stats.malformed_pdu += 1
        return exception_pdu(fc, Exc.ILLEGAL_VALUE)


def unit_registers(
    ups_units: list[int],
    string_units: list[int],
    store: ImageStore,
    stats: ServerStats,
    ups_extents: tuple[tuple[int, int], ...],
    string_extents: tuple[tuple[int, int], ...],
) -> dict[int, UnitRegisters]:
    """Every configured unit id's registers, by unit id."""
    kinds = [(u, ups_extents) for u in ups_units] + [(u, string_extents) for u in string_units]
    return {u: UnitRegisters(u, store, stats, extents) for u, extents in kinds}
