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
from collections.abc import Sequence

from btms_gateway.core.config import BusConfig
from btms_gateway.core.counters import CommCounters
from btms_gateway.core.profiles import ErrorKind, PollError

from . import framing
from .exchange import Exchange
from .transport import SerialTransport, TcpTransport, Transport

# Retrying these is pointless: the slave answered on purpose, or the port is gone.
_NO_RETRY = (ErrorKind.EXCEPTION, ErrorKind.PORT)


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
        return (await self.read_ranges(slave, ((address, count),), retries=retries))[0]

    async def read_ranges(
        self,
        slave: int,
        ranges: Sequence[tuple[int, int]],
        *,
        retries: int | None = None,
    ) -> list[list[int]]:
        """Several reads of one slave, back to back, awaited once: a poll's plan
        (a 120-cell string is seven reads) costs the bus task one wake-up
        instead of one per read. Each read is its own transaction, with its
        own retries; the first that fails for good ends the batch."""
        for _address, count in ranges:
            if not 1 <= count <= framing.MAX_READ_COUNT:
                raise ValueError(f"count must be 1..{framing.MAX_READ_COUNT}, got {count}")
        attempts = 1 + (self.bus.retries if retries is None else retries)
        async with self._lock:
            batch = _Batch(self, slave, ranges, attempts)
            try:
                return await batch.start()
            finally:
                batch.stop()

    def _conclude(
        self, slave: int, count: int, buf: bytes, crc_good: bool | None, exc: BaseException | None
    ) -> list[int]:
        """One transaction's bytes as registers, or the PollError it ends with;
        either way counted, and the bus's quiet time taken from its end."""
        per_slave = self.counters_for(slave)
        try:
            if exc is not None:
                raise exc
            registers = framing.classify(buf, slave, count, crc_good=crc_good)
        except PollError as err:
            now = time.time()
            self.counters.record_error(err.kind, err.detail, now)
            per_slave.record_error(err.kind, err.detail, now)
            if err.kind is ErrorKind.EXCEPTION:  # a valid reply, just not data
                self.counters.responses += 1
                per_slave.responses += 1
            raise
        finally:
            self._idle_since = max(self._idle_since, self._transport.last_rx, time.monotonic())
        self.counters.responses += 1
        per_slave.responses += 1
        return registers

    def _sent(self, slave: int) -> None:
        self.counters.requests += 1
        self.counters_for(slave).requests += 1

    def _stray(self, count: int) -> None:
        self._idle_since = time.monotonic()
        self.counters.record_error(
            ErrorKind.CRC, f"{count} stray bytes on the line dropped", time.time()
        )


class _Batch:
    """Runs a batch's transactions one after another from the exchanges'
    callbacks and resolves one future at the end."""

    __slots__ = ("attempt", "attempts", "exchange", "future", "link", "ranges", "results", "slave")

    def __init__(
        self, link: RtuLink, slave: int, ranges: Sequence[tuple[int, int]], attempts: int
    ) -> None:
        self.link = link
        self.slave = slave
        self.ranges = ranges
        self.attempts = attempts
        self.attempt = 0
        self.results: list[list[int]] = []
        self.exchange: Exchange | None = None
        self.future: asyncio.Future[list[list[int]]] = asyncio.get_running_loop().create_future()

    def start(self) -> asyncio.Future[list[list[int]]]:
        self._next()
        return self.future

    def stop(self) -> None:
        if self.exchange is not None:
            self.exchange.stop()

    def _next(self) -> None:
        if self.future.done():
            return
        if len(self.results) == len(self.ranges):
            self.future.set_result(self.results)
            return
        if not self.link.is_open:
            bus = self.link.bus.name
            self.future.set_exception(PollError(ErrorKind.PORT, f"bus {bus} is not open"))
            return
        address, count = self.ranges[len(self.results)]
        request = framing.read_request(self.slave, address, count)
        self.exchange = Exchange(self.link, request, count, self._exchanged)
        self.exchange.start()

    def _exchanged(self, buf: bytes, crc_good: bool | None, exc: BaseException | None) -> None:
        try:
            count = self.ranges[len(self.results)][1]
            try:
                self.results.append(self.link._conclude(self.slave, count, buf, crc_good, exc))
                self.attempt = 0
            except PollError as err:
                self.attempt += 1
                if err.kind in _NO_RETRY or self.attempt >= self.attempts:
                    raise
            self._next()
        except BaseException as err:  # a bug must fail the poll, not hang its bus task
            if not self.future.done():
                self.future.set_exception(err)
