"""Alarm events and active alarms: the shapes every plugin receives.

``alarm_event`` hands a plugin both: the event, and the tuple of alarms
active right after the commit that holds it (``ActiveAlarms``).

Kept apart from the alarm engine so northbound plugins depend only on these
small immutable types, never on how rules are evaluated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """Ordered so that a higher value is more urgent."""

    WARNING = 1
    ALARM = 2
    CRITICAL = 3


class EventKind(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    #: a record that is no alarm (a discharge, a baseline re-taken, with who did
    #: it): written to the event log only, never delivered to ``alarm_event``
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """Where an alarm applies: a UPS, a string, or one cell of a string."""

    ups: str | None = None
    string: str | None = None
    cell: int | None = None

    @property
    def is_gateway(self) -> bool:
        """No UPS, string or cell: an alarm about the gateway itself
        (``event_log_failing``)."""
        return self.ups is None and self.string is None and self.cell is None

    def __str__(self) -> str:
        if self.is_gateway:
            return "gateway"
        parts = [self.ups or "-", self.string or "-"]
        if self.cell is not None:
            parts.append(str(self.cell))
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One line of the event log. ``seq`` is the log's sequence number, so a
    consumer can tell it has missed events; ``alarm_id`` is stable across
    restarts (rule + object), e.g. ``cell_voltage_high:A1:17``.

    ``persisted`` is False for an event delivered while the event log could
    not be written (disk full, I/O error): an alarm must reach the NOC all
    the same. Such an event has ``seq`` 0, so it is never a cursor into the
    log; the gateway writes it later, in order and with its own ``at``, once
    writing works again (it then gets a seq in the log, and is not delivered
    a second time)."""

    seq: int
    kind: EventKind
    alarm_id: str
    rule: str
    severity: Severity
    path: ObjectPath
    value: float | None
    limit: float | None
    unit: str
    message: str
    at: float
    by: str | None = None  # who acknowledged, for ACKNOWLEDGED events
    persisted: bool = True  # False: delivered while the event log failed (seq 0)


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """An alarm raised and not cleared, as the event log's active table holds it."""

    alarm_id: str
    rule: str
    severity: Severity
    path: ObjectPath
    value: float | None
    limit: float | None
    unit: str
    message: str
    raised_at: float
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None


#: the alarms active after a commit, oldest first: built once per commit by the
#: alarm engine and handed to every plugin with each event of that commit
ActiveAlarms = tuple[ActiveAlarm, ...]

#: where a gateway alarm applies: the gateway itself
GATEWAY = ObjectPath()


@dataclass(frozen=True, slots=True)
class EventLogHealth:
    """Whether alarm events are being written to the event log, for health
    checks and metrics. Counters run from the gateway's start."""

    failing: bool = False
    since: float | None = None  # start of the current failure (epoch s)
    error: str | None = None  # the last write error of the current failure
    write_failures: int = 0  # failed write attempts (each retry counts)
    unwritten: int = 0  # events delivered, kept in memory, not yet in the log
    dropped: int = 0  # unwritten events dropped past the memory bound
