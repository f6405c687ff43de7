"""Per-plugin delivery of readings and alarm events, so no plugin can stall the engine.

Each plugin that implements ``string_reading`` or ``alarm_event`` gets a
worker thread and an inbox. The engine only appends to the inbox (a few
microseconds under a lock) and returns. Readings coalesce per string (a slow
plugin gets the newest reading, never a backlog); events queue in order up to
a bound, past which the oldest are dropped and counted. A synchronous
implementation that blocks only blocks its own thread; an implementation that
returns an awaitable has it run on the gateway's loop with a time limit.
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

from .plugin_manager import FailureLog

log = logging.getLogger("btms_gateway.plugins")

MAX_EVENTS = 10_000
AWAIT_LIMIT_S = 10.0
STALL_WARN_S = 5.0


@dataclass
class ChannelStats:
    readings_delivered: int = 0
    readings_coalesced: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    failures: int = 0
    busy_since: float | None = None


class PluginChannel:
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
        self._events: deque[Any] = deque()
        self._max_events = max_events
        self._cond = threading.Condition()
        self._stopping = False
        self._stall_warned = False
        self.stats = ChannelStats()
        self._thread = threading.Thread(target=self._run, name=f"plugin-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer_reading(self, string: Any, plant: Any) -> None:
        if "string_reading" not in self._impls:
            return
        with self._cond:
            if string.name in self._readings:
                self.stats.readings_coalesced += 1
            self._readings[string.name] = {
                "string": string,
                "plant": plant,
                "gateway": self._gateway,
            }
            self._cond.notify()
        self._check_stall()

    def offer_event(self, event: Any) -> None:
        if "alarm_event" not in self._impls:
            return
        with self._cond:
            if len(self._events) >= self._max_events:
                self._events.popleft()
                self.stats.events_dropped += 1
                if self.stats.events_dropped == 1:
                    log.error(
                        "plugin %r is %d alarm events behind; dropping the oldest",
                        self.name,
                        self._max_events,
                    )
            self._events.append(event)
            self._cond.notify()

    def stop(self, timeout: float) -> bool:
        """Ask the worker to finish what is queued and exit; False if it is stuck."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

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

    def _next(self) -> tuple[str, dict[str, Any]] | None:
        with self._cond:
            while not (self._events or self._readings or self._stopping):
                self._cond.wait()
            if self._events:
                return "alarm_event", {"event": self._events.popleft(), "gateway": self._gateway}
            if self._readings:
                key = next(iter(self._readings))
                return "string_reading", self._readings.pop(key)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            hook, kwargs = item
            self.stats.busy_since = time.monotonic()
            try:
                self._call(hook, kwargs)
            finally:
                self.stats.busy_since = None
                self._stall_warned = False
            if hook == "string_reading":
                self.stats.readings_delivered += 1
            else:
                self.stats.events_delivered += 1

    def _call(self, hook: str, kwargs: dict[str, Any]) -> None:
        impl = self._impls[hook]
        try:
            result = impl.function(**{k: kwargs[k] for k in impl.argnames})
            if inspect.isawaitable(result):
                future = asyncio.run_coroutine_threadsafe(_await(result), self._loop)
                try:
                    future.result(AWAIT_LIMIT_S)
                except TimeoutError:
                    future.cancel()
                    raise
        except Exception as exc:
            self.stats.failures += 1
            self._failures.record(self.name, hook, exc)


async def _await(awaitable: Any) -> Any:
    return await awaitable
