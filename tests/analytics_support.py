"""Driving the analytics with the BM-SM simulator's model in simulated time:
a discharge of hours runs in seconds, each reading stamped with its own
simulated time, and the simulator's truth (DischargeRun) comes back beside
what the analytics made of it. Shared by the analytics tests and
bench/bench_health.py."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from btms_gateway.core.alarm_types import ObjectPath
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.analytics import AnalyticsSection, AnalyticsService, DischargeSummary
from btms_gateway.core.model import Quality, StringReading, StringSnapshot
from btms_gateway.protocols.bmsm.simulator.discharge import DischargeRun
from btms_gateway.protocols.bmsm.simulator.model import StringModel

T0 = 1_800_000_000.0  # simulated epoch seconds of the first reading


@dataclass
class Noted:
    rule: str
    path: ObjectPath
    message: str
    value: float | None
    at: float


@dataclass
class DischargeRig:
    """An analytics service and a simulated string, fed reading by reading."""

    model: StringModel
    service: AnalyticsService
    name: str = "S1"
    t: float = T0
    notes: list[Noted] = field(default_factory=list)
    snapshots: list[StringSnapshot] = field(default_factory=list)
    keep: bool = False  # keep every published snapshot (memory: tests only)
    history: Any = None  # a HistoryService: every reading recorded with its time

    def feed(self, reading: StringReading | None = None) -> StringSnapshot:
        r = reading or self.model.expected_reading(read_at=self.t)
        snap = StringSnapshot(self.name, 1, None, 0, 1, "b", Quality.GOOD, r, T0)
        out = self.service.update(snap)
        if self.history is not None:
            self.history.write(self.name, r)
        if self.keep:
            self.snapshots.append(out)
        return out

    def run(
        self,
        seconds: float,
        step_s: float = 1.0,
        each: Callable[[StringSnapshot, float], Any] | None = None,
    ) -> StringSnapshot:
        """Advance the simulator and feed one reading per step."""
        out = self.feed()
        end = self.t + seconds
        while self.t < end:
            self.model.step(step_s)
            self.t += step_s
            out = self.feed()
            if each is not None:
                each(out, self.t)
        return out

    def summaries(self) -> list[DischargeSummary]:
        assert self.service.store is not None
        return self.service.store.list(self.name)


def rig(
    cells: int = 24,
    seed: int = 1,
    weak: Sequence[int] | None = (),
    *,
    rated_ah: float | None = 100.0,
    data_dir: Path | None = None,
    baselines: dict[int, float] | None = None,
    history: Any = None,
    **settings: Any,
) -> DischargeRig:
    model = StringModel.create(1, cells, seed, weak_cells=weak, frozen=True, rated_ah=100.0)
    notes: list[Noted] = []
    service = AnalyticsService(
        AnalyticsSection(rated_ah=rated_ah, **settings),
        AlarmsSection(),
        data_dir or Path(tempfile.mkdtemp(prefix="btms-analytics-")),
        baselines=lambda name: baselines or {},
        note=lambda rule, path, message, *, value, at: notes.append(
            Noted(rule, path, message, value, at)
        ),
    )
    service.start()
    return DischargeRig(model, service, notes=notes, history=history)


@dataclass
class Outcome:
    """One discharge: the analytics' summary, the estimate at 50 % DoD and the truth."""

    summary: DischargeSummary
    truth: DischargeRun
    estimate_at_half_s: float | None  #: remaining runtime estimated at 50 % DoD
    actual_at_half_s: float | None  #: the simulator's time from then to the string cutoff
    linear_at_half_s: float | None  #: a line through the weakest cell's last 10 minutes


def discharge(
    cells: int,
    seed: int,
    weak: Sequence[int],
    current_a: float,
    step_s: float = 1.0,
    data_dir: Path | None = None,
    history: Any = None,
) -> Outcome:
    """Float for a minute, a discharge at ``current_a`` to the end voltage,
    float again until the capture closes (recorded in ``history`` if given)."""
    r = rig(cells, seed, weak, data_dir=data_dir, history=history)
    r.run(60, step_s)
    truth = r.model.start_discharge(current_a, now=r.t)
    half: dict[str, float | None] = {}
    weakest: list[tuple[float, float]] = []

    def watch(snap: StringSnapshot, t: float) -> None:
        if truth.ended and r.model.run is None and "at" not in half:
            return
        reading = snap.reading
        assert reading is not None
        weakest.append((t, min(c.voltage_v or 9.0 for c in reading.cells)))
        dod = snap.derived.get("dod_pct")
        if "at" not in half and dod is not None and dod >= 50.0:
            half["at"] = t
            half["estimate"] = snap.derived.get("runtime_remaining_s")
            half["linear"] = _linear_to_cutoff(weakest, t, 1.75)

    while r.model.run is not None:
        r.run(60, step_s, watch)
    r.run(120, step_s)
    summaries = r.summaries()
    assert summaries, "the discharge was not captured"
    actual = None
    if "at" in half and truth.string_cutoff_s is not None:
        actual = T0 + 60 + truth.string_cutoff_s - half["at"]
    return Outcome(summaries[0], truth, half.get("estimate"), actual, half.get("linear"))


def _linear_to_cutoff(points: list[tuple[float, float]], now: float, cutoff: float) -> float | None:
    """What a straight line through the weakest cell's last 10 minutes says."""
    recent = [(t, v) for t, v in points if now - t <= 600]
    if len(recent) < 2:
        return None
    n = len(recent)
    mt = sum(t for t, _ in recent) / n
    mv = sum(v for _, v in recent) / n
    num = sum((t - mt) * (v - mv) for t, v in recent)
    den = sum((t - mt) ** 2 for t, _ in recent)
    slope = num / den if den else 0.0
    if slope >= 0:
        return None
    v_now = mv + slope * (now - mt)
    return max(0.0, (cutoff - v_now) / slope)


def with_reading(snap: StringSnapshot, **changes: Any) -> StringReading:
    assert snap.reading is not None
    return replace(snap.reading, **changes)


def site_settings(data_dir: Path, name: str = "Riverside data centre", **extra: Any) -> Any:
    """A core configuration whose data_dir is ``data_dir`` (what a report reads)."""
    from btms_gateway.core.config import GatewayConfig

    return GatewayConfig.model_validate(
        {"gateway": {"name": name, "data_dir": str(data_dir)}, **extra}
    )


def history_service(data_dir: Path) -> Any:
    from btms_gateway.core.history import HistoryService
    from btms_gateway.core.history.config import HistorySection

    return HistoryService(HistorySection(commit_interval_s=0.5), data_dir).start()
