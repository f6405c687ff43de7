"""Per-plugin delivery of readings and alarm events, so no plugin can stall the engine.

Each plugin that implements ``string_reading`` or ``alarm_event`` gets an
inbox and a worker. The engine only puts into the inbox (a few microseconds
under a lock) and returns. Readings coalesce per string (a slow plugin gets
the newest reading, never a backlog); events queue in order up to a bound,
past which the oldest are dropped and counted.

Readings are delivered in the order of their newest offer: a string offered
again moves to the back of the inbox. Each reading carries the plant of its
own instant, so delivering S1's newer reading before S2's older one would
hand a plugin a plant older than one it already has (S2's plant brings back
S1's previous UPS values). In offer order, each plant a plugin receives is
never older than one it received before.

The worker depends on how the plugin wrote its hooks:

- synchronous hooks get a thread of their own, so one that blocks only
  blocks its own thread (an awaitable one of them returns still runs on the
  gateway's loop, with a time limit);
- a plugin whose hooks are all ``async def`` gets a task on the gateway's
  loop instead, since its hooks run on the loop anyway. Handing them to a
  thread only for the thread to hand them back cost two thread switches and
  a wake-up of the loop per reading: at full scale (32 readings a second,
  SNMP and BACnet both async) that was over 250 switches a second for no
  isolation gained. Each call still has the time limit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .alarm_types import ActiveAlarms, AlarmEvent
from .plugin_manager import FailureLog

log = logging.getLogger("btms_gateway.plugins")

MAX_EVENTS = 10_000
AWAIT_LIMIT_S = 10.0
STALL_WARN_S = 5.0

Item = tuple[str, dict[str, Any]]


@dataclass
class ChannelStats:
    readings_delivered: int = 0
    readings_coalesced: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    failures: int = 0
    busy_since: float | None = None


class PluginChannel:
    """The inbox and the bookkeeping; subclasses say who drains it (``_wake``)."""

    def __init__(
        self,
        name: str,
        impls: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        failures: FailureLog,
        gateway: Any = None,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.name = name
        self._gateway = gateway
        self._impls = impls
        self._loop = loop
        self._failures = failures
        self._readings: dict[str, dict[str, Any]] = {}
        self._events: deque[tuple[AlarmEvent, ActiveAlarms]] = deque()
        self._max_events = max_events
        self._lock = threading.Lock()
        self._stopping = False
        self._stall_warned = False
        self.stats = ChannelStats()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float) -> bool:
        """Ask the worker to finish what is queued and exit; False if it is stuck."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Tell the worker there is something in the inbox (called under the lock)."""
        raise NotImplementedError

    def offer_reading(self, string: Any, plant: Any) -> None:
        if "string_reading" not in self._impls:
            return
        with self._lock:
            # pop, then insert: an updated key would keep its old place in the dict
            if self._readings.pop(string.name, None) is not None:
                self.stats.readings_coalesced += 1
            self._readings[string.name] = {
                "string": string,
                "plant": plant,
                "gateway": self._gateway,
            }
            self._wake()
        self._check_stall()

    def offer_event(self, event: AlarmEvent, active: ActiveAlarms) -> None:
        """An alarm event with the alarms active after its commit (one tuple for
        every plugin: immutable, so it is handed on as it is)."""
        if "alarm_event" not in self._impls:
            return
        with self._lock:
            if len(self._events) >= self._max_events:
                self._events.popleft()
                self.stats.events_dropped += 1
                if self.stats.events_dropped == 1:
                    log.error(
                        "plugin %r is %d alarm events behind; dropping the oldest",
                        self.name,
                        self._max_events,
                    )
            self._events.append((event, active))
            self._wake()

    def _check_stall(self) -> None:
        since = self.stats.busy_since
        if since is not None and not self._stall_warned and time.monotonic() - since > STALL_WARN_S:
            self._stall_warned = True
            log.warning(
                "plugin %r has been busy for over %.0f s; its readings are coalesced "
                "and acquisition goes on",
                self.name,
                STALL_WARN_S,
            )

    def _take(self) -> Item | None:
        """The next item, events first (in order), then the newest readings in the
        order they were offered (oldest plant first); None if empty. Called under the lock."""
        if self._events:
            event, active = self._events.popleft()
            return "alarm_event", {"event": event, "active": active, "gateway": self._gateway}
        if self._readings:
            key = next(iter(self._readings))
            return "string_reading", self._readings.pop(key)
        return None

    def _begin(self) -> None:
        self.stats.busy_since = time.monotonic()

    def _end(self, hook: str) -> None:
        self.stats.busy_since = None
        self._stall_warned = False
        if hook == "string_reading":
            self.stats.readings_delivered += 1
        else:
            self.stats.events_delivered += 1

    def _failed(self, hook: str, exc: Exception) -> None:
        self.stats.failures += 1
        self._failures.record(self.name, hook, exc)

    def _invoke(self, hook: str, kwargs: dict[str, Any]) -> Any:
        impl = self._impls[hook]
        return impl.function(**{k: kwargs[k] for k in impl.argnames})


class ThreadChannel(PluginChannel):
    """Synchronous hooks, run in the plugin's own worker thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name=f"plugin-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _wake(self) -> None:
        self._cond.notify()

    def _next(self) -> Item | None:
        with self._cond:
            while (item := self._take()) is None and not self._stopping:
                self._cond.wait()
            return item

    def _run(self) -> None:
        while (item := self._next()) is not None:
            hook, kwargs = item
            self._begin()
            try:
                self._call(hook, kwargs)
            finally:
                self._end(hook)

    def _call(self, hook: str, kwargs: dict[str, Any]) -> None:
        try:
            result = self._invoke(hook, kwargs)
            if inspect.isawaitable(result):
                future = asyncio.run_coroutine_threadsafe(_await(result), self._loop)
                try:
                    future.result(AWAIT_LIMIT_S)
                except TimeoutError:
                    future.cancel()
                    raise
        except Exception as exc:
            self._failed(hook, exc)


class LoopChannel(PluginChannel):
    """``async def`` hooks, run by a task on the gateway's loop (see the module
    docstring). Offers come from the loop (the engine, the alarm engine); one
    from another thread wakes the task through the loop's thread-safe call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._task = self._loop.create_task(self._run(), name=f"plugin-{self.name}")

    def stop(self, timeout: float) -> bool:
        # called on the loop at shutdown, after the plugins' own shutdown hooks:
        # what is still queued has nowhere to go
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        return True

    def _wake(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._ready.set()
        else:
            self._loop.call_soon_threadsafe(self._ready.set)

    async def _run(self) -> None:
        burst = False
        while not self._stopping:
            if burst:
                await asyncio.sleep(0)  # a burst of events must not hold the loop
            await self._ready.wait()
            with self._lock:
                item = self._take()
                if item is None:
                    self._ready.clear()
                    burst = False
                    continue
                # the usual case is one reading at a time: go back to waiting
                # without an extra pass through the loop when nothing else is queued
                burst = bool(self._events or self._readings)
            hook, kwargs = item
            self._begin()
            try:
                await self._call(hook, kwargs)
            finally:
                self._end(hook)

    async def _call(self, hook: str, kwargs: dict[str, Any]) -> None:
        try:
            result = self._invoke(hook, kwargs)
            if inspect.isawaitable(result):
                async with asyncio.timeout(AWAIT_LIMIT_S):
                    await result
        except Exception as exc:
            self._failed(hook, exc)


def open_channel(
    name: str,
    impls: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
    failures: FailureLog,
    gateway: Any = None,
) -> PluginChannel:
    """A started channel: on the loop when every hook is ``async def``, else a thread."""
    on_loop = all(inspect.iscoroutinefunction(impl.function) for impl in impls.values())
    channel = (LoopChannel if on_loop else ThreadChannel)(name, impls, loop, failures, gateway)
    channel.start()
    return channel


async def _await(awaitable: Any) -> Any:
    return await awaitable
