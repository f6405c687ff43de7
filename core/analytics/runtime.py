"""Depth of discharge and remaining runtime during a discharge: Peukert-corrected
coulomb counting against the string's rated capacity (docs/analytics.md).

Why this model and not a fit of the voltage curve: at half depth of
discharge a lead-acid cell's voltage is still on its flat part, and the
knee that tells how much is left has not begun, so a curve fitted to the
voltage so far extrapolates the flat part and overestimates what is left
(bench/bench_health.py prints both side by side). Charge taken is measured
exactly (the current, integrated), and Peukert's law says how much of the
rated capacity a given current uses up: at current ``I`` a battery rated
``C`` Ah over ``H`` hours (``I_r = C / H``) delivers ``C (I_r / I)^(k-1)``
Ah. So each second at ``I`` uses ``I (I / I_r)^(k-1)`` "rated" Ah; depth of
discharge is their sum over ``C``, and what is left, ``C`` minus the sum, at
the present rate, is the remaining runtime. A varying load is handled second
by second; the present rate is smoothed over about 30 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: seconds: time constant of the current smoothing the remaining time uses
SMOOTHING_S = 30.0


def peukert_rate(current_a: float, rated_a: float, k: float) -> float:
    """Rated Ah used per hour at ``current_a`` (a magnitude)."""
    if current_a <= 0:
        return 0.0
    return float(current_a * (current_a / rated_a) ** (k - 1.0))


@dataclass(slots=True)
class RuntimeEstimator:
    """One discharge's running estimate. ``rated_ah`` None: only Ah counted."""

    rated_ah: float | None
    rated_hours: float
    peukert: float
    used_ah: float = 0.0  #: Peukert-effective (rated-rate) Ah used so far
    smoothed_a: float | None = None

    @property
    def rated_a(self) -> float:
        return (self.rated_ah or 0.0) / self.rated_hours

    def add(self, current_a: float, dt_s: float) -> None:
        """Account ``dt_s`` seconds at ``current_a`` (discharge as a magnitude)."""
        if dt_s <= 0 or self.rated_ah is None:
            return
        self.used_ah += peukert_rate(current_a, self.rated_a, self.peukert) * dt_s / 3600.0

    def observe(self, current_a: float, dt_s: float) -> None:
        """The present rate, smoothed (an exponential average over ~30 s)."""
        if self.smoothed_a is None or dt_s <= 0:
            self.smoothed_a = current_a
            return
        w = 1.0 - math.exp(-dt_s / SMOOTHING_S)
        self.smoothed_a += w * (current_a - self.smoothed_a)

    @property
    def dod_pct(self) -> float | None:
        if self.rated_ah is None:
            return None
        return min(100.0, 100.0 * self.used_ah / self.rated_ah)

    def remaining_s(self) -> float | None:
        """Seconds to the cutoff at the present (smoothed) rate; None when it
        cannot be said (no rated capacity, no discharge current)."""
        if self.rated_ah is None or not self.smoothed_a or self.smoothed_a <= 0:
            return None
        rate = peukert_rate(self.smoothed_a, self.rated_a, self.peukert)
        return max(0.0, (self.rated_ah - self.used_ah) / rate * 3600.0)
