"""Alarm events and active alarms: the shapes every plugin receives.

Kept apart from the alarm engine so northbound plugins depend only on these
small immutable types, never on how rules are evaluated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Severity(enum.IntEnum):
    """Ordered so that a higher value is more urgent."""

    WARNING = 1
    ALARM = 2
    CRITICAL = 3


class EventKind(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """Where an alarm applies: a UPS, a string, or one cell of a string."""

    ups: str | None = None
    string: str | None = None
    cell: int | None = None

    def __str__(self) -> str:
        parts = [self.ups or "-", self.string or "-"]
        if self.cell is not None:
            parts.append(str(self.cell))
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One line of the event log. ``seq`` is the log's sequence number, so a
    consumer can tell it has missed events; ``alarm_id`` is stable across
    restarts (rule + object), e.g. ``cell_voltage_high:A1:17``."""

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


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
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


class AlarmService(Protocol):
    """What ``gateway.alarms`` offers plugins: query and acknowledge."""

    def active(self) -> list[ActiveAlarm]: ...

    def acknowledge(self, alarm_id: str, by: str) -> bool:
        """Acknowledge an active alarm; False if no such active alarm."""
        ...
