"""Battery health over HTTP: discharges, resistance health, baseline re-take
and report downloads (docs/web.md, "Battery health"; the analytics behind
them: docs/analytics.md).

Everything here reads files or runs a report, so the handlers call these
functions in an executor, never on the gateway's loop.
"""

from __future__ import annotations

from typing import Any

from btms_gateway.core.api import Report, ReportError

#: how many discharges a list answers at most
MAX_LIST = 500


def discharges(gateway: Any, string: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first, without the per-cell rows (``discharge`` has them)."""
    store = gateway.analytics.store
    if store is None:
        return []
    return [
        {k: v for k, v in s.to_json().items() if k != "cells"}
        for s in store.list(string, limit=min(limit, MAX_LIST))
    ]


def discharge(gateway: Any, event_id: int) -> dict[str, Any] | None:
    store = gateway.analytics.store
    s = store.get(event_id) if store is not None else None
    return None if s is None else s.to_json()


def resistance(gateway: Any, name: str) -> dict[str, Any] | None:
    h = gateway.string_health(name)
    return None if h is None else h.to_json()


def retake(gateway: Any, name: str, cell: int | None, user: str) -> tuple[bool, str]:
    """Re-take baselines from the current reading as ``user`` (recorded in
    the event log). Blocking: the event log's commit."""
    done, message = gateway.alarms.retake_baseline(name, cell, user)
    return bool(done), str(message)


def report(gateway: Any, kind: str, subject: str, fmt: str) -> Report:
    """Raises ReportError (unknown kind or subject, matplotlib missing)."""
    return gateway.make_report(kind, subject, fmt)


def report_kinds(gateway: Any) -> list[str]:
    return sorted(getattr(gateway, "reports", {}))


__all__ = ["ReportError", "discharge", "discharges", "report", "report_kinds", "resistance"]
