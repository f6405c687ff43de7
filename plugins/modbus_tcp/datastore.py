"""The pymodbus datastore side: what a request is answered, decided per unit id.

Per-request exception codes use pymodbus's own supported hook: every unit id
is a ``SimDevice`` whose ``action`` coroutine is called on each request with
the function code, address and count, may fill the registers about to be
returned, and may return an ``ExcCodes`` member instead. pymodbus itself
answers 02 for addresses outside a unit's blocks (the blocks come from the
map), so the action only decides 01 (writes, coil reads), 0x0B (measured
values of a string that is not GOOD) and copies the image. Unit ids with no
configured UPS/string fall to device id 0, pymodbus's "every other id"
device, whose action answers 0x0A.

Register reads (FC 03/04) of a configured unit id, nearly every request a
SCADA sends, skip pymodbus's runtime: :meth:`UnitAction.read` decides 02
exactly as pymodbus does for the unit's blocks (one prefix-sum lookup
instead of pymodbus's per-register flag loop) and then makes the same
decisions as the action. The connection handler (server.py) calls it
directly for a well-formed read; :class:`FastReads` stands in for the
server's datastore so the reads that still go through pymodbus's request
handling (and the comparison tests) get the same answer. Everything else
(other function codes, unknown unit ids) goes to pymodbus's ``SimCore`` as
before; tests check that every route answers every read alike.
"""

from __future__ import annotations

import struct
import sys
import time
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from .image import ImageStore, UnitImage
from .map import STRING_EXTENTS, UPS_EXTENT

READ_FUNCTIONS = frozenset((3, 4))


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


class UnitAction:
    """The per-request decision for one configured unit id (see module docstring).

    :meth:`read` is the whole answer to a register read, :meth:`read_wire` the
    same answer with the registers as the bytes that go on the wire (what the
    connection handler's direct reads send); ``__call__`` is the same decision
    as a pymodbus ``SimDevice`` action, for the requests that still go through
    pymodbus (writes, coil reads, and the comparison tests).
    """

    __slots__ = ("answered", "last", "stats", "store", "unit")

    def __init__(
        self,
        unit: int,
        store: ImageStore,
        stats: ServerStats,
        extents: tuple[tuple[int, int], ...],
    ) -> None:
        self.unit = unit
        self.store = store
        self.stats = stats
        self.answered = _answered_prefix(extents)
        self.last = extents[-1][1]

    def read(self, address: int, count: int) -> list[int] | ExcCodes:
        """FC 03/04 of ``count`` registers at ``address``: the values, or the exception.
        02 when a register is outside the unit's extents, as pymodbus decides for
        the unit's blocks (and like pymodbus, without counting the request)."""
        end = address + count
        answered = self.answered
        if end > self.last or answered[end] - answered[address] != count:
            return ExcCodes.ILLEGAL_ADDRESS
        return self.answer(address, count)

    def read_wire(self, address: int, count: int) -> bytes | ExcCodes:
        """:meth:`read`, with the registers big-endian in one bytes object: an
        array slice and a byte swap instead of a list of ints packed one by one
        (7 us -> 0.8 us for 125 registers on the 2-core VM)."""
        end = address + count
        answered = self.answered
        if end > self.last or answered[end] - answered[address] != count:
            return ExcCodes.ILLEGAL_ADDRESS
        img = self._current(address, end)
        if isinstance(img, ExcCodes):
            return img
        block = img.regs[address:end]
        age_reg = img.age_register
        if address <= age_reg < end:
            block[age_reg - address] = _age(img)
        if _SWAP:
            block.byteswap()
        return block.tobytes()

    def answer(self, address: int, count: int) -> list[int] | ExcCodes:
        """A read of registers inside the unit's extents: the image's values, or
        0x0A (no image yet) or 0x0B (measured values that are not current)."""
        end = address + count
        img = self._current(address, end)
        if isinstance(img, ExcCodes):
            return img
        values = img.regs[address:end].tolist()
        age_reg = img.age_register
        if address <= age_reg < end:
            values[age_reg - address] = _age(img)
        return values

    def _current(self, address: int, end: int) -> UnitImage | ExcCodes:
        """The image a read inside the extents is answered from, or why not; counted."""
        stats = self.stats
        stats.requests += 1
        img = self.store.image(self.unit)
        if img is None:  # configured, but no image yet (only before the first build)
            stats.unknown_unit += 1
            return ExcCodes.GATEWAY_PATH_UNAVIABLE
        if not img.good and img.measured[end] != img.measured[address]:
            stats.withheld_stale += 1
            return ExcCodes.GATEWAY_NO_RESPONSE
        return img

    async def __call__(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: Any,
    ) -> ExcCodes | None:
        if values is not None or function_code not in READ_FUNCTIONS:
            self.stats.requests += 1
            self.stats.refused_function += 1
            return ExcCodes.ILLEGAL_FUNCTION
        answer = self.answer(address, count)  # pymodbus has answered 02 outside the blocks
        if isinstance(answer, ExcCodes):
            return answer
        offset = address - start_address
        registers[offset : offset + count] = answer
        return None


class UnknownUnitAction:
    """Device id 0 in pymodbus means "every id not defined": path unavailable."""

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    async def __call__(self, *_args: Any) -> ExcCodes:
        self.stats.requests += 1
        self.stats.unknown_unit += 1
        return ExcCodes.GATEWAY_PATH_UNAVIABLE


class FastHoldingResponse(ReadHoldingRegistersResponse):
    """Same bytes as pymodbus's response; one struct.pack instead of one per
    register plus a bytes concatenation each (a sixth of pymodbus's time per
    100-register read, by cProfile: docs/performance.md)."""

    def encode(self) -> bytes:
        regs = self.registers
        return struct.pack(f">B{len(regs)}H", 2 * len(regs), *regs)


class FastInputResponse(ReadInputRegistersResponse):
    encode = FastHoldingResponse.encode


class FastReadHoldingRequest(ReadHoldingRegistersRequest):
    """FC 03 through pymodbus's ``custom_pdu`` hook: identical decoding and
    datastore call, answered with :class:`FastHoldingResponse`."""

    response: type[FastHoldingResponse | FastInputResponse] = FastHoldingResponse

    async def datastore_update(self, context: Any, device_id: int) -> Any:
        values = await context.async_getValues(
            device_id, self.function_code, self.address, self.count
        )
        if isinstance(values, ExcCodes):
            return ExceptionResponse(self.function_code, values)
        return self.response(registers=values, dev_id=device_id, transaction_id=self.transaction_id)


class FastReadInputRequest(FastReadHoldingRequest):
    function_code = 4
    response = FastInputResponse


CUSTOM_PDUS: list[type] = [FastReadHoldingRequest, FastReadInputRequest]


def _blocks(extents: tuple[tuple[int, int], ...]) -> list[SimData]:
    return [
        SimData(start, count=end - start, values=0, datatype=DataType.REGISTERS)
        for start, end in extents
    ]


def build_devices(
    ups_units: list[int], string_units: list[int], store: ImageStore, stats: ServerStats
) -> list[SimDevice]:
    """One SimDevice per configured unit id (blocks from the map's extents, so
    pymodbus answers 02 outside them) plus the catch-all id 0."""
    kinds = [(u, (UPS_EXTENT,)) for u in ups_units] + [(u, STRING_EXTENTS) for u in string_units]
    devices = [
        SimDevice(u, simdata=_blocks(extents), action=UnitAction(u, store, stats, extents).__call__)
        for u, extents in kinds
    ]
    devices.append(
        SimDevice(0, simdata=_blocks(((0, 65535),)), action=UnknownUnitAction(stats).__call__)
    )
    return devices


class FastReads:
    """The server's datastore (``server.context``): register reads of a configured
    unit id are answered by its :meth:`UnitAction.read`; everything else goes to
    pymodbus's ``SimCore`` (``core``), which keeps serving them as before.

    Same interface as ``SimCore`` (what pymodbus's request classes and request
    handler call). pymodbus's own route for a read costs a Python loop over
    every requested register's flags before the action runs
    (docs/performance.md); this one is a prefix-sum lookup and one slice.
    """

    def __init__(self, core: SimCore, devices: list[SimDevice]) -> None:
        self.core = core
        # the UnitAction whose __call__ is a configured unit's SimDevice action
        self.units: dict[int, UnitAction] = {
            d.id: action
            for d in devices
            if isinstance(action := getattr(d.action, "__self__", None), UnitAction)
        }

    def device_ids(self) -> list[int]:
        return self.core.device_ids()

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code in READ_FUNCTIONS and (unit := self.units.get(device_id)) is not None:
            return unit.read(address, count)
        return await self.core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        return await self.core.async_setValues(device_id, func_code, address, values)
