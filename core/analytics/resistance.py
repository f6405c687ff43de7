"""Each cell's internal resistance against its own baseline, against the
string's median, and its trend over months (docs/analytics.md).

Against the baseline (IEEE 1188 practice: a VRLA cell is judged by its rise
over its own value when new) a cell that was weak when installed is never
flagged: its baseline is its own weak value. Against the median of its
string's cells, measured in the same poll at the same temperature and
charge state, it is, from its first reading on. The trend is a least-squares
line through the cell's recorded resistance changes (the history store keeps
every change for the battery's life), in mOhm per month (30.44 days), and
the date it crosses the alarm limit is where that line meets
``baseline x (1 + limit/100)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..model import CellReading
from .cells import cell_median

MONTH_S = 30.44 * 86400.0


def median_resistance(cells: Sequence[CellReading]) -> float | None:
    return cell_median(cells, "resistance_mohm")


def percent_over(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round((value / reference - 1.0) * 100.0, 3)


def percents_over(
    values: Sequence[float | None], reference: float | None
) -> tuple[float | None, ...]:
    """``percent_over`` of every value against one reference, in one pass (every
    cell of every poll: no call per cell)."""
    if not reference:
        return (None,) * len(values)
    return tuple(None if v is None else round((v / reference - 1.0) * 100.0, 3) for v in values)


@dataclass(frozen=True, slots=True)
class Trend:
    """One cell's resistance trend; ``crosses_at`` None: not heading for the
    limit (flat or falling), or no baseline to set a limit from."""

    cell: int
    mohm_per_month: float
    fitted_now_mohm: float
    points: int
    span_days: float
    limit_mohm: float | None
    crosses_at: float | None
    already_over: bool


def trends(
    changes: Mapping[int, tuple[np.ndarray, np.ndarray]],
    baselines: Mapping[int, float],
    alarm_pct: float,
    now: float,
    min_days: float,
) -> dict[int, Trend]:
    """Per cell: a line through (time, mOhm) of its changes. A cell whose
    changes span less than ``min_days`` has no trend yet."""
    out: dict[int, Trend] = {}
    for cell, (t, v) in changes.items():
        if len(t) < 2:
            continue
        span = float(t[-1] - t[0])
        if span < min_days * 86400.0:
            continue
        x = (t - t[-1]) / MONTH_S  # months, 0 = the last change (well conditioned)
        slope, intercept = np.polyfit(x, v, 1)
        fitted_now = float(intercept + slope * (now - t[-1]) / MONTH_S)
        base = baselines.get(cell)
        limit = base * (1 + alarm_pct / 100.0) if base else None
        crosses = None
        over = limit is not None and fitted_now >= limit
        if limit is not None and not over and slope > 0:
            crosses = now + (limit - fitted_now) / slope * MONTH_S
        out[cell] = Trend(
            cell,
            round(float(slope), 6),
            round(fitted_now, 6),
            len(t),
            round(span / 86400.0, 3),
            None if limit is None else round(limit, 6),
            crosses,
            over,
        )
    return out
