"""One half-duplex Modbus RTU bus: transactions one at a time, the 3.5-character
inter-frame gap, the response timeout, retries and per-bus / per-slave counters.

Timing rules (Modbus over serial line, 2.5.1.1):
- a request is sent no earlier than one frame gap after the last byte seen on
  the bus (reply or stray bytes);
- a reply is complete when it has the length its header promises; a burst that
  does not parse is read until the line has been silent for a frame gap, so
  garbage glued to a frame is counted once (as CRC) and dropped whole;
- the response deadline is the timeout plus the reply's own wire time, so a
  long reply at a low baud rate is not cut off by a timeout chosen for short ones.
"""

from __future__ import annotations

import asyncio
import time

from btms_gateway.core.config import BusConfig
from btms_gateway.core.counters import CommCounters
from btms_gateway.core.profiles import ErrorKind, PollError

from . import framing
from .transport import SerialTransport, TcpTransport, Transport

# Retrying these is pointless: the slave answered on purpose, or the port is gone.
_NO_RETRY = (ErrorKind.EXCEPTION, ErrorKind.PORT)
# A burst that does not parse is read until this much silence (or a frame gap if
# longer): generous, because USB adapters and ptys deliver in bursts, and this
# path only runs when the reply is already bad.
_BAD_BURST_SILENCE_S = 0.02


class RtuLink:
    """A BusLink (core.profiles) for one configured bus.

    ``counters`` covers the whole bus, ``counters_for(slave)`` one slave; every
    attempt (a retry too) counts one request and either one response or one
    error. Stray bytes found on the line before a request are counted as a CRC
    error on the bus counters only (no slave can be blamed) and dropped.
    """

    def __init__(self, bus: BusConfig) -> None:
        self.bus = bus
        self.counters = CommCounters()
        self._per_slave: dict[int, CommCounters] = {}
        self._transport: Transport = (
            SerialTransport(bus) if bus.transport == "serial" else TcpTransport(bus)
        )
        self._lock = asyncio.Lock()
        self._gap = bus.frame_gap_s()
        self._char = bus.char_time_s()
        self._idle_since = 0.0  # monotonic time the bus last went quiet

    def counters_for(self, slave: int) -> CommCounters:
        counters = self._per_slave.get(slave)
        if counters is None:  # not setdefault: a fresh CommCounters per transaction adds up
            counters = self._per_slave[slave] = CommCounters()
        return counters

    @property
    def is_open(self) -> bool:
        return self._transport.is_open

    async def open(self) -> None:
        if not self._transport.is_open:
            await self._transport.open()
            self._idle_since = time.monotonic()

    async def close(self) -> None:
        self._transport.close()

    async def read_holding_registers(
        self, slave: int, address: int, count: int, *, retries: int | None = None
    ) -> list[int]:
        if not 1 <= count <= framing.MAX_READ_COUNT:
            raise ValueError(f"count must be 1..{framing.MAX_READ_COUNT}, got {count}")
        attempts = 1 + (self.bus.retries if retries is None else retries)
        async with self._lock:
            for attempt in range(attempts):
                try:
                    return await self._transaction(slave, address, count)
                except PollError as exc:
                    if exc.kind in _NO_RETRY or attempt == attempts - 1:
                        raise
        raise AssertionError("unreachable")

    async def _transaction(self, slave: int, address: int, count: int) -> list[int]:
        if not self._transport.is_open:
            raise PollError(ErrorKind.PORT, f"bus {self.bus.name} is not open")
        per_slave = self.counters_for(slave)
        await self._wait_gap()
        request = framing.read_request(slave, address, count)
        self.counters.requests += 1
        per_slave.requests += 1
        try:
            self._transport.write(request)
            sent = time.monotonic()
            wire = (len(request) + framing.reply_length(count)) * self._char
            # a slave sees the end of the request only after a frame gap of
            # silence: its reply cannot be complete before sent + wire + gap
            complete_at = sent + wire + self._gap
            buf, crc_good = await self._receive(
                count, complete_at, complete_at + self.bus.timeout_s
            )
            registers = framing.classify(buf, slave, count, crc_good=crc_good)
        except PollError as exc:
            now = time.time()
            self.counters.record_error(exc.kind, exc.detail, now)
            per_slave.record_error(exc.kind, exc.detail, now)
            if exc.kind is ErrorKind.EXCEPTION:  # a valid reply, just not data
                self.counters.responses += 1
                per_slave.responses += 1
            raise
        finally:
            self._idle_since = max(self._idle_since, self._transport.last_rx, time.monotonic())
        self.counters.responses += 1
        per_slave.responses += 1
        return registers

    async def _wait_gap(self) -> None:
        """Keep the bus silent for one frame gap before a request; bytes that
        arrive meanwhile are strays (a late reply, noise) and are dropped. A line
        that never goes quiet (a babbling device) is given up on after one
        response timeout: the request goes out and its reply will show the damage."""
        give_up = time.monotonic() + self.bus.timeout_s
        while True:
            quiet_until = max(self._idle_since, self._transport.last_rx) + self._gap
            delay = quiet_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stray = self._transport.take()
            if not stray:
                return
            self._idle_since = time.monotonic()
            self.counters.record_error(
                ErrorKind.CRC, f"{len(stray)} stray bytes on the line dropped", time.time()
            )
            if self._idle_since > give_up:
                return

    async def _receive(
        self, count: int, complete_at: float, deadline: float
    ) -> tuple[bytes, bool | None]:
        """Collect one reply: return as soon as the header's length is in and
        its CRC checks (and say so, so it is not computed twice); otherwise read
        on until a frame gap of silence (or the deadline) so the whole bad burst
        is judged and dropped at once. Waits for whole frames, not chunks: first
        for an exception reply's length (enough to read the header), then for
        the length the header promises. Nothing is read before ``complete_at``,
        the earliest moment a full data reply can have crossed the wire."""
        tr = self._transport
        not_before: float | None = complete_at
        while True:
            buf = tr.rx
            need = framing.expected_length(buf, count)
            if len(buf) >= need:
                if len(buf) == need and framing.crc_ok(bytes(buf)):
                    return tr.take(), True
                silence_end = min(deadline, tr.last_rx + max(self._gap, _BAD_BURST_SILENCE_S))
                if not await tr.wait_data(silence_end):
                    return tr.take(), None
                continue
            want = framing.EXCEPTION_LENGTH if len(buf) < framing.EXCEPTION_LENGTH else need
            if not await tr.wait_data(deadline, want, not_before):
                return tr.take(), None
            not_before = None
