"""A lead-acid discharge the simulator runs: the truth the analytics are judged by.

Each cell has its own capacity and resistance. At a constant string current
``I`` a cell uses its charge at the Peukert rate: ``dq/dt = I (I/I_r)^(k-1)``
(``I_r`` the rated current, rated Ah over rated hours), so ``f = q / Q`` is
the fraction of its capacity used. Its terminal voltage follows a
Shepherd-type curve::

    V = E0 - I R - c ln(1 + I/I_r) - a f - K f / (1 - f)

the open-circuit fall with depth of discharge (``a f``), the ohmic drop
(``I R``, the cell's own resistance), a polarization that grows with the
rate, and the knee (``K f / (1 - f)``) where the voltage collapses as the
cell runs out. A cell's ``capacity_ah`` is what it delivers to 1.75 V at the
rated rate (as datasheets rate a cell); ``Q`` is chosen from it so the curve
crosses 1.75 V there. A weak cell (less capacity, more resistance) reaches
the knee first and falls below its neighbours. The voltage never reads below
1.60 V, the BM-CS's measuring floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

E0 = 2.10  # V, a full cell under a light load
A_OCV = 0.10  # V over the whole capacity: the open-circuit fall
K_KNEE = 0.005  # V: the knee term's weight
C_RATE = 0.03  # V per ln(1 + I/I_r): polarization
FLOOR_V = 1.60  # the sensor's lowest reading (2 V cells)
RATED_CUTOFF_V = 1.75  # what capacity_ah is rated to
F_MAX = 0.999


def cell_voltage(f: float, current_a: float, rated_a: float, resistance_mohm: float) -> float:
    """Terminal voltage of a cell that has used ``f`` of its charge Q."""
    g = min(f, F_MAX)
    v = (
        E0
        - current_a * resistance_mohm / 1000.0
        - C_RATE * math.log1p(current_a / rated_a)
        - A_OCV * g
        - K_KNEE * g / (1.0 - g)
        - 5.0 * max(0.0, f - F_MAX)
    )
    return max(FLOOR_V, v)


def charge_for(capacity_ah: float, rated_a: float, resistance_mohm: float) -> float:
    """Q such that the curve at the rated current crosses 1.75 V exactly when
    ``capacity_ah`` has been delivered (bisection on f)."""
    lo, hi = 0.0, F_MAX
    for _ in range(60):
        mid = (lo + hi) / 2
        if cell_voltage(mid, rated_a, rated_a, resistance_mohm) > RATED_CUTOFF_V:
            lo = mid
        else:
            hi = mid
    return capacity_ah / lo


@dataclass(slots=True)
class DischargeRun:
    """One discharge in progress or done: what the simulator did (the truth).

    ``cutoff_s``: seconds from the start at which each cell (1-based) first
    read at or below ``cutoff_v``; ``string_cutoff_s``: when the string
    voltage first reached ``cells x cutoff_v`` (the load's end voltage; the
    run stops there unless ``stop_at_cutoff`` is False)."""

    current_a: float
    started_at: float
    duration_s: float | None = None
    cutoff_v: float = 1.75
    stop_at_cutoff: bool = True
    elapsed_s: float = 0.0
    ah: float = 0.0
    wh: float = 0.0
    lowest_string_v: float = math.inf
    cutoff_s: dict[int, float] = field(default_factory=dict)
    string_cutoff_s: float | None = None
    ended: bool = False
    #: what the string and its cells read before (restored when the run ends)
    before: dict[str, Any] = field(default_factory=dict)
