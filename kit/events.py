"""Alarm events for a test in one call: ``make_event()`` is a plausible raised
cell-voltage alarm, and every field can be set.

The severity, unit and limit default to the rule's own (docs/alarms.md), the
``alarm_id`` and the message are made as the alarm engine makes them, and
each event gets the next sequence number, so a plugin's "missed events"
logic sees a gapless log unless a test asks for a gap.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import fields, replace
from typing import Any

from btms_gateway.core.alarm_types import (
    ActiveAlarm,
    AlarmEvent,
    EventKind,
    ObjectPath,
    Severity,
)
from btms_gateway.core.alarms.rules import RULES, alarm_id

_seq = itertools.count(1)


def make_event(
    kind: EventKind | str = EventKind.RAISED,
    rule: str = "cell_voltage_high",
    *,
    ups: str | None = "UPS1",
    string: str | None = "S1",
    cell: int | None = 7,
    **fields: Any,
) -> AlarmEvent:
    """An ``AlarmEvent`` of ``rule`` on ``ups/string/cell`` (all None: the gateway);
    ``fields`` sets any other field (``value``, ``limit``, ``severity``, ``unit``,
    ``message``, ``at``, ``by``, ``seq``, ``persisted``).

    ``rule`` may be any name; one of the built-in rules lends its severity,
    unit and limit, and a value just past the limit. An ACKNOWLEDGED event is
    by "operator" unless ``by`` says otherwise; an unpersisted event has seq 0.
    """
    kind = EventKind(kind)
    known = RULES.get(rule)
    path = ObjectPath(ups, string, cell)
    limit = fields.pop("limit", None if known is None or known.kind == "flag" else known.limit)
    past = None if limit is None or known is None else 1.02 if known.kind == "high" else 0.98
    persisted = fields.pop("persisted", True)
    event = AlarmEvent(
        seq=next(_seq) if persisted else 0,
        kind=kind,
        alarm_id=alarm_id(rule, path),
        rule=rule,
        severity=known.severity if known is not None else Severity.ALARM,
        path=path,
        value=None if past is None or limit is None else round(limit * past, 3),
        limit=limit,
        unit=known.unit if known is not None else "",
        message=f"{path}: {known.text if known else rule} {kind.value}",
        at=time.time(),
        by="operator" if kind is EventKind.ACKNOWLEDGED else None,
        persisted=persisted,
    )
    return replace(event, **fields)


def active_alarm(event: AlarmEvent, acknowledged_by: str | None = None) -> ActiveAlarm:
    """The ``ActiveAlarm`` the alarm engine lists once ``event`` has raised it
    (acknowledged by ``acknowledged_by`` when given): the element of the
    ``active`` tuple that ``alarm_event`` delivers."""
    shared = {f.name: getattr(event, f.name) for f in fields(ActiveAlarm) if f.name in _EVENT}
    acked = acknowledged_by is not None
    return ActiveAlarm(
        **shared,
        raised_at=event.at,
        acknowledged=acked,
        acknowledged_by=acknowledged_by,
        acknowledged_at=event.at if acked else None,
    )


_EVENT = frozenset(f.name for f in fields(AlarmEvent))
