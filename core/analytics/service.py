"""The analytics service: runs on every published string, before the store
takes it, and hands back the snapshot with its derived values.

Called by the gateway's publish path (core/gateway.py ``_publish``) on the
event loop, so everything per reading is a few list comprehensions over the
cells (about 0.1 ms for 120 cells); what reads files (resistance trends from
the history store) runs on its own thread every ``trend_every_s``, and a
finished discharge is one small SQLite commit.

The derived values (docs/analytics.md, "Derived values") go on
``StringSnapshot.derived`` (string level) and ``StringSnapshot.cell_derived``
(one tuple per key, in the order of ``reading.cells``), where the alarm
engine reads its inputs and every protocol can serve them. A snapshot that
is not GOOD carries the derived values of its last GOOD reading, as it
carries that reading.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ..alarm_types import ObjectPath
from ..alarms.config import rules_for
from ..alarms.rules import CELLS_PER_BLOCK
from ..model import CellReading, Quality, StringReading, StringSnapshot
from .capture import IDLE, Capture, DischargeSummary
from .config import AnalyticsSection
from .resistance import Trend, median_resistance, percent_over, percents_over, trends
from .runtime import RuntimeEstimator
from .store import FILE_NAME, DischargeStore
from .thermal import RunawayWatch, differences, median_temperature

if TYPE_CHECKING:
    from ..alarms.config import AlarmsSection
    from ..history import HistoryService

log = logging.getLogger("btms_gateway.analytics")

#: string-level derived keys (docs/analytics.md has unit, resolution and meaning)
STRING_KEYS = (
    "discharging",
    "discharge_ah",
    "dod_pct",
    "runtime_remaining_s",
    "resistance_median_mohm",
    "temperature_median_c",
    "thermal_rise_c",
)
#: cell-level derived keys
CELL_KEYS = (
    "resistance_vs_baseline_pct",
    "resistance_vs_median_pct",
    "temperature_vs_median_c",
    "temperature_vs_ambient_c",
    "resistance_trend_mohm_per_month",
)


class Note(Protocol):
    def __call__(
        self, rule: str, path: ObjectPath, message: str, *, value: float | None, at: float
    ) -> None: ...


@dataclass(slots=True)
class _String:
    capture: Capture
    runaway: RunawayWatch
    estimator: RuntimeEstimator | None = None
    last: StringReading | None = None
    prev_i: float = 0.0
    derived: Mapping[str, float | None] = field(default_factory=dict)
    cell_derived: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    trends: dict[int, Trend] = field(default_factory=dict)
    #: the resistance comparisons of the last reading, with what they were made
    #: from (resistances, cell numbers, median, baselines): reused while those
    #: are equal, as they are for most polls (a BM-SM measures resistance
    #: seldom), which saves two roundings a cell a poll (0.25 of _derive)
    resistance_made: tuple[Any, ...] = ()
    resistance_pct: tuple[tuple[float | None, ...], tuple[float | None, ...]] = ((), ())


class AnalyticsService:
    def __init__(
        self,
        settings: AnalyticsSection,
        alarms: AlarmsSection,
        data_dir: Path,
        *,
        baselines: Callable[[str], Mapping[int, float]],
        note: Note,
        history: HistoryService | None = None,
    ) -> None:
        self.settings = settings
        self.alarm_settings = alarms
        self.data_dir = Path(data_dir)
        self._baselines = baselines
        self._note = note
        self.history = history
        self.store: DischargeStore | None = None
        self._strings: dict[str, _String] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.enabled:
            return
        self.store = DischargeStore(self.data_dir / FILE_NAME)
        if self.history is not None:
            self._thread = threading.Thread(target=self._trend_loop, name="analytics", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self.store is not None:
            self.store.close()
            self.store = None

    # --- per reading (the gateway's loop) ------------------------------------------------------
    def update(self, s: StringSnapshot) -> StringSnapshot:
        """``s`` with its derived values (``s`` itself when analytics is off)."""
        if not self.settings.enabled:
            return s
        st = self._state(s.name)
        r = s.reading
        fresh = (
            s.quality is Quality.GOOD
            and r is not None
            and r is not st.last
            and (st.last is None or r.read_at > st.last.read_at)
        )
        if fresh:
            assert r is not None
            self._evaluate(s.name, st, r)
        if not st.derived:
            return s
        return replace(s, derived=st.derived, cell_derived=st.cell_derived)

    def _evaluate(self, name: str, st: _String, r: StringReading) -> None:
        cap = st.capture
        was = cap.state
        event, dt = cap.feed(r)
        i = max(0.0, -r.current_a)
        if was == IDLE and cap.state != IDLE:
            rated, hours, k, _ = self.settings.battery(name)
            st.estimator = RuntimeEstimator(rated, hours, k)
            st.estimator.observe(i, 0.0)
        elif st.estimator is not None and cap.state != IDLE and dt > 0:
            st.estimator.add((st.prev_i + i) / 2, dt)
            st.estimator.observe(i, dt)
        st.prev_i, st.last = i, r
        if event == "started":
            self._started(name, r)
        elif event == "ended":
            self._ended(name, st, r)
        self._derive(name, st, r)

    def _derive(self, name: str, st: _String, r: StringReading) -> None:
        cells = r.cells
        cap, est = st.capture, st.estimator
        running = cap.running
        remaining = est.remaining_s() if running and est is not None else None
        if remaining is not None and r.voltage_v <= cap.cutoff_v * len(cells):
            remaining = 0.0
        med_r = median_resistance(cells)
        med_t = median_temperature(cells)
        st.derived = MappingProxyType(
            {
                "discharging": 1.0 if running else 0.0,
                "discharge_ah": round(cap.ah, 4) if running else None,
                "dod_pct": round(est.dod_pct, 3)
                if running and est is not None and est.dod_pct is not None
                else None,
                "runtime_remaining_s": None if remaining is None else round(remaining, 1),
                "resistance_median_mohm": med_r,
                "temperature_median_c": med_t,
                "thermal_rise_c": st.runaway.feed(r),
            }
        )
        tr = st.trends
        temperature = [c.temperature_c for c in cells]
        vs_baseline, vs_median = self._resistance_pct(name, st, cells, med_r)
        st.cell_derived = MappingProxyType(
            {
                "resistance_vs_baseline_pct": vs_baseline,
                "resistance_vs_median_pct": vs_median,
                "temperature_vs_median_c": differences(temperature, med_t),
                "temperature_vs_ambient_c": differences(temperature, r.ambient_temperature_c),
                "resistance_trend_mohm_per_month": tuple(
                    t.mohm_per_month if (t := tr.get(c.index)) is not None else None for c in cells
                )
                if tr
                else (None,) * len(cells),
            }
        )

    def _resistance_pct(
        self, name: str, st: _String, cells: tuple[CellReading, ...], med_r: float | None
    ) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
        """Each cell's resistance against its baseline and against the median,
        the last reading's tuples again when made from equal inputs."""
        base = self._baselines(name)
        made = ([c.resistance_mohm for c in cells], [c.index for c in cells], med_r, base)
        if made == st.resistance_made:
            return st.resistance_pct
        resistance, index = made[0], made[1]
        st.resistance_made = (*made[:3], dict(base))
        st.resistance_pct = (
            tuple(map(percent_over, resistance, map(base.get, index)))
            if base
            else (None,) * len(cells),
            percents_over(resistance, med_r),
        )
        return st.resistance_pct

    def _state(self, name: str) -> _String:
        st = self._strings.get(name)
        if st is None:
            s = self.settings
            cutoff = self.settings.battery(name)[3] * self._cells_per_block(name)
            st = self._strings[name] = _String(
                Capture(
                    name,
                    s.discharge_current_a,
                    s.use_state,
                    s.start_delay_s,
                    s.end_delay_s,
                    s.max_gap_s,
                    round(cutoff, 4),
                ),
                RunawayWatch(s.runaway_window_s, s.runaway_current_rise_a),
            )
        return st

    def _cells_per_block(self, name: str) -> int:
        return CELLS_PER_BLOCK[self.alarm_settings.block_for(name)]

    # --- discharge events ----------------------------------------------------------------------
    def _started(self, name: str, r: StringReading) -> None:
        cap = self._strings[name].capture
        log.info("string %s: discharge started (%.1f A)", name, r.current_a)
        self._announce(
            name, f"string {name}: discharge started at {r.current_a:.1f} A", r.current_a, cap.since
        )

    def _ended(self, name: str, st: _String, r: StringReading) -> None:
        est = st.estimator
        dod = est.dod_pct if est is not None else None
        summary = st.capture.summary(len(st.last.cells) if st.last else 0, dod)
        st.estimator = None
        event_id = None
        if self.store is not None:
            try:
                event_id = self.store.add(summary)
            except Exception:
                log.exception("string %s: the discharge summary could not be stored", name)
        summary = replace(summary, id=event_id)
        text = describe(summary)
        log.info("%s", text)
        self._announce(name, text, summary.ah, summary.end)

    def _announce(self, name: str, message: str, value: float | None, at: float) -> None:
        try:
            self._note("discharge", ObjectPath(None, name), message, value=value, at=at)
        except Exception:
            log.exception("string %s: the discharge could not be written to the event log", name)

    # --- trends (own thread) ---------------------------------------------------------------------
    def _trend_loop(self) -> None:
        if self._stop.wait(min(5.0, self.settings.trend_every_s)):  # let the first polls come
            return
        while not self._stop.is_set():
            try:
                self.refresh_trends()
            except Exception:
                log.exception("resistance trends could not be computed (retried later)")
            self._stop.wait(self.settings.trend_every_s)

    def refresh_trends(self, now: float | None = None) -> None:
        """Recompute every string's trends from the history store."""
        if self.history is None:
            return
        now = time.time() if now is None else now
        alarm = self.alarm_pct()
        s = self.settings
        for name in list(self._strings):
            try:
                changes = self.history.queries.resistance_changes(
                    name, start=now - s.trend_days * 86400.0
                )
            except Exception:  # no history yet for this string
                continue
            found = trends(changes, self._baselines(name), alarm, now, s.trend_min_days)
            self._strings[name].trends = found

    def alarm_pct(self, string: str | None = None) -> float:
        return rules_for(self.alarm_settings, string)["cell_resistance_alarm"].limit

    def trends_of(self, name: str) -> dict[int, Trend]:
        st = self._strings.get(name)
        return dict(st.trends) if st is not None else {}

    def summaries(self, string: str | None = None, limit: int | None = None) -> list[Any]:
        return self.store.list(string, limit=limit) if self.store is not None else []


def describe(s: DischargeSummary) -> str:
    """One line for the event log."""
    minutes = s.duration_s / 60.0
    length = (
        f"{int(minutes // 60)} h {int(minutes % 60)} min"
        if minutes >= 60
        else (f"{minutes:.1f} min")
    )
    weakest = ", ".join(str(c) for c in s.weakest[:3])
    energy = f"{s.wh / 1000:.2f} kWh" if s.wh >= 1000 else f"{s.wh:.0f} Wh"
    ref = f" (discharge {s.id})" if s.id is not None else ""
    return (
        f"string {s.string}: discharge ended after {length}: {s.ah:.2f} Ah, {energy}, "
        f"lowest {s.lowest_voltage_v:.2f} V; weakest cells {weakest}{ref}"
    )
