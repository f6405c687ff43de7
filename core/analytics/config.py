"""The ``[analytics]`` section: discharge capture, the runtime estimate,
resistance trends and the thermal-runaway window (docs/analytics.md).

Built on :mod:`btms_gateway.core.config_base` so that ``core.config`` can
type its ``analytics`` key without an import cycle. The alarm rules these
analytics feed (thresholds, delays, hysteresis) stay in ``[alarms.rules]``,
like every other rule.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..config_base import StrictModel

Positive = Annotated[float, Field(gt=0)]


class StringAnalytics(StrictModel):
    """``[analytics.strings.NAME]``: the battery behind one string."""

    #: capacity to the cutoff voltage at the rated rate (e.g. 100 Ah at C10); no
    #: estimate of depth of discharge and runtime without it
    rated_ah: Annotated[float, Field(gt=0, le=100_000)] | None = None
    rated_hours: Annotated[float, Field(gt=0, le=1000)] | None = None
    peukert: Annotated[float, Field(ge=1.0, le=1.6)] | None = None
    #: end voltage per 2 V cell (scaled by the block type of [alarms])
    cutoff_vpc: Annotated[float, Field(ge=1.5, le=2.1)] | None = None


class AnalyticsSection(StrictModel):
    """Defaults for every string; ``strings.NAME`` overrides the battery data."""

    enabled: bool = True
    #: a string is discharging while its current is below this (A; negative =
    #: discharge), or while its state register says discharge (``use_state``)
    discharge_current_a: Annotated[float, Field(le=0)] = -1.0
    use_state: bool = True
    #: how long the condition must hold before a discharge is captured (its
    #: readings count from the first one), and how long it must be gone to end it
    start_delay_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    end_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: two readings further apart than this are a gap: nothing is integrated over it
    max_gap_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    rated_ah: Annotated[float, Field(gt=0, le=100_000)] | None = None
    #: the rate rated_ah is given at: 10 for C10 (IEEE 1188 capacity tests use it)
    rated_hours: Annotated[float, Field(gt=0, le=1000)] = 10.0
    #: Peukert's exponent (1.10..1.15 for VRLA/AGM; 1.2..1.3 for flooded cells)
    peukert: Annotated[float, Field(ge=1.0, le=1.6)] = 1.12
    #: end-of-discharge voltage per 2 V cell (1.75 V: the common rating end voltage)
    cutoff_vpc: Annotated[float, Field(ge=1.5, le=2.1)] = 1.75
    #: resistance trend: least squares over this many days of each cell's history
    trend_days: Annotated[float, Field(gt=0, le=3660)] = 90.0
    #: a trend needs history spanning at least this many days
    trend_min_days: Annotated[float, Field(gt=0, le=3660)] = 7.0
    #: seconds between two trend computations (they read the history file)
    trend_every_s: Annotated[float, Field(ge=1, le=86_400)] = 3600.0
    #: thermal runaway: temperature rise of the hottest cell over this window,
    #: counted only when the float current rose by at least runaway_current_rise_a
    runaway_window_s: Annotated[float, Field(ge=1, le=86_400)] = 600.0
    runaway_current_rise_a: Annotated[float, Field(gt=0, le=1000)] = 0.5
    strings: dict[str, StringAnalytics] = {}

    def battery(self, string: str) -> tuple[float | None, float, float, float]:
        """(rated_ah, rated_hours, peukert, cutoff_vpc) of ``string``."""
        s = self.strings.get(string) or StringAnalytics()
        return (
            s.rated_ah if s.rated_ah is not None else self.rated_ah,
            s.rated_hours if s.rated_hours is not None else self.rated_hours,
            s.peukert if s.peukert is not None else self.peukert,
            s.cutoff_vpc if s.cutoff_vpc is not None else self.cutoff_vpc,
        )
