"""A bounded in-memory history per string, and a ring of recent alarm events.

The event log (SQLite) keeps alarm events but no readings, so the plugin keeps
its own small history: one sample per ``interval_s`` of GOOD data only (a
stale value is never recorded again as if it were new). Written by the
plugin's hook and read by requests; the lock keeps it safe from any thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from btms_gateway.core.alarm_types import AlarmEvent
from btms_gateway.core.model import Quality, StringSnapshot

FIELDS = (
    "t",
    "voltage_v",
    "current_a",
    "soc_pct",
    "cell_voltage_min_v",
    "cell_voltage_max_v",
    "cell_temperature_max_c",
    "cell_resistance_max_mohm",
)


def _extreme(values: Iterable[float | None], fn: Any) -> float | None:
    present = [v for v in values if v is not None]
    return fn(present) if present else None


class History:
    def __init__(self, interval_s: float, points: int) -> None:
        self.interval_s = interval_s
        self.points = points
        self._rings: dict[str, deque[tuple[Any, ...]]] = {}
        self._lock = threading.Lock()

    def record(self, s: StringSnapshot) -> bool:
        """Add a sample if the string is GOOD and the last one is old enough."""
        r = s.reading
        if s.quality is not Quality.GOOD or r is None:
            return False
        with self._lock:
            ring = self._rings.get(s.name)
            if ring is None:
                ring = self._rings[s.name] = deque(maxlen=self.points)
            if ring and r.read_at - ring[-1][0] < self.interval_s:
                return False
            cells = r.cells
            ring.append(
                (
                    r.read_at,
                    r.voltage_v,
                    r.current_a,
                    r.soc_pct,
                    _extreme((c.voltage_v for c in cells), min),
                    _extreme((c.voltage_v for c in cells), max),
                    _extreme((c.temperature_c for c in cells), max),
                    _extreme((c.resistance_mohm for c in cells), max),
                )
            )
        return True

    def samples(
        self, name: str, since: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Oldest first; with ``limit``, the newest ``limit`` samples."""
        with self._lock:
            rows = list(self._rings.get(name, ()))
        if since is not None:
            rows = [row for row in rows if row[0] >= since]
        if limit is not None:
            rows = rows[-limit:] if limit else []
        return [dict(zip(FIELDS, row, strict=True)) for row in rows]


class EventRing:
    """The alarm events this plugin received, newest last: the event list when
    the gateway has no event log, and the source of live event pushes.

    Live clients follow it by position (how many events it has received),
    not by ``seq``: events delivered while the event log could not be
    written all have seq 0 (AlarmEvent.persisted)."""

    def __init__(self, size: int = 1000) -> None:
        self._events: deque[tuple[int, AlarmEvent]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._count = 0
        self._last_seq = 0
        self.received: dict[str, int] = {}

    def add(self, event: AlarmEvent) -> None:
        with self._lock:
            self._count += 1
            self._events.append((self._count, event))
            if event.persisted:
                self._last_seq = event.seq
            key = event.kind.value
            self.received[key] = self.received.get(key, 0) + 1

    def since(self, position: int) -> tuple[list[AlarmEvent], int]:
        """The events received after ``position``, and the position to ask from next."""
        with self._lock:
            return [e for n, e in self._events if n > position], self._count

    @property
    def position(self) -> int:
        with self._lock:
            return self._count

    def all(self) -> list[AlarmEvent]:
        with self._lock:
            return [e for _, e in self._events]

    @property
    def last_seq(self) -> int:
        """The seq of the newest event received that is in the event log."""
        with self._lock:
            return self._last_seq
