"""The listener: a hardened pymodbus TCP/TLS server that answers reads itself.

The listener subclasses pymodbus's TCP/TLS servers only to hand each
connection a :class:`GuardedHandler`: allowlist and connection limit on
accept, an activity stamp for the idle sweeper, and an MBAP header check so
a malformed frame is counted and its connection dropped (a byte stream
cannot resynchronise after a bad header) while the server serves others.

Direct reads. A well-formed FC 03/04 request (a 12-byte ADU, count 1..125)
to a configured unit id is answered where its frame is checked, inside the
``data_received`` callback: :meth:`UnitAction.read_wire` makes the decision
:meth:`UnitAction.read` makes and gives the registers as wire bytes; a
packed 9-byte header (or the 9-byte exception answer) goes in front and the
ADU is written straight to the transport. pymodbus's route for the same
request costs a framer and decoder pass, ``handle_request`` in a Task,
``pdu_send`` -> ``buildFrame`` -> ``ModbusProtocol.send`` and its frame
logging: about 70 of the 110..130 us of server CPU a 125-register read cost
at one connection on the 2-core VM; a direct read's Python is 5..10 us of
the 40..50 left, the rest the kernel's send/recv and the event loop
(bench/bench_modbus.py --against-head). The bytes are the same:
pymodbus answers count 0 or over 125 with 03 from its decoder, so those
(and every other function code, unknown unit ids, FC 0x2B, frames of
another length) still take pymodbus's route. A test compares both routes
byte for byte over a socket, with the counters (tests/test_modbus_direct.py).

Order. Answers leave in request order: while answers through pymodbus are
queued or being made, a direct read queues behind them. One callback
decides at most :data:`ANSWERS_PER_CALLBACK` frames; the rest wait in the
queue, whose task yields to the loop as often, so a client that pipelines
hundreds of requests in one segment cannot hold the event loop (the
acquisition's timers run on it) for more than about a millisecond.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from btms_gateway.core.netguard import ClientAllowlist
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice
from pymodbus.transaction import TransactionManager

from .datastore import (
    CUSTOM_PDUS,
    READ_FUNCTIONS,
    FastReads,
    ServerStats,
    UnitAction,
    build_devices,
)

__all__ = [
    "CUSTOM_PDUS",
    "FastReads",
    "GatewayTcpServer",
    "GatewayTlsServer",
    "Guard",
    "GuardedHandler",
    "ServerStats",
    "UnitAction",
    "build_devices",
]

log = logging.getLogger("btms_gateway.plugins.modbus_tcp")
_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")  # pymodbus's Log._logger

#: everything else answers 01 before decoding: 1/2 reach the action (no coils: 01)
ALLOWED_FUNCTIONS = frozenset((1, 2, 3, 4, 0x2B))
MAX_MBAP_LENGTH = 254  # unit id + PDU (253 bytes): a 260-byte ADU
PIPELINE_BUFFER = 32 * 260  # bytes a connection may have received and not yet decoded
LOG_EVERY_S = 10.0
MAX_READ_COUNT = 125  # pymodbus's ReadHoldingRegistersRequest.MAX_COUNT (its decoder's limit)
#: answers one loop callback makes before it leaves the rest to the next one
ANSWERS_PER_CALLBACK = 16

#: MBAP (transaction id, protocol 0, length, unit id) and two bytes: a read's
#: function code and byte count (the registers follow), or an exception
#: answer's function code | 0x80 and exception code (the whole answer)
_ANSWER_HEAD = struct.Struct(">HHHBBB")


def direct_answer(
    action: UnitAction, tid: int, unit: int, function_code: int, address: int, count: int
) -> bytes:
    """The whole response ADU to a read of ``count`` (1..125) registers: the
    bytes pymodbus's route builds from the same decision (:meth:`UnitAction.read`)."""
    registers = action.read_wire(address, count)
    if type(registers) is bytes:
        size = 2 * count
        return _ANSWER_HEAD.pack(tid, 0, 3 + size, unit, function_code, size) + registers
    return _ANSWER_HEAD.pack(tid, 0, 3, unit, function_code | 0x80, registers)


@dataclass(frozen=True, slots=True)
class _DirectRead:
    """A direct read that must wait for the answers queued before it."""

    action: UnitAction
    tid: int
    unit: int
    function_code: int
    address: int
    count: int

    def answer(self) -> bytes:
        return direct_answer(
            self.action, self.tid, self.unit, self.function_code, self.address, self.count
        )


@dataclass(frozen=True, slots=True)
class _Frame:
    """A whole frame past one callback's share, decided in its turn."""

    frame: bytes


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
    """pymodbus's per-connection handler plus admission, idle stamp, frame
    checks and direct reads."""

    def __init__(self, owner: Any, guard: Guard, direct: dict[int, UnitAction]) -> None:
        super().__init__(owner, None, None, None)
        self.guard = guard
        self.admitted = False
        self.last_seen = time.monotonic()
        self._direct = direct  # unit id -> its action, for the reads answered here
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

    def data_received(self, data: bytes) -> None:
        """pymodbus's ``datagram_received`` without what a TCP server never
        uses: the local-echo check (serial links) and the frame dump (the last
        20 frames kept in a list for its debug log). With pymodbus's logger at
        DEBUG, pymodbus's own, which logs every received frame."""
        if _PYMODBUS_LOG.isEnabledFor(logging.DEBUG) or self.comm_params.handle_local_echo:
            super().data_received(data)
            return
        buffer = self.recv_buffer + data if self.recv_buffer else data
        if len(buffer) > self.max_buffer_size:
            self.recv_buffer = b""
            return
        self.recv_buffer = buffer
        cut = self.callback_data(buffer)
        self.recv_buffer = self.recv_buffer[cut:]

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        """Every complete frame in ``data``, in order; a partial one stays buffered.

        A Modbus TCP client may pipeline: send several requests before the
        first answer. pymodbus's handler decodes one frame per arrival and
        its ``send`` empties the receive buffer, so a second request that came
        in the same segment was never answered. Here each complete frame is
        checked and answered or queued, and the answers go out in request
        order. The first ANSWERS_PER_CALLBACK frames are decided here, the
        rest in their turn by the queue's task."""
        self.last_seen = time.monotonic()
        if not self.admitted:
            return len(data)
        budget = ANSWERS_PER_CALLBACK
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
            if budget:
                budget -= 1
                item = self._request(data[used:end], addr, direct=not self._answering)
            else:
                item = _Frame(data[used:end])
            if item is not None:
                self._queue(item, addr)
            used = end
        return used

    def _request(self, frame: bytes, addr: tuple | None, direct: bool) -> Any:
        """One whole frame, decided: None when answered here (a direct read, if
        ``direct``), else what to answer in its turn: a direct read, a refusal
        (01 without decoding; an exception for an undecodable PDU), or
        pymodbus's decoded request."""
        tid, unit, function_code = frame[0] << 8 | frame[1], frame[6], frame[7]
        if (
            len(frame) == 12
            and function_code in READ_FUNCTIONS
            and (action := self._direct.get(unit)) is not None
            and 1 <= (count := frame[10] << 8 | frame[11]) <= MAX_READ_COUNT
        ):
            address = frame[8] << 8 | frame[9]
            if not direct:  # behind earlier answers
                return _DirectRead(action, tid, unit, function_code, address, count)
            self.transport.write(direct_answer(action, tid, unit, function_code, address, count))
            return None
        if function_code not in ALLOWED_FUNCTIONS:
            # a read-only gateway offers no writes and no diagnostics that change
            # pymodbus's global state (FC 08 counters, ...)
            self.guard.stats.refused_function += 1
            return _refusal(function_code, ExcCodes.ILLEGAL_FUNCTION, unit, tid)
        answering = self.last_pdu  # decoding sets last_pdu: keep the one being answered
        try:
            TransactionManager.callback_data(self, frame, addr)
            return self.last_pdu
        except ModbusIOException as exc:
            self.guard.stats.malformed_pdu += 1
            self.guard.note("pdu", "answered an undecodable request with an exception")
            known = (function_code & 0x7F) in self.server.known_functions
            code = ExcCodes.ILLEGAL_VALUE if known else ExcCodes.ILLEGAL_FUNCTION
            return _refusal(function_code, code, exc.dev_id, exc.transaction_id)
        finally:
            self.last_pdu = answering

    def _queue(self, item: Any, addr: tuple | None) -> None:
        self._pending.append((item, addr))
        if not self._answering:
            self._answering = True
            # a task on the running loop: pymodbus's run_coroutine_threadsafe costs
            # a self-pipe write and an extra loop wake-up per request
            self.loop.create_task(self._answer_pending())

    async def _answer_pending(self) -> None:
        """Answer the queued requests one at a time, in order (pymodbus's
        ``handle_request`` reads the request from ``last_pdu``), yielding to
        the loop every ANSWERS_PER_CALLBACK requests."""
        try:
            answered = 0
            while self._pending:
                if answered == ANSWERS_PER_CALLBACK:
                    answered = 0
                    await asyncio.sleep(0)
                if self.transport is None:  # closed meanwhile: nobody to answer
                    self._pending.clear()
                    return
                answered += 1
                item, addr = self._pending.popleft()
                if isinstance(item, _Frame):  # its turn: decided now
                    item = self._request(item.frame, addr, direct=False)
                if isinstance(item, _DirectRead):
                    self.transport.write(item.answer())
                elif isinstance(item, _Refusal):
                    self.server_send(item.response, addr)
                elif item is not None:
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


class _Guarded:
    """Mixin for pymodbus servers: hand every connection a GuardedHandler, and
    answer register reads through :class:`FastReads`.

    ``direct_reads=False`` (tests and the bench only) answers every read
    through pymodbus's request handling, the reference the direct path is
    compared with."""

    guard: Guard
    context: Any
    direct_reads: bool

    def _fast_reads(self, devices: list[SimDevice]) -> None:
        """Once pymodbus has built its SimCore from ``devices``, put FastReads in front."""
        self.context = FastReads(self.context, devices)

    def callback_new_connection(self) -> GuardedHandler:
        context = self.context
        direct = context.units if self.direct_reads and isinstance(context, FastReads) else {}
        return GuardedHandler(self, self.guard, direct)

    @property
    def known_functions(self) -> frozenset[int]:
        return frozenset(self.decoder.list_function_codes())  # type: ignore[attr-defined]

    def handlers(self) -> list[GuardedHandler]:
        return list(self.active_connections.values())  # type: ignore[attr-defined]

    @property
    def bound_port(self) -> int:
        return int(self.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


class GatewayTcpServer(_Guarded, ModbusTcpServer):
    def __init__(
        self, devices: list[SimDevice], guard: Guard, *, direct_reads: bool = True, **kwargs: Any
    ) -> None:
        self.guard = guard
        self.direct_reads = direct_reads
        super().__init__(devices, custom_pdu=CUSTOM_PDUS, **kwargs)
        self._fast_reads(devices)


class GatewayTlsServer(_Guarded, ModbusTlsServer):
    """The same handler on TLS: pymodbus's TLS framer reads the same MBAP
    frames (the header check above cuts them), so direct reads apply as is."""

    def __init__(
        self, devices: list[SimDevice], guard: Guard, *, direct_reads: bool = True, **kwargs: Any
    ) -> None:
        self.guard = guard
        self.direct_reads = direct_reads
        super().__init__(devices, custom_pdu=CUSTOM_PDUS, **kwargs)
        self._fast_reads(devices)
