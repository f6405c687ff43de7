"""One alarm condition and the state machine every rule shares.

IDLE -> PENDING_ON (beyond the limit) -> ACTIVE after the on-delay (raise);
ACTIVE -> PENDING_OFF (back past the hysteresis band) -> gone after the
off-delay (clear). A value inside the band cancels a pending transition, so a
reading that wobbles around the limit raises or clears nothing. Only
conditions that are not idle exist as objects: a healthy plant holds none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..alarm_types import ActiveAlarm, EventKind, ObjectPath
from .rules import Rule

PENDING_ON, ACTIVE, PENDING_OFF = 1, 2, 3


@dataclass(slots=True)
class Condition:
    alarm_id: str
    rule: Rule
    path: ObjectPath
    state: int
    since: float  # start of the pending transition
    value: float | None
    limit: float | None
    message: str = ""
    raised_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    clear_message: str | None = None  # replaces the generated text of the CLEARED event

    @property
    def is_active(self) -> bool:
        return self.state in (ACTIVE, PENDING_OFF)

    def due(self, now: float) -> EventKind | None:
        """The transition a pending condition makes when only time passes."""
        if self.state == PENDING_ON and now - self.since >= self.rule.on_delay_s:
            return EventKind.RAISED
        if self.state == PENDING_OFF and now - self.since >= self.rule.off_delay_s:
            return EventKind.CLEARED
        return None

    def advance(self, now: float) -> EventKind | None:
        """Apply a due transition: RAISED makes the condition ACTIVE, CLEARED
        makes it idle (state 0: the owner drops it)."""
        kind = self.due(now)
        if kind is EventKind.RAISED:
            self.state = ACTIVE
        elif kind is EventKind.CLEARED:
            self.state = 0
        return kind

    def step(self, on: bool, off: bool, t: float) -> EventKind | None:
        """Feed one evaluation; returns RAISED/CLEARED when the alarm changes.
        ``state`` 0 afterwards means idle: the owner drops the condition."""
        s = self.state
        if s == PENDING_ON:
            if not on:
                self.state = 0
                return None
            return self.advance(t)
        if s == ACTIVE:
            if off:
                self.state, self.since = PENDING_OFF, t
                return self.advance(t)
            return None
        if not off:  # PENDING_OFF, back inside the band or beyond the limit
            self.state = ACTIVE
            return None
        return self.advance(t)

    def hold(self) -> None:
        """No trustworthy value (stale string, missing sensor): a pending
        transition is cancelled, an active alarm stays active."""
        if self.state == PENDING_ON:
            self.state = 0
        elif self.state == PENDING_OFF:
            self.state = ACTIVE

    def to_active(self) -> ActiveAlarm:
        return ActiveAlarm(
            alarm_id=self.alarm_id,
            rule=self.rule.name,
            severity=self.rule.severity,
            path=self.path,
            value=self.value,
            limit=self.limit,
            unit=self.rule.unit,
            message=self.message,
            raised_at=self.raised_at or self.since,
            acknowledged=self.acknowledged_by is not None,
            acknowledged_by=self.acknowledged_by,
            acknowledged_at=self.acknowledged_at,
        )
