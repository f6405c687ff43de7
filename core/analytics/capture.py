"""Discharge capture: from a string's readings to one summary per discharge.

A discharge starts when the string's current stays below the threshold (or
its state register says discharge) for ``start_delay_s``; it counts from the
first such reading, so nothing before the delay is lost. It ends when the
condition has been gone for ``end_delay_s``; its end is the last discharging
reading. In between, every GOOD reading adds to the Ah and Wh delivered
(trapezoids between readings; a gap longer than ``max_gap_s`` adds nothing)
and to each cell's start, lowest and end voltage and the time it first
reached the cutoff. Cells are ranked weakest first: the earliest to reach
the cutoff, then the lowest voltage, then the lowest end voltage.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..model import StringReading, StringState


class Phase(enum.IntEnum):
    """Where a string's capture is."""

    IDLE = 0  #: no discharge
    PENDING = 1  #: the condition has held for less than the start delay so far
    ACTIVE = 2  #: a discharge captured (until the condition is gone for the end delay)


IDLE, PENDING, ACTIVE = Phase.IDLE, Phase.PENDING, Phase.ACTIVE


@dataclass(slots=True)
class CellTrack:
    """One cell's voltages while a discharge runs (its CellSummary at the end)."""

    start_v: float
    lowest_v: float
    end_v: float
    cutoff_s: float | None = None


@dataclass(frozen=True, slots=True)
class CellSummary:
    """One cell over a discharge; ``drop_v_per_h`` from start to end voltage."""

    cell: int
    rank: int
    start_v: float
    lowest_v: float
    end_v: float
    drop_v_per_h: float | None
    cutoff_s: float | None  #: seconds from the start to the cutoff; None: never reached


@dataclass(frozen=True, slots=True)
class DischargeSummary:
    """What a discharge was; ``id`` is given when it is stored."""

    string: str
    start: float
    end: float
    duration_s: float
    ah: float
    wh: float
    mean_current_a: float
    start_voltage_v: float
    lowest_voltage_v: float
    end_voltage_v: float
    cutoff_v: float  #: per cell (block)
    string_cutoff_v: float  #: the string's end voltage: cells x cutoff_v
    reached_cutoff: bool  #: the string voltage reached string_cutoff_v
    dod_pct: float | None
    cells: tuple[CellSummary, ...]
    id: int | None = None

    @property
    def weakest(self) -> list[int]:
        """Cell numbers, weakest first."""
        return [c.cell for c in sorted(self.cells, key=lambda c: c.rank)]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["weakest"] = self.weakest
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DischargeSummary:
        data = dict(data)
        data.pop("weakest", None)
        data["cells"] = tuple(CellSummary(**c) for c in data["cells"])
        return cls(**data)


@dataclass(slots=True)
class Capture:
    """One string's capture state machine (fed GOOD readings in time order)."""

    string: str
    threshold_a: float
    use_state: bool
    start_delay_s: float
    end_delay_s: float
    max_gap_s: float
    cutoff_v: float
    state: int = IDLE
    since: float = 0.0  #: first discharging reading of a pending or active discharge
    quiet_since: float | None = None  #: first reading without discharge (active)
    last_t: float | None = None
    last_i: float = 0.0
    last_v: float = 0.0
    ah: float = 0.0
    wh: float = 0.0
    start_v: float = 0.0
    lowest_v: float = math.inf
    end_v: float = 0.0
    end_t: float = 0.0
    cells: dict[int, CellTrack] = field(default_factory=dict)

    def discharging(self, r: StringReading) -> bool:
        return r.current_a < self.threshold_a or (
            self.use_state and r.state is StringState.DISCHARGE
        )

    @property
    def running(self) -> bool:
        return self.state == ACTIVE

    def feed(self, r: StringReading) -> tuple[str | None, float]:
        """Take one reading; returns ("started" | "ended" | None, seconds since
        the previous reading that were integrated)."""
        t, on = r.read_at, self.discharging(r)
        if self.state == IDLE:
            if not on:
                return None, 0.0
            self._begin(r)
            return self._maybe_start(t), 0.0
        if on:
            self.quiet_since = None
            dt = self._add(r)
            if self.state == PENDING:
                return self._maybe_start(t), dt
            return None, dt
        if self.state == PENDING:  # a blip shorter than the start delay: forgotten
            self.state = IDLE
            return None, 0.0
        if self.quiet_since is None:
            self.quiet_since = t
        # nothing delivered meanwhile: a discharge resuming integrates from here
        self.last_t, self.last_i, self.last_v = t, 0.0, r.voltage_v
        if t - self.quiet_since >= self.end_delay_s:
            return "ended", 0.0
        return None, 0.0

    def _maybe_start(self, t: float) -> str | None:
        if t - self.since >= self.start_delay_s:
            self.state = ACTIVE
            return "started"
        self.state = PENDING
        return None

    def _begin(self, r: StringReading) -> None:
        self.state, self.since, self.quiet_since = PENDING, r.read_at, None
        self.ah = self.wh = 0.0
        self.start_v = self.end_v = r.voltage_v
        self.lowest_v = r.voltage_v
        self.last_t, self.last_i, self.last_v, self.end_t = (
            r.read_at, -r.current_a, r.voltage_v, r.read_at,
        )  # fmt: skip
        self.cells = {}
        self._cells(r)

    def _add(self, r: StringReading) -> float:
        t, i, v = r.read_at, -r.current_a, r.voltage_v
        dt = 0.0 if self.last_t is None else t - self.last_t
        if 0 < dt <= self.max_gap_s:
            self.ah += (self.last_i + i) / 2 * dt / 3600.0
            self.wh += (self.last_i * self.last_v + i * v) / 2 * dt / 3600.0
        else:
            dt = 0.0
        self.last_t, self.last_i, self.last_v = t, i, v
        self.lowest_v = min(self.lowest_v, v)
        self.end_v, self.end_t = v, t
        self._cells(r)
        return dt

    def _cells(self, r: StringReading) -> None:
        elapsed = r.read_at - self.since
        tracks, cutoff = self.cells, self.cutoff_v
        for c in r.cells:
            v = c.voltage_v
            if v is None:
                continue
            tr = tracks.get(c.index)
            if tr is None:
                tr = tracks[c.index] = CellTrack(v, v, v)
            elif v < tr.lowest_v:
                tr.lowest_v = v
            tr.end_v = v
            if tr.cutoff_s is None and v <= cutoff:
                tr.cutoff_s = elapsed

    def summary(self, cells_in_string: int, dod_pct: float | None) -> DischargeSummary:
        """The finished discharge (after "ended")."""
        duration = max(0.0, self.end_t - self.since)
        hours = duration / 3600.0
        order = sorted(
            self.cells.items(),
            key=lambda kv: (
                kv[1].cutoff_s if kv[1].cutoff_s is not None else math.inf,
                kv[1].lowest_v,
                kv[1].end_v,
                kv[0],
            ),
        )
        cells = tuple(
            CellSummary(
                cell=index,
                rank=rank,
                start_v=tr.start_v,
                lowest_v=tr.lowest_v,
                end_v=tr.end_v,
                drop_v_per_h=round((tr.start_v - tr.end_v) / hours, 4) if hours > 0 else None,
                cutoff_s=tr.cutoff_s,
            )
            for rank, (index, tr) in enumerate(order, start=1)
        )
        string_cutoff = round(self.cutoff_v * cells_in_string, 3)
        self.state = IDLE
        return DischargeSummary(
            string=self.string,
            start=self.since,
            end=self.end_t,
            duration_s=duration,
            ah=round(self.ah, 4),
            wh=round(self.wh, 2),
            mean_current_a=round(self.ah / hours, 3) if hours > 0 else 0.0,
            start_voltage_v=self.start_v,
            lowest_voltage_v=self.lowest_v,
            end_voltage_v=self.end_v,
            cutoff_v=self.cutoff_v,
            string_cutoff_v=string_cutoff,
            reached_cutoff=self.lowest_v <= string_cutoff,
            dod_pct=None if dod_pct is None else round(dod_pct, 2),
            cells=cells,
        )
