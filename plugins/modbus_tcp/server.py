"""The listener: a hardened pymodbus TCP/TLS server that answers reads itself.

The listener subclasses pymodbus's TCP/TLS servers only to hand each
connection a :class:`GuardedHandler`: the allowlist and the connection slots
(per address and in total, evicting the least recently active connection
rather than refusing a new one) on accept, before any byte is read; a
deadline for each request from its first byte; an activity stamp for the
idle sweeper that only whole requests move; flow control instead of a
buffer cap; and an MBAP header check so a malformed frame is counted and its
connection dropped (a byte stream cannot resynchronise after a bad header)
while the server serves others. Refusals and closes are counted
(:class:`ServerStats`, :class:`ListenerStats`) and logged once with a count.

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
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from btms_gateway.core.api import (
    FD_RESERVE,
    ClientAllowlist,
    ConnectionSlots,
    LogTally,
    may_accept,
    peer_host,
)
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.logging import Log
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

if TYPE_CHECKING:
    from .settings import ModbusTcpSettings

__all__ = [
    "CUSTOM_PDUS",
    "FastReads",
    "GatewayTcpServer",
    "GatewayTlsServer",
    "Guard",
    "GuardedHandler",
    "ListenerStats",
    "ServerStats",
    "UnitAction",
    "build_devices",
]

log = logging.getLogger("btms_gateway.plugins.modbus_tcp")
_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")  # pymodbus's Log._logger

#: everything else answers 01 before decoding: 1/2 reach the action (no coils: 01)
ALLOWED_FUNCTIONS = frozenset((1, 2, 3, 4, 0x2B))
MAX_MBAP_LENGTH = 254  # unit id + PDU (253 bytes): a 260-byte ADU
#: requests a connection may have waiting for their answers before it stops reading
MAX_BACKLOG = 32
#: the default time a request (and a TLS handshake) has to complete (settings.py's)
REQUEST_TIMEOUT_S = 5.0
LOG_EVERY_S = 10.0
#: how far below every connection that sent a valid request one that did not ranks
NEVER_SERVED = 1e9
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


@dataclass(slots=True)
class ListenerStats:
    """The listener's own counters, beside :class:`ServerStats` (shared with
    the request handling): what the connection guard closed, and why."""

    evicted: int = 0  # closed to make room for a newer connection
    request_timeouts: int = 0  # a request not complete request_timeout_s after its first byte
    handshake_failed: int = 0  # TLS handshake refused, broken or not done in request_timeout_s
    write_stalled: int = 0  # the client left its answers unread for request_timeout_s


class Guard:
    """Who may connect, how many at once (in total and per address), how long a
    request may take, and the counters for what was refused or closed.

    The plain and TLS listeners share one guard, so they share its limits."""

    def __init__(
        self,
        allowlist: ClientAllowlist,
        max_connections: int,
        stats: ServerStats,
        *,
        per_address: int | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.allowlist = allowlist
        self.max_connections = max_connections
        self.stats = stats
        self.counts = ListenerStats()
        self.request_timeout_s = request_timeout_s
        self.slots: ConnectionSlots[GuardedHandler] = ConnectionSlots(
            max_connections, min(per_address or max_connections, max_connections)
        )
        self.tally = LogTally(log, LOG_EVERY_S)

    @classmethod
    def from_settings(cls, settings: ModbusTcpSettings, stats: ServerStats) -> Guard:
        return cls(
            settings.allowlist,
            settings.max_connections,
            stats,
            per_address=settings.max_connections_per_address,
            request_timeout_s=settings.request_timeout_s,
        )

    def admit(self, handler: GuardedHandler, host: str) -> str | None:
        """None when ``handler`` may serve ``host`` (a slot made for it by
        evicting another connection if need be), else why it may not."""
        if not self.allowlist.allows(host):
            self.stats.refused_allowlist += 1
            return f"client {host or '?'} is not in the allow list"
        victim = self.slots.victim(host)
        if victim is not None:
            self.counts.evicted += 1
            self.note(
                "evicted",
                "closed the least recently active connection, from %s, for a new one "
                "from %s (limits: %d connections, %d per address)",
                victim.host, host, self.max_connections, self.slots.per_address,
            )  # fmt: skip
            victim.drop()
        self.slots.add(handler, host)
        return None

    def note(self, kind: str, message: str, *args: Any) -> None:
        """Log the first of a kind at once and the rest as one counted line per
        LOG_EVERY_S: a flood of bad clients is counted, not written line by line."""
        self.tally.note(kind, message, *args)


class GuardedHandler(ServerRequestHandler):
    """pymodbus's per-connection handler plus admission, deadlines, flow
    control, frame checks and direct reads.

    Deadlines. A request must be complete ``request_timeout_s`` after its
    first byte arrived (a timer armed when a frame is left partial, never
    pushed back by more bytes of it), and ``last_seen``, which the idle
    sweeper reads, moves only when a whole request arrives: a client sending
    a byte a minute, or an MBAP length larger than what follows, is closed
    instead of holding its slot.

    Flow control. At most MAX_BACKLOG requests wait for their answers; past
    that the connection stops reading (the kernel's buffers, then TCP, hold
    the rest) until they are answered, and while the client does not read
    its answers (the transport's write buffer is full) no more are made. So
    a pipelined burst of any size is answered in full, in order, with
    bounded memory; a client that never reads is closed after
    ``request_timeout_s``."""

    #: pymodbus declares BaseTransport; a listener's connections are stream
    #: transports (write, pause_reading, resume_reading, abort)
    transport: asyncio.Transport

    def __init__(self, owner: Any, guard: Guard, direct: dict[int, UnitAction]) -> None:
        super().__init__(owner, None, None, None)
        self.guard = guard
        self.admitted = False
        self.host = ""
        self.last_seen = self._connected_at = time.monotonic()  # or the last whole request
        self._valid_at: float | None = None  # the last valid request (eviction rank)
        self._valid = False  # _request decided a valid request since the last stamp
        self._direct = direct  # unit id -> its action, for the reads answered here
        self._pending: deque[tuple[Any, tuple | None]] = deque()
        self._answering = False
        self._deadline: asyncio.TimerHandle | None = None  # the partial request's
        self._stall: asyncio.TimerHandle | None = None  # answers left unread
        self._handshaking = False
        self._backlogged = False  # reading paused: MAX_BACKLOG requests wait
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._tls_task: asyncio.Task[None] | None = None  # the handshake (TLS listener)

    @property
    def last_active(self) -> float:
        """Its rank for eviction (ConnectionSlots): the time of its last valid
        request (a read, or another request of a function served, that
        decoded); a connection that has sent none (idle, or junk only) ranks
        below all that have, oldest first. A SCADA that polls is never
        evicted before the idle sockets or the junk of a flood, even one
        from its own address."""
        if self._valid_at is not None:
            return self._valid_at
        return self._connected_at - NEVER_SERVED

    def connection_made(self, transport: Any) -> None:
        """Admission before any byte is read; on the TLS listener, before the
        handshake (see :class:`GatewayTlsServer`)."""
        super().connection_made(transport)
        self.host = peer_host(transport.get_extra_info("peername"))
        sock = transport.get_extra_info("socket")
        if sock is not None and not may_accept(sock.fileno()):
            self.guard.note(
                "descriptors",
                "refused a connection from %s: file descriptors are running out "
                "(the last %d are kept for the serial ports)",
                self.host,
                FD_RESERVE,
            )
            transport.abort()
            return
        if reason := self.guard.admit(self, self.host):
            self.guard.note("refused", "refused a connection from %s: %s", self.host, reason)
            transport.abort()
            return
        self.admitted = True
        self.guard.stats.connections += 1
        sslctx = getattr(self.server, "tls_context", None)
        if sslctx is not None:
            self._handshaking = True
            transport.pause_reading()  # the TLS layer reads from here on
            self._tls_task = self.loop.create_task(self._start_tls(transport, sslctx))

    async def _start_tls(self, raw: Any, sslctx: ssl.SSLContext) -> None:
        failure: BaseException | None = None
        try:
            tls = await self.loop.start_tls(
                raw, self, sslctx, server_side=True,
                ssl_handshake_timeout=self.guard.request_timeout_s,
            )  # fmt: skip
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            tls, failure = None, exc
        if tls is None or not self.admitted:
            # the TLS layer never calls connection_lost for a connection whose
            # handshake did not complete: release it and pymodbus's entry here
            if self.admitted:
                self.guard.counts.handshake_failed += 1
                self.guard.note(
                    "handshake", "closed a TLS connection from %s: handshake %s",
                    self.host, type(failure).__name__ if failure else "aborted",
                )  # fmt: skip
            self._release()
            raw.abort()
            self.close()
            return
        self.transport = tls
        self._handshaking = False
        if self.recv_buffer:  # arrived with the handshake's last flight
            self._feed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        self._cancel_deadline()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # the answering task sees the transport gone
        if self.recv_buffer:
            self.guard.stats.truncated += 1
            self.recv_buffer = b""
        self.guard.slots.remove(self)
        if self.admitted:
            self.admitted = False
            self.guard.stats.connections -= 1

    def drop(self) -> None:
        """Close this connection now (bad header, idle, timed out, evicted)."""
        self._release()
        if self.transport:
            self.transport.abort()

    # --- reading ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """pymodbus's ``datagram_received`` without what a TCP server never
        uses (the local-echo check of serial links) and without its buffer
        cap, which dropped the bytes of a pipelined burst past 516 bytes
        (8,320 here before) unanswered while the connection stayed open:
        here reading pauses instead (see the class docstring)."""
        if not self.admitted:
            return
        if _PYMODBUS_LOG.isEnabledFor(logging.DEBUG):
            Log.transport_dump(Log.RECV_DATA, data, self.recv_buffer)
        self.recv_buffer = self.recv_buffer + data if self.recv_buffer else data
        if not self._handshaking and not self._backlogged:
            self._feed()

    def _feed(self) -> None:
        """Decide the whole frames buffered, then watch what is left: a
        partial frame gets a deadline, whole frames past the backlog pause
        reading until the answering task has caught up."""
        buffer = self.recv_buffer
        cut = self.callback_data(buffer)
        if not self.admitted:  # dropped: a bad header
            return
        rest = self.recv_buffer = buffer[cut:]
        if not rest:
            self._cancel_deadline()
        elif len(rest) >= 6 and len(rest) >= 6 + (rest[4] << 8 | rest[5]):
            # a whole frame left: the backlog is full (the header was checked)
            self._cancel_deadline()
            if not self._backlogged:
                self._backlogged = True
                self.transport.pause_reading()
        else:
            if cut:  # a new request began after the ones just decided
                self._cancel_deadline()
            if self._deadline is None:
                self._deadline = self.loop.call_later(
                    self.guard.request_timeout_s, self._request_expired
                )

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_expired(self) -> None:
        self._deadline = None
        self._close_late(
            "request_timeouts",
            "closed a connection from %s: a request was not complete %.1f s after its first byte",
        )

    def _close_late(self, counter: str, message: str) -> None:
        """Close a connection that let request_timeout_s pass, counted in
        ``counter`` of the guard's ListenerStats and logged as its kind."""
        if not self.admitted:
            return
        setattr(self.guard.counts, counter, getattr(self.guard.counts, counter) + 1)
        self.guard.note(counter, message, self.host, self.guard.request_timeout_s)
        self.drop()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        """Every complete frame in ``data``, in order, up to the backlog; a
        partial one stays buffered.

        A Modbus TCP client may pipeline: send several requests before the
        first answer. pymodbus's handler decodes one frame per arrival and
        its ``send`` empties the receive buffer, so a second request that came
        in the same segment was never answered. Here each complete frame is
        checked and answered or queued, and the answers go out in request
        order. The first ANSWERS_PER_CALLBACK frames are decided here, the
        rest in their turn by the queue's task."""
        if not self.admitted:
            return len(data)
        budget = ANSWERS_PER_CALLBACK
        used = 0
        while len(data) - used >= 7 and len(self._pending) < MAX_BACKLOG:
            length = data[used + 4] << 8 | data[used + 5]
            if data[used + 2] or data[used + 3] or not 2 <= length <= MAX_MBAP_LENGTH:
                self.guard.stats.malformed_header += 1
                self.guard.note(
                    "header",
                    "closed a connection from %s: malformed MBAP header (protocol id "
                    "%d, length %d)",
                    self.host, data[used + 2] << 8 | data[used + 3], length,
                )  # fmt: skip
                self.recv_buffer = b""
                self.drop()
                return len(data)
            end = used + 6 + length
            if len(data) < end:
                break
            if budget:
                budget -= 1
                direct = not self._answering and self._writable is None
                item = self._request(data[used:end], addr, direct=direct)
            else:
                item = _Frame(data[used:end])
            if item is not None:
                self._queue(item, addr)
            used = end
        if used:
            self.last_seen = time.monotonic()
            self._stamp_valid()
        return used

    def _stamp_valid(self) -> None:
        if self._valid:
            self._valid = False
            self._valid_at = self.last_seen

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
            self._valid = True
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
            self._valid = True
            return self.last_pdu
        except ModbusIOException as exc:
            # pymodbus's decoder refuses a read of 0 or more than 125 registers
            # (03, as the spec orders before any address check) and any PDU of
            # a known function it cannot decode (03); an unknown one is 01
            self.guard.stats.malformed_pdu += 1
            self.guard.note("pdu", "answered an undecodable request from %s with 01/03", self.host)
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
        the loop every ANSWERS_PER_CALLBACK requests and waiting while the
        client is not reading; then decide what reading left buffered while
        the backlog was full, and read again."""
        try:
            answered = 0
            while True:
                while self._pending:
                    if answered == ANSWERS_PER_CALLBACK:
                        answered = 0
                        await asyncio.sleep(0)
                    if self._writable is not None:
                        await self._writable
                    if self.transport is None or not self.admitted:  # closed meanwhile
                        self._pending.clear()
                        return
                    answered += 1
                    item, addr = self._pending.popleft()
                    if isinstance(item, _Frame):  # its turn: decided now
                        item = self._request(item.frame, addr, direct=False)
                        self._stamp_valid()
                    if isinstance(item, _DirectRead):
                        self.transport.write(item.answer())
                    elif isinstance(item, _Refusal):
                        self.server_send(item.response, addr)
                    elif item is not None:
                        self.last_pdu, self.last_addr = item, addr
                        await self.handle_request()
                if not self._backlogged or self.transport is None or not self.admitted:
                    return
                await asyncio.sleep(0)  # what is decided next is a new callback's share
                answered = 0
                if self.transport is None or not self.admitted:
                    return
                self._backlogged = False
                self._feed()  # queues behind this task (still answering)
                if self.admitted and not self._backlogged and self._writable is None:
                    self.transport.resume_reading()
        finally:
            self._answering = False

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        """pymodbus's send also empties the receive buffer (right for a client,
        which drops a stale answer before asking again); a server would lose
        the start of the next pipelined request with it."""
        buffered = self.recv_buffer
        super().send(data, addr)
        self.recv_buffer = buffered

    # --- writing ------------------------------------------------------------------
    def pause_writing(self) -> None:
        """The transport's buffer is full: the client is not reading its answers.
        Stop reading and answering until it does, for at most request_timeout_s."""
        if self._writable is None:
            self._writable = self.loop.create_future()
        if self.transport is not None and not self._handshaking:
            self.transport.pause_reading()
        if self._stall is None:
            self._stall = self.loop.call_later(self.guard.request_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self.transport is not None and self.admitted and not self._backlogged:
            self.transport.resume_reading()

    def _write_stalled(self) -> None:
        self._stall = None
        self._close_late(
            "write_stalled", "closed a connection from %s: its answers were left unread for %.1f s"
        )


class _Guarded:
    """Mixin for pymodbus servers: hand every connection a GuardedHandler, and
    answer register reads through :class:`FastReads`.

    ``direct_reads=False`` (tests and the bench only) answers every read
    through pymodbus's request handling, the reference the direct path is
    compared with."""

    guard: Guard
    context: Any
    direct_reads: bool
    #: TLS is started by each handler once its connection is admitted (TLS listener)
    tls_context: ssl.SSLContext | None = None

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
    frames (the header check above cuts them), so direct reads apply as is.

    The socket listens as plain TCP and each handler starts TLS itself once
    its connection is admitted (``loop.start_tls``, the handshake bounded by
    ``request_timeout_s``). With asyncio's own TLS server the handler would
    learn of a connection only after the handshake: the allowlist and the
    connection limits would not apply to handshakes in progress (any number
    of sockets, each held for asyncio's 60 s handshake timeout), and a
    connection whose handshake failed would never be released (asyncio does
    not report its loss to the protocol, so pymodbus kept its handler)."""

    def __init__(
        self, devices: list[SimDevice], guard: Guard, *, direct_reads: bool = True, **kwargs: Any
    ) -> None:
        self.guard = guard
        self.direct_reads = direct_reads
        super().__init__(devices, custom_pdu=CUSTOM_PDUS, **kwargs)
        self._fast_reads(devices)

    def init_setup_connect_listen(self, host: str, port: int) -> None:
        """pymodbus's listener without ``ssl=``: see the class docstring."""
        self.tls_context = self.comm_params.sslctx
        self.comm_params.sslctx = None
        super().init_setup_connect_listen(host, port)
