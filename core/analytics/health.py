"""One string's resistance health, cell by cell: the view REST, the CLI and
the health report share (docs/analytics.md, "Resistance").

Judged without delays (the alarms have theirs): "alarm" or "warning" when a
cell is past the alarm rules' limits against its baseline or against the
string median, "learning" while it has no baseline yet, else "ok".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..alarms.baseline import BaselineRow
from ..alarms.config import rules_for
from ..alarms.rules import Rule
from .resistance import Trend, percent_over, trends


@dataclass(frozen=True, slots=True)
class CellHealth:
    cell: int
    mohm: float | None
    baseline_mohm: float | None
    baseline_source: str | None  #: "learned" or "set"
    baseline_set_at: float | None
    vs_baseline_pct: float | None
    vs_median_pct: float | None
    trend_mohm_per_month: float | None
    limit_mohm: float | None  #: baseline x (1 + the alarm rule's limit)
    crosses_at: float | None  #: when the trend line reaches limit_mohm
    status: str


@dataclass(frozen=True, slots=True)
class StringHealth:
    string: str
    at: float
    median_mohm: float | None
    warning_pct: float
    alarm_pct: float
    median_warning_pct: float
    median_alarm_pct: float
    cells: tuple[CellHealth, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def flagged(self) -> list[int]:
        """Cells past a warning or alarm limit (baseline or median)."""
        return [c.cell for c in self.cells if c.status in ("warning", "alarm")]


def judge(
    string: str,
    latest: Mapping[int, float | None],
    baselines: Sequence[BaselineRow],
    found: Mapping[int, Trend],
    rules: Mapping[str, Rule],
    at: float,
) -> StringHealth:
    values = [v for v in latest.values() if v is not None]
    median = statistics.median(values) if values else None
    base = {r.cell: r for r in baselines}
    warn, alarm = rules["cell_resistance_warning"], rules["cell_resistance_alarm"]
    mwarn, malarm = rules["cell_resistance_median_warning"], rules["cell_resistance_median_alarm"]
    cells = []
    for cell in sorted(latest):
        mohm = latest[cell]
        b = base.get(cell)
        vs_b = percent_over(mohm, b.mohm if b else None)
        vs_m = percent_over(mohm, median)
        tr = found.get(cell)
        status = "ok" if b is not None else "learning"
        for rule, value, level in (
            (warn, vs_b, "warning"),
            (mwarn, vs_m, "warning"),
            (alarm, vs_b, "alarm"),
            (malarm, vs_m, "alarm"),
        ):
            if rule.enabled and value is not None and value > rule.limit:
                status = level if status != "alarm" else status
        limit = b.mohm * (1 + alarm.limit / 100) if b else None
        cell_health = CellHealth(
            cell, mohm, b.mohm if b else None, b.source if b else None,
            b.set_at if b else None, vs_b, vs_m, tr.mohm_per_month if tr else None,
            None if limit is None else round(limit, 6), tr.crosses_at if tr else None, status,
        )  # fmt: skip
        cells.append(cell_health)
    return StringHealth(
        string, at, median, warn.limit, alarm.limit, mwarn.limit, malarm.limit, tuple(cells)
    )


def live(gateway: Any, string: str) -> StringHealth | None:
    """From the running gateway: the last reading, the alarm engine's
    baselines, the trends analytics computed last. None for an unknown string."""
    snap = gateway.store.snapshot.strings.get(string)
    if snap is None:
        return None
    r = snap.reading
    latest = {c.index: c.resistance_mohm for c in r.cells} if r else {}
    rules = rules_for(gateway.settings.alarms, string)
    return judge(
        string,
        latest,
        gateway.alarms.baseline_rows(string),
        gateway.analytics.trends_of(string),
        rules,
        time.time(),
    )


def from_files(
    data_dir: Path, settings: Any, string: str, now: float | None = None
) -> StringHealth:
    """From the files of a gateway's data_dir (another process: the CLI, a
    report): the last recorded resistance of each cell from the history,
    baselines from the event log, trends computed now."""
    from ..alarms import baseline
    from ..alarms.eventlog import EventLog
    from ..history import HistoryQueries

    now = time.time() if now is None else now
    queries = HistoryQueries(Path(data_dir) / "history.sqlite", settings.history)
    changes = queries.resistance_changes(string)
    latest = {cell: float(v[-1]) for cell, (_t, v) in changes.items() if len(v)}
    latest.update(_last_raw(queries, string, now))
    rows: list[BaselineRow] = []
    events = Path(data_dir) / "events.sqlite"
    if events.exists():
        log = EventLog(events)
        try:
            rows = baseline.load(log.db, string)
        finally:
            log.close()
    rules = rules_for(settings.alarms, string)
    a = settings.analytics
    recent = {
        cell: (t[t >= now - a.trend_days * 86400], v[t >= now - a.trend_days * 86400])
        for cell, (t, v) in changes.items()
    }
    found = trends(
        recent,
        {r.cell: r.mohm for r in rows},
        rules["cell_resistance_alarm"].limit,
        now,
        a.trend_min_days,
    )
    return judge(string, latest, rows, found, rules, now)


def _last_raw(queries: Any, string: str, now: float) -> dict[int, float]:
    """Each cell's last raw resistance of the last six hours (the changes
    table is filled when a 10-minute period closes: this covers the rest)."""
    import numpy as np

    try:
        series = queries.series(
            string, ["cell_resistance_mohm"], now - 6 * 3600, now + 1, resolution="raw"
        )
    except Exception:
        return {}
    values = series.stats.get("value")
    if values is None or len(series.t) == 0:
        return {}
    out = {}
    for k, col in enumerate(series.columns):
        present = np.flatnonzero(~np.isnan(values[:, k]))
        if len(present) and col.cell is not None:
            out[col.cell] = float(values[present[-1], k])
    return out
