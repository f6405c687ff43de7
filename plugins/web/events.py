"""``GET /api/events``: filters and paging over the event log (or, without
one, over the plugin's in-memory ring), with input errors said plainly.

Paging is by sequence number, the log's own cursor: ``order=asc`` with
``after_seq`` walks forward page by page (``next_after_seq`` in each answer),
which never skips or repeats an event even while new ones arrive;
``order=desc`` gives the newest ``limit`` events for a "recent" view, and
``before_seq`` walks backwards from there (``next_before_seq``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from btms_gateway.core.api import AlarmEvent, EventKind, Severity

from .history import EventRing

MAX_LIMIT = 1000
KINDS = {k.value for k in EventKind}
SEVERITIES = {s.name.lower(): int(s) for s in Severity}


class QueryError(ValueError):
    """A bad query parameter; the message names it and what was expected."""


@dataclass(frozen=True)
class EventQuery:
    since: float | None = None
    until: float | None = None
    kinds: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    string: str | None = None
    alarm_id: str | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    limit: int = 100
    order: str = "desc"

    def matches(self, e: AlarmEvent) -> bool:
        return (
            (self.since is None or e.at >= self.since)
            and (self.until is None or e.at < self.until)
            and (not self.kinds or e.kind.value in self.kinds)
            and (not self.severities or int(e.severity) in self.severities)
            and (self.string is None or e.path.string == self.string)
            and (self.alarm_id is None or e.alarm_id == self.alarm_id)
            and (self.after_seq is None or e.seq > self.after_seq)
            and (self.before_seq is None or e.seq < self.before_seq)
        )


def _number(q: Mapping[str, str], key: str, kind: type) -> Any:
    raw = q.get(key)
    if raw is None or raw == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number (seconds since the epoch)"
        raise QueryError(f"{key}: expected {what}, found {raw!r}") from None


def _list(q: Mapping[str, str], key: str) -> list[str]:
    raw = q.get(key) or ""
    return [part.strip().lower() for part in raw.split(",") if part.strip()]


def parse(q: Mapping[str, str]) -> EventQuery:
    kinds = _list(q, "kind")
    for k in kinds:
        if k not in KINDS:
            raise QueryError(f"kind: expected one of {', '.join(sorted(KINDS))}, found {k!r}")
    severities = []
    for s in _list(q, "severity"):
        if s not in SEVERITIES:
            raise QueryError(f"severity: expected one of {', '.join(SEVERITIES)}, found {s!r}")
        severities.append(SEVERITIES[s])
    limit = _number(q, "limit", int)
    if limit is None:
        limit = 100
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: expected 1..{MAX_LIMIT}, found {limit}")
    order = (q.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise QueryError(f"order: expected asc or desc, found {order!r}")
    after_seq = _number(q, "after_seq", int)
    if after_seq is not None and order != "asc":
        raise QueryError("after_seq pages forward: use it with order=asc")
    before_seq = _number(q, "before_seq", int)
    if before_seq is not None and order != "desc":
        raise QueryError("before_seq pages backward: use it with order=desc")
    return EventQuery(
        since=_number(q, "since", float),
        until=_number(q, "until", float),
        kinds=tuple(kinds),
        severities=tuple(severities),
        string=q.get("string") or None,
        alarm_id=q.get("alarm_id") or None,
        after_seq=after_seq,
        before_seq=before_seq,
        limit=limit,
        order=order,
    )


def run(query: EventQuery, log: Any | None, ring: EventRing) -> tuple[list[AlarmEvent], bool]:
    """The page of events and whether more match. Blocking when ``log`` is the
    SQLite event log: call it in an executor."""
    if log is not None:
        rows = log.events(
            since=query.since,
            until=query.until,
            kinds=query.kinds,
            severities=query.severities,
            string=query.string,
            alarm_id=query.alarm_id,
            after_seq=query.after_seq,
            before_seq=query.before_seq,
            limit=query.limit + 1,
            newest_first=query.order == "desc",
        )
    else:
        rows = [e for e in ring.all() if query.matches(e)]
        if query.order == "desc":
            rows.reverse()
        rows = rows[: query.limit + 1]
    return rows[: query.limit], len(rows) > query.limit
