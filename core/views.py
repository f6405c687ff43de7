"""The typed views a plugin has of the running gateway.

A plugin's hooks receive the gateway (``startup(gateway)``, ...); these
protocols say what it may use of it, so no plugin types it as ``Any`` and
reaches for an attribute nobody promised. They are structural: the core's
``Gateway`` satisfies ``Gateway`` (mypy checks it, see gateway.py), and a
test's stand-in satisfies it by having the same members. Re-exported by
:mod:`btms_gateway.core.api` with everything else a plugin may use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from .alarm_types import ActiveAlarm, AlarmEvent, EventLogHealth
from .config import GatewayConfig
from .counters import CommCounters
from .history.query import HistoryQueries
from .history.service import HistoryStatus
from .model import PlantSnapshot, StringSnapshot
from .quantities import Level, Quantity


class SnapshotReader(Protocol):
    """The latest values: one immutable plant, swapped whole at each publish."""

    @property
    def snapshot(self) -> PlantSnapshot:
        """The plant now (lock-free; keep the reference for a consistent view)."""
        ...

    def string(self, name: str) -> StringSnapshot:
        """One string of the plant now (KeyError for a name not configured)."""
        ...


class AlarmService(Protocol):
    """What ``gateway.alarms`` offers: the active alarms, acknowledging one,
    the resistance baselines the rules use, and the event log's health."""

    def active(self) -> Sequence[ActiveAlarm]:
        """The alarms raised and not cleared, oldest first. From a hook, use the
        tuple ``alarm_event`` delivers instead: it is the state after that event."""
        ...

    def acknowledge(self, alarm_id: str, by: str) -> str | None:
        """Record ``by`` as having acknowledged an active alarm; who is recorded
        (the first to acknowledge: again is a no-op), or None if no such alarm
        is active. Blocking (the event log's commit): call it in an executor
        from the event loop."""
        ...

    def baselines(self, string: str) -> dict[int, float]:
        """Cell index -> resistance baseline (mOhm) of ``string``, as the rules use it."""
        ...

    def log_health(self) -> EventLogHealth:
        """Whether alarm events are being written to the event log."""
        ...

    def retake_baseline(self, string: str, cell: int | None, by: str) -> tuple[bool, str]:
        """Re-take the resistance baselines of ``string`` (or one cell) from its
        current reading, after a replacement; recorded in the event log with
        ``by``. (done, message). Blocking: call it in an executor."""
        ...


class EventLogReader(Protocol):
    """The event log (SQLite), read-only: every alarm event with its ``seq``.
    Blocking: call it in an executor from the event loop."""

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Sequence[str] = (),
        severities: Sequence[int] = (),
        string: str | None = None,
        alarm_id: str | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AlarmEvent]: ...

    def last_seq(self) -> int:
        """The newest event's ``seq`` (0 for an empty log)."""
        ...


class HistoryReader(Protocol):
    """The history store (docs/history.md): queries and what the writer is doing."""

    @property
    def queries(self) -> HistoryQueries:
        """``series``, ``resistance_changes``, ``discharges``, ``info``: blocking,
        call them in an executor from the event loop."""
        ...

    def status(self) -> HistoryStatus: ...


class BusStatusView(Protocol):
    """One bus as the engine polls it."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    @property
    def last_cycle_s(self) -> float | None:
        """The bus's own time in its last cycle (polling, not waiting for slots)."""
        ...

    @property
    def cycles(self) -> int: ...

    @property
    def port_open(self) -> bool: ...

    @property
    def counters(self) -> CommCounters:
        """Requests, responses and errors of the whole bus."""
        ...


class Gateway(Protocol):
    """What the runtime hooks receive as ``gateway``."""

    @property
    def name(self) -> str:
        """``[gateway] name``."""
        ...

    @property
    def version(self) -> str:
        """btms-gateway's version."""
        ...

    @property
    def data_dir(self) -> Path:
        """Where the gateway keeps its state; a plugin's own files go in a folder
        of its name below it."""
        ...

    @property
    def demo(self) -> bool:
        """True under ``btms-gateway demo``."""
        ...

    @property
    def settings(self) -> GatewayConfig:
        """The validated core configuration (read-only)."""
        ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The gateway's event loop (set once it runs)."""
        ...

    @property
    def store(self) -> SnapshotReader: ...

    @property
    def alarms(self) -> AlarmService: ...

    @property
    def events(self) -> EventLogReader | None:
        """The event log; None when the gateway runs without the alarm engine."""
        ...

    @property
    def history(self) -> HistoryReader | None:
        """The history store; None when ``[history] enabled = false``."""
        ...

    @property
    def is_ready(self) -> bool:
        """Every plugin started and acquisition running."""
        ...

    def plugin_config(self, name: str) -> BaseModel | None:
        """Plugin ``name``'s validated ``[plugins.NAME]`` section (None if absent)."""
        ...

    def quantities(self, level: Level) -> tuple[Quantity, ...]:
        """The plant quantities of ``level`` this gateway serves: core's, then
        those the plugins registered, in that order."""
        ...

    def bus_status(self) -> Sequence[BusStatusView]: ...

    def string_counters(self, name: str) -> CommCounters:
        """A string's communication counters."""
        ...

    def plugin_failures(self) -> Mapping[tuple[str, str], int]:
        """(plugin, hook) -> how many calls of it raised, since the gateway started."""
        ...

    def uptime_s(self) -> float: ...

    @property
    def analytics(self) -> Any:
        """The battery analytics (docs/analytics.md): ``store`` (the discharge
        summaries: ``list``, ``get``; None when ``[analytics] enabled = false``)
        and ``trends_of(string)``."""
        ...

    def string_health(self, string: str) -> Any:
        """A string's resistance health now (an ``api.StringHealth``); None for an
        unknown string."""
        ...

    def make_report(self, kind: str, subject: str, fmt: str) -> Any:
        """Run a registered report (``register_reports``): an ``api.Report``;
        raises ``api.ReportError``.
        Blocking: call it in an executor."""
        ...
