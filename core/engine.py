"""The acquisition engine: one thread per bus, strings polled in turn.

A bus is half-duplex, so its strings are polled one after another; buses run
concurrently. A string that stops answering is backed off on its own
(exponentially, up to ``backoff_max_s``) and probed without retries, so it
costs its bus at most one response timeout per cycle, plus the guard window
the link keeps silent after it (``BusConfig.guard_s``). A port that disappears
is reopened every cycle until it comes back.

Each bus has a thread of its own, running blocking code (the RTU link sleeps
in the kernel until a reply can be whole), rather than a task on the
gateway's event loop:

- the event loop is shared with every northbound plugin: there, a plugin's
  long callback (an SNMP walk's 50-varbind answer, a JSON document, a third
  party's hook that blocks) delayed every bus's timers, which showed as
  jitter in the age of the served data at full scale, and a hook that
  blocked stopped acquisition altogether. A bus thread waits for the GIL at
  most one switch interval when the loop is busy: 1 ms while an engine
  runs, not CPython's 5 (``SwitchInterval``);
- asyncio's machinery around each step of a transaction (timer handles, the
  heap, futures, resuming the task) cost more than the transaction's own
  work (docs/performance.md, "Full scale").

Only the polling runs in the bus threads. Each poll's result crosses to the
loop once (``call_soon_threadsafe``), and everything that follows (quality,
the store, alarms, plugins) stays on the loop, in order, as before.

Quality follows Network UPS Tools' stale-data rule: a failed poll keeps the
last good values with their old timestamp and marks them STALE at once;
``offline_after_failures`` consecutive failures (or never having been read)
mean OFFLINE. A watchdog marks a string STALE when its data ages past the
limit without any poll result at all (a stuck bus). Every transition is
logged once, with its cause; so is the first failure of a string that was
never read (it starts OFFLINE: no transition to log). The port's state and a
summary of repeated failures are logged by the bus (core/commlog.py).

Every failed poll is counted, on the string's and the bus's counters, by
cause: a port or converter that cannot be opened fails each string's poll of
that cycle as PORT, a value the device cannot measure as DECODE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .commlog import BusLog
from .config import BusConfig, GatewayConfig, StringConfig
from .counters import CommCounters
from .model import Quality, StringReading, StringSnapshot
from .profiles import BusLink, DeviceProfile, ErrorKind, LinkFactory, PollError, StringPoller
from .store import SnapshotStore

log = logging.getLogger("btms_gateway.engine")

Publish = Callable[[StringSnapshot], None]

#: how long shutdown waits for a bus thread to finish its transaction
JOIN_LIMIT_S = 5.0
#: how long a thread may hold the interpreter while another waits, engines running
SWITCH_INTERVAL_S = 0.001


class SwitchInterval:
    """Lets a bus thread have the interpreter within 1 ms of asking, not 5,
    while any engine of the process runs (and puts the old interval back
    after the last one stops).

    A bus thread wakes a dozen times a poll (a reply due, a gap over) and
    each time needs the interpreter lock; when the event loop is busy (a
    GETBULK of a cell-table walk, a burst of SCADA requests, a client in the
    same process) it waited up to CPython's 5 ms, more when several threads
    queued, and those waits added up in a poll and landed in the age of the
    data served. Measured at full scale with every client working (90 s
    each): poll starts late by p99 6.9 -> 3.0 ms, max 56 -> 10 ms; a poll's
    duration p99 250 -> 195 ms; the CPU within the noise (0.17-0.18 of a
    core both ways). Only threads that actually contend switch more often."""

    _lock = threading.Lock()
    _holders = 0
    _previous = 0.005

    @classmethod
    def hold(cls) -> None:
        with cls._lock:
            if cls._holders == 0:
                cls._previous = sys.getswitchinterval()
                sys.setswitchinterval(min(cls._previous, SWITCH_INTERVAL_S))
            cls._holders += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._holders -= 1
            if cls._holders == 0:
                sys.setswitchinterval(cls._previous)


@dataclass
class StringPoll:
    """The engine's bookkeeping for one string (never shown to plugins directly).
    Owned by its bus's thread."""

    config: StringConfig
    poller: StringPoller
    counters: CommCounters
    failures: int = 0
    next_due: float = 0.0
    backoff_s: float = 0.0
    profile_failed: bool = False
    #: why a string never read failed, as logged (by the engine, on the loop)
    unread_logged: set[ErrorKind] = field(default_factory=set)


@dataclass
class BusStatus:
    name: str
    interval_s: float
    last_cycle_s: float | None = None
    cycles: int = 0
    port_open: bool = False
    counters: CommCounters = field(default_factory=CommCounters)


class BusWorker:
    """One bus's thread: opens the port, polls its strings in their slots and
    hands every poll's result to the engine."""

    def __init__(
        self,
        bus: BusConfig,
        interval_s: float,
        strings: list[StringPoll],
        link: BusLink,
        engine: Engine,
    ) -> None:
        self.bus = bus
        self.link = link
        self.strings = strings
        self.engine = engine
        self.status = BusStatus(bus.name, interval_s, counters=link.counters)
        self.log = BusLog(bus.name, [(s.config.name, s.counters) for s in strings])
        self._was_open = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"bus-{bus.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._cycles()
            except Exception:  # a bug must not end the bus for good: the watchdog reports it
                log.exception("bus %s: polling failed; going on next interval", self.bus.name)
                self._stop.wait(self.status.interval_s)

    def _cycles(self) -> None:
        """One cycle per interval. Each string has its own slot, an equal share
        of the interval, and its poll starts no earlier than its slot: a slow
        poll (a retry, a time-out, a loaded machine) then delays only the
        strings whose slots it overruns, once, instead of shifting every later
        string's reading. A string's readings stay one interval apart, which
        is what bounds the age of the data the gateway serves (measured at full
        scale: back to back, a cycle stretched from 0.55 to 0.75 s by the load
        made the last string's readings up to 1.35 s apart at a 1 s interval).
        A bus that cannot keep up (polls longer than their slots) simply polls
        back to back, as it would without slots.

        Cycles start on a fixed grid (the first start plus whole intervals), not
        an interval after the previous start was woken: a wake-up comes a little
        late, and counted from the late wake-up every cycle inherited the
        lateness of the one before. A cycle that overran its interval starts the
        next one at once, on a grid that restarts from there (never a burst of
        catch-up cycles)."""
        interval = self.status.interval_s
        slot = interval / max(1, len(self.strings))
        stop = self._stop
        cycle_at = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            waited = 0.0
            if self._ensure_open():
                for i, state in enumerate(self.strings):
                    wait = cycle_at + i * slot - time.monotonic()
                    if wait > 0:
                        if stop.wait(wait):
                            return
                        waited += wait
                    if time.monotonic() >= state.next_due:
                        self._poll(state)
                    if not self.link.is_open or stop.is_set():
                        break
            self.status.cycles += 1
            self.log.cycle()
            # the bus's own time: polling, not waiting for slots
            self.status.last_cycle_s = time.monotonic() - started - waited
            cycle_at += interval
            now = time.monotonic()
            if cycle_at < now:  # this cycle overran its interval: the next starts now
                cycle_at = now
            if stop.wait(cycle_at - now):
                return

    def _ensure_open(self) -> bool:
        if self.link.is_open:
            return True
        try:
            self.link.open()
        except PollError as exc:
            self.status.port_open = False
            now = time.time()
            bus = self.status.counters
            bus.record_error(ErrorKind.PORT, exc.detail, now)
            self.log.port_failed(exc.detail)
            for state in self.strings:  # each string's poll of this cycle failed
                state.counters.record_error(ErrorKind.PORT, exc.detail, now)
                for c in (state.counters, bus):
                    c.polls += 1
                    c.record_failed_poll(ErrorKind.PORT)
                self._failed(state, exc)
            return False
        if self._was_open:  # logged as a change of state once it works (BusLog)
            self.status.counters.port_reopens += 1
        self.log.port_opened()
        self._was_open = True
        self.status.port_open = True
        return True

    def _read(self, state: StringPoll, probing: bool) -> StringReading:
        """One poll; a bug in a device profile counts as a failed poll (and is
        logged once) instead of ending the bus's thread."""
        try:
            return state.poller.poll(retries=0 if probing else None)
        except PollError:
            raise
        except Exception as exc:
            if not state.profile_failed:
                state.profile_failed = True
                log.exception("string %s: device profile failed while polling", state.config.name)
            raise PollError(ErrorKind.DECODE, f"profile error: {exc!r}") from exc

    def _poll(self, state: StringPoll) -> None:
        started = time.monotonic()
        state.counters.polls += 1
        probing = state.failures > 0
        bus = self.status.counters
        bus.polls += 1
        try:
            reading = self._read(state, probing)
        except PollError as exc:
            kind = exc.kind
            if kind is ErrorKind.DECODE:  # the poller's own verdict: no transaction saw it
                now = time.time()
                state.counters.record_error(kind, exc.detail, now)
                bus.record_error(kind, exc.detail, now)
            state.counters.record_failed_poll(kind)
            bus.record_failed_poll(kind)
            if kind is ErrorKind.PORT:
                self.log.port_failed(exc.detail)
            elif self.link.is_open:
                self.log.port_working()  # the port carried the transaction: the slave failed
            self._failed(state, exc)
            state.backoff_s = min(
                max(state.backoff_s * 2, self.status.interval_s), self.bus.backoff_max_s
            )
            state.next_due = time.monotonic() + state.backoff_s
        else:
            self.log.port_working()
            state.counters.last_success = bus.last_success = time.time()
            state.backoff_s = 0.0
            state.next_due = 0.0
            state.failures = 0
            self.engine.deliver(state, reading, None, 0)
        finally:
            state.counters.last_poll_s = time.monotonic() - started

    def _failed(self, state: StringPoll, exc: PollError) -> None:
        state.failures += 1
        if not self._stop.is_set():  # a poll cut short by shutdown is no news
            self.engine.deliver(state, None, exc, state.failures)


class Engine:
    """Owns the bus workers and decides each string's quality (on the loop)."""

    def __init__(
        self,
        config: GatewayConfig,
        store: SnapshotStore,
        profiles: Mapping[str, DeviceProfile],
        publish: Publish,
        links: Mapping[str, LinkFactory],
    ) -> None:
        """``links``: a link factory per bus transport (``BusConfig.transport``),
        as the installed plugins register them (``register_bus_transports``)."""
        self.config = config
        self.store = store
        self.publish = publish
        self.workers: list[BusWorker] = []
        self.states: dict[str, StringPoll] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        for bus in config.buses:
            members = [s for s in config.strings if s.bus == bus.name]
            if not members:
                continue
            factory = links.get(bus.transport)
            if factory is None:  # check-config says so first; this is for a bare Engine
                raise LookupError(f"bus {bus.name}: no plugin provides transport {bus.transport!r}")
            link = factory(bus)
            states = []
            for s in members:
                poller = profiles[s.profile].create_poller(s, bus, link)
                states.append(StringPoll(s, poller, link.counters_for(s.slave_id)))
            self.states.update((st.config.name, st) for st in states)
            interval = bus.poll_interval_s or config.gateway.poll_interval_s
            self.workers.append(BusWorker(bus, interval, states, link, self))

    async def run(self) -> None:
        """Start the bus threads and watch their results until cancelled; then
        stop them, each after the transaction it is in."""
        self._loop = asyncio.get_running_loop()
        SwitchInterval.hold()
        try:
            for w in self.workers:
                w.start()
            await self._watchdog()
        finally:
            try:
                for w in self.workers:
                    w.stop()
                await asyncio.to_thread(self._stop_workers)
            finally:
                SwitchInterval.release()

    def _stop_workers(self) -> None:
        for w in self.workers:
            try:
                w.link.close()  # waits for a transaction in flight; ends a wait to open
            except Exception:  # closing a vanished port must not mask shutdown
                log.debug("closing bus %s failed", w.bus.name, exc_info=True)
        for w in self.workers:
            if w.thread.ident is None:  # never started: a start before it failed
                continue
            w.thread.join(JOIN_LIMIT_S)
            if w.thread.is_alive():
                log.warning("bus %s: thread still busy after %.0f s", w.bus.name, JOIN_LIMIT_S)

    def deliver(
        self,
        state: StringPoll,
        reading: StringReading | None,
        error: PollError | None,
        failures: int,
    ) -> None:
        """A poll's result, from a bus thread: decided on the loop, in order."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway is gone
            loop.call_soon_threadsafe(self._apply, state, reading, error, failures)

    def _apply(
        self,
        state: StringPoll,
        reading: StringReading | None,
        error: PollError | None,
        failures: int,
    ) -> None:
        if reading is not None:
            self.poll_succeeded(state, reading)
        elif error is not None:
            self.poll_failed(state, error, failures)

    def poll_succeeded(self, state: StringPoll, reading: StringReading) -> None:
        self._set(state.config.name, Quality.GOOD, reading, "poll succeeded")

    def poll_failed(self, state: StringPoll, exc: PollError, failures: int) -> None:
        current = self.store.string(state.config.name)
        offline = failures >= self.config.gateway.offline_after_failures or current.reading is None
        kind = exc.kind
        if (
            current.reading is None
            and kind is not ErrorKind.PORT
            and kind not in state.unread_logged
        ):
            # never read: it starts OFFLINE, so there is no transition to log; said
            # once per cause (the bus logs a port that cannot be opened)
            state.unread_logged.add(kind)
            log.warning("string %s: no reading yet, poll failed (%s)", state.config.name, exc)
        self._set(
            state.config.name,
            Quality.OFFLINE if offline else Quality.STALE,
            current.reading,
            str(exc),
        )

    def _set(self, name: str, quality: Quality, reading: StringReading | None, why: str) -> None:
        current = self.store.string(name)
        changed = quality is not current.quality
        if changed:
            level = logging.INFO if quality is Quality.GOOD else logging.WARNING
            log.log(
                level, "string %s: %s -> %s (%s)", name, current.quality.name, quality.name, why
            )
        if not changed and reading is current.reading:
            return
        self.publish(
            StringSnapshot(
                name=current.name,
                index=current.index,
                ups=current.ups,
                ups_index=current.ups_index,
                slave_id=current.slave_id,
                bus=current.bus,
                quality=quality,
                reading=reading,
                changed_at=time.time() if changed else current.changed_at,
            )
        )

    def stale_limit_s(self, worker: BusWorker) -> float:
        """Age past which GOOD data is no longer believed current even without
        a failed poll: the configured limit, but never less than two poll
        intervals plus the bus's last cycle (a slow 9600-baud bus is not stale)."""
        cycle = worker.status.last_cycle_s or 0.0
        return max(self.config.gateway.stale_after_s, 2 * worker.status.interval_s + cycle)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for worker in self.workers:
                limit = self.stale_limit_s(worker)
                for state in worker.strings:
                    snap = self.store.string(state.config.name)
                    age = snap.age_s(now)
                    if snap.quality is Quality.GOOD and age is not None and age > limit:
                        self._set(
                            snap.name,
                            Quality.STALE,
                            snap.reading,
                            f"no poll result for {age:.1f} s",
                        )

    def bus_status(self) -> list[BusStatus]:
        return [w.status for w in self.workers]

    def string_counters(self, name: str) -> CommCounters:
        return self.states[name].counters
