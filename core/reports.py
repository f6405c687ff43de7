"""Reports a plugin offers (``register_reports``) and what they are made from.

Presentation stays out of core: a report plugin (plugins/reports, or a
third party's) registers generators; core collects them, the gateway runs
one for a plugin that asks (the web plugin's download button), and the
plugin's own CLI commands run them on a configuration's files. A generator
gets a ``ReportSource``, the same whether a running gateway or the files of
its ``data_dir`` are behind it, so a report is the same from the dashboard
and from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pluggy

from .analytics.health import StringHealth, from_files
from .analytics.store import FILE_NAME, DischargeStore
from .analytics_cli import load_settings
from .history import HistoryQueries
from .plugin_manager import FailureLog, collect_registrations


class ReportError(LookupError):
    """The report cannot be made as asked (no such event or string, a
    library it needs is not installed); the message says why."""


@dataclass(frozen=True, slots=True)
class Report:
    """A finished report: its bytes, media type and a file name to save it as."""

    data: bytes
    media_type: str
    filename: str


@dataclass
class ReportSource:
    """What a report is made from.

    ``history`` is a ``HistoryQueries`` (None without a history file);
    ``discharges`` the discharge summaries; ``health(string)`` the string's
    resistance health now; ``settings`` the validated core configuration."""

    site: str
    settings: Any
    history: Any | None
    discharges: DischargeStore | None
    health: Callable[[str], StringHealth | None]

    @classmethod
    def from_files(cls, settings: Any) -> ReportSource:
        """For another process (the CLI): the files under ``gateway.data_dir``."""
        data_dir = Path(settings.gateway.data_dir)
        history_file = data_dir / "history.sqlite"
        store_file = data_dir / FILE_NAME
        return cls(
            site=settings.gateway.name,
            settings=settings,
            history=HistoryQueries(history_file, settings.history)
            if history_file.exists()
            else None,
            discharges=DischargeStore(store_file, readonly=True) if store_file.exists() else None,
            health=lambda string: from_files(data_dir, settings, string),
        )

    @classmethod
    def from_config_file(cls, path: Path) -> ReportSource:
        """``from_files`` of the configuration in ``path`` (a command's ``-c
        FILE``); a bad file prints its problems and exits 2, as every command does."""
        return cls.from_files(load_settings(path))


class ReportGenerator(Protocol):
    def __call__(self, source: ReportSource, subject: str, fmt: str) -> Report:
        """``subject``: what the report is about (a discharge id, a string
        name); ``fmt``: "html" or "pdf". Raises ReportError."""
        ...


def report_generators(
    pm: pluggy.PluginManager, failures: FailureLog
) -> dict[str, Callable[[ReportSource, str, str], Report]]:
    """kind -> generator, from every installed plugin's ``register_reports``."""
    return {
        kind: generator
        for _, (kind, generator) in collect_registrations(pm, "register_reports", failures)
    }
