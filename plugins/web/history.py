"""``GET /api/strings/{name}/history``: parameters and the JSON answer over
the core history store (docs/history.md), and a ring of recent alarm events.

The history itself lives in core (``gateway.history``), on disk, for years;
this module only reads it. (Until the core store existed this module kept a
4-hour in-memory buffer of string values; it is gone: every reading is now on
disk, with every cell.) The parameters keep the old names where they still
mean the same: ``since`` is ``from``, ``limit`` the newest N rows.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from btms_gateway.core.api import RECORDED, RESOLUTIONS, AlarmEvent, QueryError, Series, parse_cells

DEFAULT_QUANTITIES = ("voltage_v", "current_a", "soc_pct")
DEFAULT_SPAN_S = 3600.0
MAX_POINTS = 100_000
MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class HistoryRequest:
    start: float
    end: float
    quantities: tuple[str, ...]
    cells: list[int] | None
    resolution: str
    max_points: int | None
    limit: int | None


def _given(q: Mapping[str, str], key: str) -> str | None:
    raw = q.get(key)
    return None if raw is None or raw == "" else raw


def _time(q: Mapping[str, str], key: str) -> float | None:
    raw = _given(q, key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise QueryError(
                f"{key}: expected epoch seconds or an ISO 8601 time, found {raw!r}"
            ) from None
        value = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    if not math.isfinite(value):
        raise QueryError(f"{key}: expected a finite time, found {raw!r}")
    return value


def _int(q: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    raw = _given(q, key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{key}: expected an integer {low}..{high}, found {raw!r}") from None
    if not low <= value <= high:
        raise QueryError(f"{key}: expected an integer {low}..{high}, found {value}")
    return value


def parse(q: Mapping[str, str], now: float) -> HistoryRequest:
    """The query string, checked: QueryError names the parameter and what it expects."""
    if "from" in q and "since" in q:
        raise QueryError("from and since are the same parameter: give one")
    end = _time(q, "to")
    end = now if end is None else end
    start = _time(q, "from") if "from" in q else _time(q, "since")
    start = end - DEFAULT_SPAN_S if start is None else start
    if not end > start:
        raise QueryError("to: expected a time after from")
    names = tuple(x.strip() for x in q.get("quantities", "").split(",") if x.strip())
    names = names or DEFAULT_QUANTITIES
    unknown = [x for x in names if x not in RECORDED]
    if unknown:
        raise QueryError(f"quantities: expected some of {', '.join(RECORDED)}, found {unknown}")
    resolution = q.get("resolution", "auto")
    if resolution not in RESOLUTIONS:
        raise QueryError(
            f"resolution: expected one of {', '.join(RESOLUTIONS)}, found {resolution!r}"
        )
    cells = parse_cells(q.get("cells"))
    return HistoryRequest(
        start,
        end,
        names,
        cells,
        resolution,
        _int(q, "max_points", 2, MAX_POINTS),
        _int(q, "limit", 1, MAX_LIMIT),
    )


def run(queries: Any, name: str, req: HistoryRequest) -> Series:
    """The query a request asks for (blocking: run it in an executor)."""
    return queries.series(
        name,
        req.quantities,
        req.start,
        req.end,
        cells=req.cells,
        resolution=req.resolution,
        max_points=req.max_points,
    )


def _list(a: np.ndarray) -> list[Any]:
    """Floats with null for NaN (nothing measured)."""
    if not np.isnan(a).any():
        return a.tolist()
    return [None if math.isnan(x) else x for x in a.tolist()]


def series_json(s: Series, state: Mapping[str, Any], limit: int | None = None) -> dict[str, Any]:
    rows = slice(-limit, None) if limit else slice(None)
    out: list[dict[str, Any]] = []
    for j, col in enumerate(s.columns):
        item: dict[str, Any] = {
            "quantity": col.quantity.key,
            "cell": col.cell,
            "unit": col.quantity.unit,
        }
        for stat, values in s.stats.items():
            column = values[rows, j]
            item[stat] = column.astype(int).tolist() if stat == "count" else _list(column)
        out.append(item)
    return {
        "string": s.string,
        "from": s.start,
        "to": s.end,
        "resolution": s.resolution,
        "step_s": s.step_s,
        "source": "history",
        "history": dict(state),
        "t": np.round(s.t[rows], 3).tolist(),
        "series": out,
    }


def empty_json(name: str, req: HistoryRequest, state: Mapping[str, Any]) -> dict[str, Any]:
    """A string the history has not recorded yet: no rows."""
    return {
        "string": name,
        "from": req.start,
        "to": req.end,
        "resolution": req.resolution if req.resolution != "auto" else "raw",
        "step_s": None,
        "source": "history",
        "history": dict(state),
        "t": [],
        "series": [],
    }


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
