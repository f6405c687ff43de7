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

from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.alarms.rules import RULES, alarm_id

_seq = itertools.count(1)


def make_event(
    kind: EventKind | str = EventKind.RAISED,
    rule: str = "cell_voltage_high",
    *,
    ups: str | None = "UPS1",
    string: str | None = "S1",
    cell: int | None = 7,
    value: float | None = None,
    limit: float | None = None,
    severity: Severity | None = None,
    unit: str | None = None,
    message: str | None = None,
    at: float | None = None,
    by: str | None = None,
    seq: int | None = None,
    persisted: bool = True,
) -> AlarmEvent:
    """An ``AlarmEvent`` of ``rule`` on ``ups/string/cell`` (all None: the gateway).

    ``rule`` may be any name; one of the built-in rules lends its severity,
    unit and limit, and a value just past the limit. An ACKNOWLEDGED event is
    by "operator" unless ``by`` says otherwise; an unpersisted event has seq 0.
    """
    kind = EventKind(kind)
    known = RULES.get(rule)
    path = ObjectPath(ups, string, cell)
    if limit is None and known is not None and known.kind != "flag":
        limit = known.limit
    if value is None and limit is not None and known is not None:
        value = round(limit * (1.02 if known.kind == "high" else 0.98), 3)
    if kind is EventKind.ACKNOWLEDGED and by is None:
        by = "operator"
    return AlarmEvent(
        seq=0 if not persisted else next(_seq) if seq is None else seq,
        kind=kind,
        alarm_id=alarm_id(rule, path),
        rule=rule,
        severity=severity or (known.severity if known is not None else Severity.ALARM),
        path=path,
        value=value,
        limit=limit,
        unit=unit if unit is not None else known.unit if known is not None else "",
        message=message or f"{path}: {known.text if known else rule} {kind.value}",
        at=time.time() if at is None else at,
        by=by,
        persisted=persisted,
    )
