"""The listener: a hardened Modbus TCP/TLS server that answers every request itself.

The listener is pymodbus's TCP/TLS server (through pymodbus_adapter.py, the
one module that touches pymodbus) handing each connection a
:class:`GuardedHandler`: the allowlist and the connection slots (per
address and in total, evicting the least recently active connection rather
than refusing a new one) on accept, before any byte is read; a
deadline for each request from its first byte; an activity stamp for the
idle sweeper that only whole requests move; flow control instead of a
buffer cap; and an MBAP header check so a malformed frame is counted and its
connection dropped (a byte stream cannot resynchronise after a bad header)
while the server serves others. Refusals and closes are counted
(:class:`ServerStats`, :class:`ListenerStats`) and logged once with a count.

The answers (``fast_path``, the default). Every whole frame is answered
where it is checked, inside the ``data_received`` callback: the fast path's
:meth:`Answerer.reply` (answer.py) computes the response PDU from the
register image, the request's MBAP header goes in front and the ADU is
written straight to the transport. pymodbus's route for the same request
costs a framer and decoder pass, ``handle_request`` in a Task, ``pdu_send``
-> ``buildFrame`` -> ``ModbusProtocol.send`` and its frame logging: about 70
of the 110..130 us of server CPU a 125-register read cost at one connection
on the 2-core VM; the fast path's Python is 5..10 us of the 40..50 left, the
rest the kernel's send/recv and the event loop (bench/bench_modbus.py).

The library path (``fast_path = false``). Every frame goes to pymodbus's
decoder, request handling and ``SimCore`` datastore (pymodbus_adapter.py),
after the same guard; only a function the gateway does not serve is
refused (01) before decoding. The bytes and the counters are the same
either way: tests/test_modbus_direct.py compares both over sockets.

Order. Answers leave in request order: while answers are queued (or, on
the library path, being made by pymodbus), a new frame queues behind them. One callback
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

from .answer import ALLOWED_FUNCTIONS, Answerer, Exc, ServerStats, UnitRegisters
from .pymodbus_adapter import Connection, Listener, TcpListener, TlsListener, Undecodable

if TYPE_CHECKING:
    from .settings import ModbusTcpSettings

__all__ = [
    "GatewayTcpServer",
    "GatewayTlsServer",
    "Guard",
    "GuardedHandler",
    "ListenerStats",
    "ServerStats",
]

log = logging.getLogger("btms_gateway.plugins.modbus_tcp")

MAX_MBAP_LENGTH = 254  # unit id + PDU (253 bytes): a 260-byte ADU
#: requests a connection may have waiting for their answers before it stops reading
MAX_BACKLOG = 32
#: the default time a request (and a TLS handshake) has to complete (settings.py's)
REQUEST_TIMEOUT_S = 5.0
LOG_EVERY_S = 10.0
#: how far below every connection that sent a valid request one that did not ranks
NEVER_SERVED = 1e9
#: answers one loop callback makes before it leaves the rest to the next one
ANSWERS_PER_CALLBACK = 16

#: the response's MBAP length and unit id (transaction and protocol id are the request's)
_LENGTH_UNIT = struct.Struct(">HB")


@dataclass(frozen=True, slots=True)
class _Frame:
    """A whole frame past one callback's share (or behind earlier answers),
    decided in its turn."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class _Refusal:
    """An exception answer decided without pymodbus's request handling (library path)."""

    function_code: int
    code: Exc
    unit: int
    tid: int


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


class GuardedHandler(Connection):
    """A connection (pymodbus_adapter.Connection) with admission, deadlines,
    flow control, frame checks and the answers: every frame by the fast
    path's :meth:`Answerer.reply`, or (``fast_path = false``) by pymodbus's
    request handling.

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

    def __init__(self, owner: Any, guard: Guard, answerer: Answerer | None) -> None:
        super().__init__(owner)
        self.guard = guard
        self.admitted = False
        self.host = ""
        self.last_seen = self._connected_at = time.monotonic()  # or the last whole request
        self._valid_at: float | None = None  # the last valid request (eviction rank)
        self._valid = False  # _request decided a valid request since the last stamp
        self._answerer = answerer  # the fast path; None: pymodbus answers (library path)
        self.buffer = b""  # received bytes not yet decided (a partial frame, the backlog)
        self._pending: deque[Any] = deque()
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
        sslctx = self.listener_server.tls_context
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
        if self.buffer:  # arrived with the handshake's last flight
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
        if self.buffer:
            self.guard.stats.truncated += 1
            self.buffer = b""
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
        self.dump_received(data, self.buffer)
        self.buffer = self.buffer + data if self.buffer else data
        if not self._handshaking and not self._backlogged:
            self._feed()

    def _feed(self) -> None:
        """Decide the whole frames buffered, then watch what is left: a
        partial frame gets a deadline, whole frames past the backlog pause
        reading until the answering task has caught up."""
        buffer = self.buffer
        cut = self.decide_frames(buffer)
        if not self.admitted:  # dropped: a bad header
            return
        rest = self.buffer = buffer[cut:]
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

    def decide_frames(self, data: bytes) -> int:
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
                self.buffer = b""
                self.drop()
                return len(data)
            end = used + 6 + length
            if len(data) < end:
                break
            if budget:
                budget -= 1
                direct = not self._answering and self._writable is None
                item = self._request(data[used:end], direct=direct)
            else:
                item = _Frame(data[used:end])
            if item is not None:
                self._queue(item)
            used = end
        if used:
            self.last_seen = time.monotonic()
            self._stamp_valid()
        return used

    def _stamp_valid(self) -> None:
        if self._valid:
            self._valid = False
            self._valid_at = self.last_seen

    def _request(self, frame: bytes, direct: bool) -> Any:
        """One whole frame, decided. Fast path: answered now if ``direct``
        (None), else a :class:`_Frame` answered in its turn. Library path: a
        refusal (01 without decoding; an exception for an undecodable PDU) or
        pymodbus's decoded request, answered in its turn."""
        if self._answerer is not None:
            if not direct:  # behind earlier answers
                return _Frame(frame)
            self.transport.write(self._reply(frame))
            return None
        tid, unit, function_code = frame[0] << 8 | frame[1], frame[6], frame[7]
        if function_code not in ALLOWED_FUNCTIONS:
            # a read-only gateway offers no writes and no diagnostics that change
            # pymodbus's global state (FC 08 counters, ...)
            self.guard.stats.refused_function += 1
            return _Refusal(function_code, Exc.ILLEGAL_FUNCTION, unit, tid)
        try:
            request = self.decode(frame)
        except Undecodable as exc:
            # pymodbus's decoder refuses a read of 0 or more than 125 registers
            # (03, as the spec orders before any address check) and any PDU of
            # a known function it cannot decode (03); an unknown one is 01
            self.guard.stats.malformed_pdu += 1
            self._undecodable()
            return _Refusal(function_code, exc.code, exc.unit, exc.tid)
        self._valid = True
        return request

    def _reply(self, frame: bytes) -> bytes:
        """The fast path's response ADU to one whole frame (:meth:`Answerer.reply`)."""
        assert self._answerer is not None
        stats = self.guard.stats
        malformed = stats.malformed_pdu
        unit = frame[6]
        pdu = self._answerer.reply(unit, frame[7:])
        if stats.malformed_pdu != malformed:
            self._undecodable()
        elif frame[7] in ALLOWED_FUNCTIONS:
            self._valid = True
        return frame[:4] + _LENGTH_UNIT.pack(len(pdu) + 1, unit) + pdu

    def _undecodable(self) -> None:
        self.guard.note("pdu", "answered an undecodable request from %s with 01/03", self.host)

    def _queue(self, item: Any) -> None:
        self._pending.append(item)
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
                    item = self._pending.popleft()
                    if isinstance(item, _Frame):  # its turn: decided now
                        if self._answerer is not None:
                            self.transport.write(self._reply(item.frame))
                            self._stamp_valid()
                            continue
                        item = self._request(item.frame, direct=False)
                        self._stamp_valid()
                    if isinstance(item, _Refusal):
                        self.refuse(item.function_code, item.code, item.unit, item.tid)
                    elif item is not None:
                        await self.answer(item)
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


class _Guarded(Listener):
    """Mixin for the listeners: hand every connection a GuardedHandler, with the
    fast path's :class:`Answerer` (``fast_path``) or none (pymodbus answers)."""

    guard: Guard
    answerer: Answerer | None

    def _setup(self, units: dict[int, UnitRegisters], guard: Guard, fast_path: bool) -> None:
        self.guard = guard
        self.answerer = Answerer(units, guard.stats) if fast_path else None

    def new_connection(self) -> GuardedHandler:
        return GuardedHandler(self, self.guard, self.answerer)

    def handlers(self) -> list[GuardedHandler]:
        return self.connections()


class GatewayTcpServer(_Guarded, TcpListener):
    """``units``: the configured unit ids' registers (answer.unit_registers)."""

    def __init__(
        self, units: dict[int, UnitRegisters], guard: Guard, *, fast_path: bool = True,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        self._setup(units, guard, fast_path)
        super().__init__(units, guard.stats, **kwargs)


class GatewayTlsServer(_Guarded, TlsListener):
    """The same handler on TLS: pymodbus's TLS framer reads the same MBAP
    frames (the header check above cuts them), so the fast path applies as is.

    The socket listens as plain TCP and each handler starts TLS itself once
    its connection is admitted (``loop.start_tls``, the handshake bounded by
    ``request_timeout_s``). With asyncio's own TLS server the handler would
    learn of a connection only after the handshake: the allowlist and the
    connection limits would not apply to handshakes in progress (any number
    of sockets, each held for asyncio's 60 s handshake timeout), and a
    connection whose handshake failed would never be released (asyncio does
    not report its loss to the protocol, so pymodbus kept its handler)."""

    def __init__(
        self, units: dict[int, UnitRegisters], guard: Guard, *, fast_path: bool = True,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        self._setup(units, guard, fast_path)
        super().__init__(units, guard.stats, **kwargs)
