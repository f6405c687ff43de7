"""Thermal early warning inputs: each cell against its string's median
temperature and the room's, and the thermal-runaway signature: on float
charge, the current the charger pushes rising while the cells warm
(a VRLA cell drying out or shorting draws more current, which heats it,
which lowers its resistance and draws more: the loop IEEE 1188 and the
battery makers warn about).

``RunawayWatch`` keeps the (time, current, hottest cell) samples of the last
window; its value is the hottest cell's temperature rise over the window
when the float current rose by at least the configured amount over the
same window, else 0. The alarm rule ``string_thermal_runaway`` compares
that rise with its limit, with delay and hysteresis like every rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import CellReading, StringReading, StringState
from .cells import cell_median


def median_temperature(cells: Sequence[CellReading]) -> float | None:
    return cell_median(cells, "temperature_c")


def differences(
    values: Sequence[float | None], reference: float | None
) -> tuple[float | None, ...]:
    """Each cell's temperature against one reference (the string's median, the
    room's), to the millidegree; None where either is unknown. One pass for
    every cell of every poll."""
    if reference is None:
        return (None,) * len(values)
    return tuple(None if v is None else round(v - reference, 3) for v in values)


def hottest(cells: Sequence[CellReading]) -> float | None:
    values = [c.temperature_c for c in cells if c.temperature_c is not None]
    return max(values) if values else None


@dataclass(slots=True)
class RunawayWatch:
    window_s: float
    current_rise_a: float
    samples: deque[tuple[float, float, float]] = field(default_factory=deque)

    def feed(self, r: StringReading) -> float | None:
        """The hottest cell's rise over the window while the charge current
        rose; 0 when it did not; None until the window is covered."""
        hot = hottest(r.cells)
        charging = r.state in (StringState.FLOAT_CHARGE, StringState.EQUALIZE_CHARGE)
        if hot is None or not charging or r.current_a <= 0:
            self.samples.clear()
            return 0.0 if hot is not None else None
        t = r.read_at
        s = self.samples
        s.append((t, r.current_a, hot))
        while len(s) > 1 and t - s[1][0] >= self.window_s:
            s.popleft()
        t0, i0, hot0 = s[0]
        if t - t0 < self.window_s * 0.9:
            return None
        if r.current_a - i0 < self.current_rise_a:
            return 0.0
        return round(max(0.0, hot - hot0), 3)
