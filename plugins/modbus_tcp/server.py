"""The pymodbus side: devices that answer from the image, and a hardened listener.

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
SCADA sends, skip pymodbus's runtime: :class:`FastReads` stands in for the
server's datastore and answers them from :meth:`UnitAction.read`, which
decides 02 exactly as pymodbus does for the unit's blocks (one prefix-sum
lookup instead of pymodbus's per-register flag loop) and then makes the same
decisions as the action. Everything else (other function codes, unknown unit
ids) goes to pymodbus's ``SimCore`` as before; a test checks that both paths
answer every read alike.

The listener subclasses pymodbus's TCP/TLS servers only to hand each
connection a :class:`GuardedHandler`: allowlist and connection limit on
accept, an activity stamp for the idle sweeper, and an MBAP header check so
a malformed frame is counted and its connection dropped (a byte stream
cannot resynchronise after a bad header) while the server serves others.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from typing import Any

from btms_gateway.core.netguard import ClientAllowlist
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore
from pymodbus.transaction import TransactionManager

from .image import ImageStore
from .map import STRING_EXTENTS, UPS_EXTENT

log = logging.getLogger("btms_gateway.plugins.modbus_tcp")

READ_FUNCTIONS = frozenset((3, 4))
#: everything else answers 01 before decoding: 1/2 reach the action (no coils: 01)
ALLOWED_FUNCTIONS = frozenset((1, 2, 3, 4, 0x2B))
MAX_MBAP_LENGTH = 254  # unit id + PDU (253 bytes): a 260-byte ADU
PIPELINE_BUFFER = 32 * 260  # bytes a connection may have received and not yet decoded
LOG_EVERY_S = 10.0


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

    :meth:`read` is the whole answer to a register read; ``__call__`` is the
    same decision as a pymodbus ``SimDevice`` action, for the requests that
    still go through pymodbus (writes, coil reads, and the comparison test).
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

    def answer(self, address: int, count: int) -> list[int] | ExcCodes:
        """A read of registers inside the unit's extents: the image's values, or
        0x0A (no image yet) or 0x0B (measured values that are not current)."""
        end = address + count
        stats = self.stats
        stats.requests += 1
        img = self.store.image(self.unit)
        if img is None:  # configured, but no image yet (only before the first build)
            stats.unknown_unit += 1
            return ExcCodes.GATEWAY_PATH_UNAVIABLE
        if not img.good and img.measured[end] != img.measured[address]:
            stats.withheld_stale += 1
            return ExcCodes.GATEWAY_NO_RESPONSE
        values = img.regs[address:end].tolist()
        age_reg = img.age_register
        if address <= age_reg < end:
            read_at = img.read_at
            age = 0xFFFF if read_at is None else int(max(0.0, time.time() - read_at))
            values[age_reg - address] = min(age, 0xFFFF)
        return values

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

    response = FastHoldingResponse

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


class Guard:
    """Who may connect, how many at once, and the counters for what was refused."""

    def __init__(
        self, allowlist: ClientAllowlist, max_connections: int, stats: ServerStats
    ) -> None:
        self.allowlist = allowlist
        self.max_connections = max_connections
        self.stats = stats
        self._last_log: dict[str, float] = {}

    def refusal(self, peer: Any) -> str | None:
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.allowlist.allows(host):
            self.stats.refused_allowlist += 1
            return f"client {host or '?'} is not in the allow list"
        if self.stats.connections >= self.max_connections:
            self.stats.refused_limit += 1
            return f"connection limit ({self.max_connections}) reached"
        return None

    def note(self, kind: str, message: str, *args: Any) -> None:
        """Log a refusal at most once per LOG_EVERY_S per kind: a flood of bad
        clients is counted in ServerStats, not written line by line."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_log[kind] = now
            log.warning(
                message + " (counted; further ones logged every %.0f s)",
                *args,
                LOG_EVERY_S,
            )


class GuardedHandler(ServerRequestHandler):
    """pymodbus's per-connection handler plus admission, idle stamp and frame checks."""

    def __init__(self, owner: Any, guard: Guard) -> None:
        super().__init__(owner, None, None, None)
        self.guard = guard
        self.admitted = False
        self.last_seen = time.monotonic()
        self._pending: deque[tuple[Any, tuple | None]] = deque()
        self._answering = False
        # room for a pipelined burst (pymodbus's 516 bytes is two requests and a
        # bit): past this, pymodbus drops the buffer and the connection desyncs
        self.max_buffer_size = PIPELINE_BUFFER

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if reason := self.guard.refusal(peer):
            self.guard.note("refused", "refused %s: %s", peer, reason)
            transport.abort()
            return
        self.admitted = True
        self.guard.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self.recv_buffer:
            self.guard.stats.truncated += 1
            self.recv_buffer = b""
        if self.admitted:
            self.admitted = False
            self.guard.stats.connections -= 1

    def drop(self) -> None:
        """Close this connection now (bad header, idle)."""
        self._release()
        if self.transport:
            self.transport.abort()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        """Every complete frame in ``data``, in order; a partial one stays buffered.

        A Modbus TCP client may pipeline: send several requests before the
        first answer. pymodbus's handler decodes one frame per arrival and
        its ``send`` empties the receive buffer, so a second request that came
        in the same segment was never answered. Here each complete frame is
        checked and queued, and the answers go out in request order."""
        self.last_seen = time.monotonic()
        if not self.admitted:
            return len(data)
        used = 0
        while len(data) - used >= 7:
            length = data[used + 4] << 8 | data[used + 5]
            if data[used + 2] or data[used + 3] or not 2 <= length <= MAX_MBAP_LENGTH:
                self.guard.stats.malformed_header += 1
                self.guard.note("header", "dropped a connection sending a malformed MBAP header")
                self.recv_buffer = b""
                self.drop()
                return len(data)
            end = used + 6 + length
            if len(data) < end:
                break
            self._request(data[used:end], addr)
            used = end
        return used

    def _request(self, frame: bytes, addr: tuple | None) -> None:
        """One whole frame: refused (01) without decoding, answered with an
        exception when undecodable, or decoded and queued for an answer."""
        tid, unit, function_code = frame[0] << 8 | frame[1], frame[6], frame[7]
        if function_code not in ALLOWED_FUNCTIONS:
            # a read-only gateway offers no writes and no diagnostics that change
            # pymodbus's global state (FC 08 counters, ...)
            self.guard.stats.refused_function += 1
            self._queue(_refusal(function_code, ExcCodes.ILLEGAL_FUNCTION, unit, tid), addr)
            return
        answering = self.last_pdu  # decoding sets last_pdu: keep the one being answered
        try:
            TransactionManager.callback_data(self, frame, addr)
            pdu = self.last_pdu
        except ModbusIOException as exc:
            self.guard.stats.malformed_pdu += 1
            self.guard.note("pdu", "answered an undecodable request with an exception")
            known = (function_code & 0x7F) in self.server.known_functions
            code = ExcCodes.ILLEGAL_VALUE if known else ExcCodes.ILLEGAL_FUNCTION
            pdu = _refusal(function_code, code, exc.dev_id, exc.transaction_id)
        finally:
            self.last_pdu = answering
        if pdu is not None:
            self._queue(pdu, addr)

    def _queue(self, item: Any, addr: tuple | None) -> None:
        self._pending.append((item, addr))
        if not self._answering:
            self._answering = True
            # a task on the running loop: pymodbus's run_coroutine_threadsafe costs
            # a self-pipe write and an extra loop wake-up per request
            self.loop.create_task(self._answer_pending())

    async def _answer_pending(self) -> None:
        """Answer the queued requests one at a time, in order: pymodbus's
        ``handle_request`` reads the request from ``last_pdu``."""
        try:
            while self._pending:
                item, addr = self._pending.popleft()
                if isinstance(item, _Refusal):
                    self.server_send(item.response, addr)
                    continue
                self.last_pdu, self.last_addr = item, addr
                await self.handle_request()
        finally:
            self._answering = False

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        """pymodbus's send also empties the receive buffer (right for a client,
        which drops a stale answer before asking again); a server would lose
        the start of the next pipelined request with it."""
        buffered = self.recv_buffer
        super().send(data, addr)
        self.recv_buffer = buffered


@dataclass(frozen=True, slots=True)
class _Refusal:
    """An exception answer decided without pymodbus's request handling."""

    response: ExceptionResponse


def _refusal(function_code: int, code: ExcCodes, unit: int, tid: int) -> _Refusal:
    return _Refusal(
        ExceptionResponse(
            function_code & 0x7F, exception_code=code, device_id=unit, transaction=tid
        )
    )


class _Guarded:
    """Mixin for pymodbus servers: hand every connection a GuardedHandler, and
    answer register reads through :class:`FastReads`."""

    guard: Guard
    context: Any

    def _fast_reads(self, devices: list[SimDevice]) -> None:
        """Once pymodbus has built its SimCore from ``devices``, put FastReads in front."""
        self.context = FastReads(self.context, devices)

    def callback_new_connection(self) -> GuardedHandler:
        return GuardedHandler(self, self.guard)

    @property
    def known_functions(self) -> frozenset[int]:
        return frozenset(self.decoder.list_function_codes())  # type: ignore[attr-defined]

    def handlers(self) -> list[GuardedHandler]:
        return list(self.active_connections.values())  # type: ignore[attr-defined]

    @property
    def bound_port(self) -> int:
        return int(self.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


class GatewayTcpServer(_Guarded, ModbusTcpServer):
    def __init__(self, devices: list[SimDevice], guard: Guard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(devices, custom_pdu=CUSTOM_PDUS, **kwargs)
        self._fast_reads(devices)


class GatewayTlsServer(_Guarded, ModbusTlsServer):
    def __init__(self, devices: list[SimDevice], guard: Guard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(devices, custom_pdu=CUSTOM_PDUS, **kwargs)
        self._fast_reads(devices)
