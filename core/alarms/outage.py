"""What the alarm engine keeps while the event log cannot be written.

A full disk, an I/O error or a damaged page must not silence alarms: the
engine goes on evaluating, delivers every event to the plugins marked as
not persisted, and keeps it here, in order, to write it when the log works
again (then the active table is rewritten from the engine's state, which
never stopped being right). Memory is bounded: past ``limit`` events the
oldest are dropped and counted; an outage that long has long been shown by
the ``event_log_failing`` alarm on every protocol.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque

from ..alarm_types import AlarmEvent, EventLogHealth
from .baseline import BaselineRow

#: events kept for a late write (about 450 bytes each: 23 MB at the bound, measured)
MAX_UNWRITTEN = 50_000
#: how often the engine tries to write again (from its once-a-second tick)
RETRY_EVERY_S = 5.0


class Outage:
    def __init__(self, limit: int = MAX_UNWRITTEN, retry_every_s: float = RETRY_EVERY_S) -> None:
        self.limit = limit
        self.retry_every_s = retry_every_s
        self.since: float | None = None
        self.error: str | None = None
        self.events: deque[AlarmEvent] = deque()
        self.baselines: list[BaselineRow] = []
        self.retry_at = 0.0
        self.failures = 0  # failed writes in the current outage
        self.write_failures = 0  # ... since start
        self.dropped = 0  # since start
        self.dropped_now = 0  # in the current outage

    @property
    def failing(self) -> bool:
        return self.since is not None

    def begin(self, error: str) -> None:
        self.since = time.time()
        self.failed(error)

    def failed(self, error: str) -> None:
        """One more write that did not go through; retry later."""
        self.error = error
        self.failures += 1
        self.write_failures += 1
        self.retry_at = time.monotonic() + self.retry_every_s

    def due(self) -> bool:
        """Time to try writing again (on the monotonic clock: the engine's
        ``now`` is the readings' time, which a test may set freely)."""
        return self.failing and time.monotonic() >= self.retry_at

    def keep(self, events: list[AlarmEvent], learned: list[BaselineRow]) -> None:
        self.events.extend(events)
        self.baselines.extend(learned)
        while len(self.events) > self.limit:
            self.events.popleft()
            self.dropped += 1
            self.dropped_now += 1

    def end(self) -> tuple[int, int]:
        """The outage is over: (failed writes, events dropped) during it."""
        summary = (self.failures, self.dropped_now)
        self.since, self.error = None, None
        self.events.clear()
        self.baselines.clear()
        self.failures = self.dropped_now = 0
        return summary

    def health(self) -> EventLogHealth:
        return EventLogHealth(
            failing=self.failing,
            since=self.since,
            error=self.error,
            write_failures=self.write_failures,
            unwritten=len(self.events),
            dropped=self.dropped,
        )


def describe(exc: BaseException) -> str:
    """A write error in one line, as an operator reads it in a log or alarm."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, sqlite3.Error | OSError) else f"{type(exc).__name__}: {text}"
