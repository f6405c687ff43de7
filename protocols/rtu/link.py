"""One half-duplex Modbus RTU bus: transactions one at a time, the 3.5-character
inter-frame gap, the response timeout, retries and per-bus / per-slave counters.

Timing rules (Modbus over serial line, 2.5.1.1):
- a request is sent no earlier than one frame gap after the last byte seen on
  the bus (reply or stray bytes);
- a reply is complete when it has the length its header promises; a burst that
  does not parse is read until the line has been silent for a frame gap, so
  garbage glued to a frame is counted once (as CRC) and dropped whole;
- the response deadline is the timeout plus the reply's own wire time, so a
  long reply at a low baud rate is not cut off by a timeout chosen for short ones;
- after a transaction that ended without a whole valid reply (a timeout, a
  short, bad or garbled frame), the next request waits until the line has been
  silent for the guard window (``BusConfig.guard_s``), dropping what arrives
  meanwhile. RTU replies carry no transaction id: a late reply to the failed
  request, same slave, function and length, valid CRC, would otherwise be
  taken for the next request's answer, and every later reply of the batch
  with it, shifted by one transaction.

The link is blocking code for the bus's own thread (core/engine.py): a wait is
a sleep in the kernel, so a transaction costs a write, a sleep, a read and the
checks, without an event loop's timer and task machinery around each step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from btms_gateway.core.api import BusConfig, CommCounters, ErrorKind, PollError
from fastcrc.crc16 import modbus as _crc

from . import framing
from .transport import SerialTransport, TcpTransport, Transport

_sleep, _monotonic = time.sleep, time.monotonic

# Retrying these is pointless: the slave answered on purpose, or the port is gone.
_NO_RETRY = (ErrorKind.EXCEPTION, ErrorKind.PORT)
# A burst that does not parse is read until this much silence (or a frame gap if
# longer): generous, because USB adapters and ptys deliver in bursts, and this
# path only runs when the reply is already bad.
_BAD_BURST_SILENCE_S = 0.02
# How a slave's reply latency is learned (RtuLink._transaction): the share of
# replies allowed to be still short at the first read, and the step the
# estimate moves by. A step, not a multiple of what was seen: one reply held up
# by a loaded machine moves the estimate by at most a step, so it cannot delay
# the first read of the next many transactions (and with them the data served).
_LATE_MISS_SHARE = 0.1
_LATE_STEP_S = 0.0005


class RtuLink:
    """A BusLink (core.profiles) for one configured bus.

    ``counters`` covers the whole bus, ``counters_for(slave)`` one slave; every
    attempt (a retry too) counts one request and either one response or one
    error. Stray bytes found on the line before a request are dropped: a whole
    valid frame from a slave this link polls is a late reply, counted as
    LATE on the bus and on that slave; anything else is counted as a CRC
    error on the bus counters only (no slave can be blamed).
    """

    def __init__(self, bus: BusConfig) -> None:
        self.bus = bus
        self.counters = CommCounters()
        self._per_slave: dict[int, CommCounters] = {}
        self._transport: Transport = (
            SerialTransport(bus) if bus.transport == "serial" else TcpTransport(bus)
        )
        self._lock = threading.Lock()
        self._gap = bus.frame_gap_s()
        self._guard = bus.guard_s()
        # the silence kept before the next request: the gap, or the guard
        # window after a transaction that ended without a whole valid reply
        self._quiet = self._gap
        self._char = bus.char_time_s()
        self._idle_since = 0.0  # monotonic time the bus last went quiet
        self._closing = False
        # per slave: how long after its wire time its data replies are whole
        self._late: dict[int, float] = {}
        self._late_cap = min(0.02, bus.timeout_s / 4)

    def counters_for(self, slave: int) -> CommCounters:
        counters = self._per_slave.get(slave)
        if counters is None:  # not setdefault: a fresh CommCounters per transaction adds up
            counters = self._per_slave[slave] = CommCounters()
        return counters

    @property
    def is_open(self) -> bool:
        return self._transport.is_open

    def open(self) -> None:
        with self._lock:
            self._closing = False
            if not self._transport.is_open:
                self._transport.open()
                self._idle_since = time.monotonic()

    def close(self) -> None:
        """Close the port; safe from another thread: a batch in flight ends
        after its current transaction (PollError PORT) and the port is closed
        once it has."""
        self._closing = True
        with self._lock:
            self._transport.close()

    def read_holding_registers(
        self, slave: int, address: int, count: int, *, retries: int | None = None
    ) -> list[int]:
        return self.read_ranges(slave, ((address, count),), retries=retries)[0]

    def read_ranges(
        self,
        slave: int,
        ranges: Sequence[tuple[int, int]],
        *,
        retries: int | None = None,
    ) -> list[list[int]]:
        """Several reads of one slave, back to back. Each read is its own
        transaction with its own retries; the first that fails for good ends
        the batch."""
        for _address, count in ranges:
            if not 1 <= count <= framing.MAX_READ_COUNT:
                raise ValueError(f"count must be 1..{framing.MAX_READ_COUNT}, got {count}")
        attempts = 1 + (self.bus.retries if retries is None else retries)
        out: list[list[int]] = []
        with self._lock:
            for address, count in ranges:
                for attempt in range(attempts):
                    try:
                        out.append(self._transaction(slave, address, count))
                        break
                    except PollError as exc:
                        if exc.kind in _NO_RETRY or attempt == attempts - 1:
                            raise
        return out

    def _transaction(self, slave: int, address: int, count: int) -> list[int]:
        """One request and its reply.

        The usual case (a quiet line, a reply whole and valid at the first
        read) runs straight through: a sleep for the gap, a write, a sleep
        until the reply should be in, one read. Anything else (stray bytes, a
        port failure, a reply late, short, bad or an exception) goes on the
        careful path, which decides every case. The straight path is worth
        its few lines: a bus thread sleeps between every two steps, so its
        caches are cold whenever it runs, and each call it makes costs more
        than its bytecode (measured on a pty: 300 -> 200 us of CPU per
        120-register transaction).

        "Should be in" is the wire time plus the slave's own latency, learned
        per slave: a real slave takes time to turn round, a USB adapter
        delivers in bursts, the simulator releases its last chunk a little
        after its wire time. Read at the wire time alone, most replies were
        still short and cost a second sleep and read on the careful path (at
        full scale 9 in 10 with the simulator in the same process). The
        estimate is a running quantile: a step up when the first read is
        short, a tenth of a step down when it is whole, so about one reply
        in ten is still read twice and the first read comes no later than
        the slower tenth of this slave's replies needs. It only decides when
        to look: the response deadline is the wire time plus the timeout, as
        before, and failed replies do not move it."""
        tr = self._transport
        if tr._fd is None or self._closing:
            raise PollError(ErrorKind.PORT, f"bus {self.bus.name} is not open")
        counters = self.counters
        per_slave = self.counters_for(slave)
        quiet = self._quiet
        delay = max(self._idle_since, tr.last_rx) + quiet - _monotonic()
        if delay > 0:
            _sleep(delay)
        if tr.rx or tr.pending():  # strays on the line (a late reply?), or the port failed
            self._wait_quiet(quiet)
        request = framing.read_request(slave, address, count)
        counters.requests += 1
        per_slave.requests += 1
        need = 5 + 2 * count
        try:
            try:
                sent = tr.raw_write(request)
            except OSError:
                sent = 0
            if sent != len(request):  # short, refused or failed: the careful write
                tr.write(request[sent:])
            # a slave sees the end of the request only after a frame gap of
            # silence: its reply cannot be complete before sent + wire + gap
            complete_at = _monotonic() + (len(request) + need) * self._char + self._gap
            late = self._late.get(slave, 0.0)
            delay = complete_at + late - _monotonic()
            if delay > 0:
                _sleep(delay)
            try:
                data = tr.raw_read()
            except OSError:  # nothing yet (EAGAIN), or a failure the careful path reports
                data = b""
            if (
                len(data) == need
                and data[0] == slave
                and data[1] == framing.READ_HOLDING
                and data[2] == 2 * count
                and _crc(data) == 0
            ):
                registers = framing.registers_of(data, count)
                if late:
                    self._late[slave] = max(0.0, late - _LATE_STEP_S * _LATE_MISS_SHARE)
            else:
                if data:
                    tr._received(data)
                buf, crc_good = self._receive(count, complete_at, complete_at + self.bus.timeout_s)
                registers = framing.classify(buf, slave, count, crc_good=crc_good)
                self._late[slave] = min(
                    self._late_cap, late + _LATE_STEP_S * (1 - _LATE_MISS_SHARE)
                )
        except PollError as exc:
            now = time.time()
            counters.record_error(exc.kind, exc.detail, now)
            per_slave.record_error(exc.kind, exc.detail, now)
            if exc.kind is ErrorKind.EXCEPTION:  # a valid reply, just not data
                counters.responses += 1
                per_slave.responses += 1
                self._quiet = self._gap
            else:  # its reply may still come: keep the line quiet for the guard first
                self._quiet = self._guard
            raise
        finally:
            self._idle_since = max(self._idle_since, tr.last_rx, _monotonic())
        counters.responses += 1
        per_slave.responses += 1
        self._quiet = self._gap
        return registers

    def _wait_quiet(self, quiet: float) -> None:
        """Keep the bus silent for ``quiet`` (a frame gap, or the guard window
        after a failed transaction) before a request; bytes that arrive
        meanwhile are strays (a late reply, noise): the silence starts again
        after them, and they are dropped and counted once it is kept. A line
        that never goes quiet (a babbling device) is given up on after one
        response timeout more: the request goes out and its reply will show
        the damage."""
        tr = self._transport
        give_up = time.monotonic() + self.bus.timeout_s + quiet
        dropped = bytearray()
        while True:
            delay = max(self._idle_since, tr.last_rx) + quiet - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stray = tr.take()
            if not stray:
                break
            dropped += stray
            self._idle_since = time.monotonic()
            if self._idle_since > give_up:
                break
        if dropped:
            self._count_stray(bytes(dropped))

    def _count_stray(self, stray: bytes) -> None:
        """A whole valid frame from a slave this link polls is a late reply
        (LATE, on the bus and that slave: its timeout is too short); anything
        else is noise no slave can be blamed for (CRC, on the bus)."""
        now = time.time()
        slave = stray[0]
        if len(stray) >= framing.EXCEPTION_LENGTH and framing.crc_ok(stray):
            per_slave = self._per_slave.get(slave)
            if per_slave is not None:
                detail = f"late reply from slave {slave} ({len(stray)} bytes) dropped"
                self.counters.record_error(ErrorKind.LATE, detail, now)
                per_slave.record_error(ErrorKind.LATE, detail, now)
                return
        self.counters.record_error(
            ErrorKind.CRC, f"{len(stray)} stray bytes on the line dropped", now
        )

    def _receive(
        self, count: int, complete_at: float, deadline: float
    ) -> tuple[bytes, bool | None]:
        """Collect one reply: nothing is read before ``complete_at``, the
        earliest moment a whole data reply can have crossed the wire. Then:

        - the reply is whole when it has the length its header promises and
          its CRC checks (said so, so it is not computed twice);
        - a burst that does not parse is read until a frame gap of silence (or
          the deadline), so garbage glued to a frame is judged and dropped whole;
        - a reply still short is waited for until the deadline: when bytes came
          since the last look, the rest follows at wire speed, so the next look
          is when it can be in (first an exception's length, enough to read the
          header, then the length the header promises); when nothing came, the
          port is waited on. A slave that answers late, or an adapter that
          delivers in bursts, so costs two or three reads, not one per chunk.
        """
        tr = self._transport
        delay = complete_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        seen = 0
        while True:
            tr.read_now()
            tr.raise_if_failed()
            buf = tr.rx
            n = len(buf)
            need = framing.expected_length(buf, count)
            now = time.monotonic()
            if n >= need:
                if n == need and framing.crc_ok(buf):
                    return tr.take_buffered(), True
                until = min(deadline, tr.last_rx + max(self._gap, _BAD_BURST_SILENCE_S))
                if now >= until or not tr.wait(until - now):
                    return tr.take(), None
            elif now >= deadline:
                return tr.take_buffered(), None
            elif n > seen:  # the reply is coming: look again when the rest can be in
                seen = n
                want = framing.EXCEPTION_LENGTH if n < framing.EXCEPTION_LENGTH else need
                delay = min(deadline, tr.last_rx + (want - n) * self._char) - now
                if delay > 0:
                    time.sleep(delay)
            elif not tr.wait(deadline - now):
                return tr.take(), None
