"""How fast is the alarm engine, and how many events can the log take?

1. Evaluation cost of one 120-cell string when nothing changes (the common
   case: every poll of every string goes through ``on_string``), next to a
   bare loop that only reads each cell's voltage (the floor any evaluation
   pays), and with 10 cells holding active alarms inside their hysteresis band.
   Target: well under 1 ms per string; we require <= 250 us (4x headroom).
2. Events per second the engine + SQLite log sustain, for bursts (40 events
   per committed string evaluation) and single events (one commit each), with
   synchronous=FULL (the default) and NORMAL side by side.
   Targets with FULL: bursts >= 1,000 events/s, single events >= 50/s.

    python bench/bench_alarms.py [--dir DIR]   (the db goes to DIR, default: a temp dir)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import run_record
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality
from btms_gateway.kit import synthetic as sy

STRINGS, CELLS = 32, 120
EVAL_TARGET_US, BURST_TARGET, SINGLE_TARGET = 250.0, 1000.0, 50.0
NOW = {"on_delay_s": 0, "off_delay_s": 0}


def rate(fn: Callable[[int], int], seconds: float = 1.5) -> tuple[float, float]:
    """Calls per second and items per second of ``fn(n) -> items``."""
    n = items = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += fn(n)
        n += 1
    elapsed = time.perf_counter() - start
    return n / elapsed, items / elapsed


def engine(path: Path, sync: str, **rules: dict) -> AlarmEngine:
    s = AlarmsSection.model_validate({"rules": rules, "synchronous": sync})
    return AlarmEngine(s, EventLog(path, synchronous=sync), lambda e: None)


def eval_cost(tmp: Path) -> list[tuple[str, float]]:
    names = [f"S{i}" for i in range(1, STRINGS + 1)]
    base = [sy.string(n, None, quality=Quality.OFFLINE, index=i + 1) for i, n in enumerate(names)]
    plant = sy.plant(*base)
    eng = engine(tmp / "eval.sqlite", "full", cell_voltage_high={"hysteresis": 0.05})
    eng.restore(plant)
    healthy = sy.cells(CELLS)
    in_band = sy.cells(CELLS, v={i: 2.37 for i in range(1, 11)})  # in 2.35..2.40 band
    t0 = time.time()
    # learn baselines and raise the 10 alarms first (the "busy" case below)
    for k in range(12):
        for i, n in enumerate(names):
            cells = sy.cells(CELLS, v={c: 2.5 for c in range(1, 11)}) if k >= 10 else healthy
            s = sy.string(n, sy.reading(t0 + k, cells), index=i + 1)
            plant = sy.with_string(plant, s)
            eng.on_string(s, plant)
    eng.tick(t0 + 100)  # 10 s on-delay: all 320 alarms active now
    active = len(eng.active())
    assert active == 10 * STRINGS, active

    def snaps(cells: tuple) -> list:
        """Two distinct readings per string, alternating, so that no poll hands
        the engine the reading object it evaluated last time (which it skips)."""
        return [
            sy.string(n, sy.reading(t0 + 200 + k, cells), index=i + 1)
            for k in range(2)
            for i, n in enumerate(names)
        ]

    ok, busy = snaps(healthy), snaps(in_band)

    def run(batch: list) -> Callable[[int], int]:
        def one(n: int) -> int:
            s = batch[n % (2 * STRINGS)]
            eng.on_string(sy.string(s.name, s.reading, index=s.index), plant)  # new snapshot
            return 1

        return one

    def floor(n: int) -> int:
        total = 0.0
        for c in healthy:
            v = c.voltage_v
            if v is not None:
                total += v
        return 1

    # the busy case first: its readings are in the band, so nothing changes state
    busy_per_s, _ = rate(run(busy))
    # back to healthy values would start clearing: build a plant with no alarms for the idle case
    eng2 = engine(tmp / "eval2.sqlite", "full")
    eng2.restore(plant)
    for s in ok:
        eng2.on_string(s, plant)
    eng = eng2
    idle_per_s, _ = rate(run(ok))
    floor_per_s, _ = rate(floor)
    assert len(eng2.active()) == 0
    return [
        ("bare loop over 120 cells (floor)", 1e6 / floor_per_s),
        ("on_string, 120 healthy cells", 1e6 / idle_per_s),
        ("on_string, 10 cells alarmed in band", 1e6 / busy_per_s),
    ]


def event_rates(tmp: Path, sync: str) -> tuple[float, float]:
    results = []
    for per_commit in (40, 1):
        path = tmp / f"rate-{sync}-{per_commit}.sqlite"
        eng = engine(path, sync, cell_voltage_high=NOW)
        plant = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
        eng.restore(plant)
        t0 = time.time()
        patterns = []
        for k in range(2):  # alternate: cells 1..per_commit high, then normal
            v = {c: 2.5 for c in range(1, per_commit + 1)} if k == 0 else {}
            patterns.append(sy.cells(CELLS, v=v))

        def flip(n: int, eng=eng, t0=t0, patterns=patterns, plant=plant, k=per_commit) -> int:
            s = sy.string("A", sy.reading(t0 + n, patterns[n % 2]))
            eng.on_string(s, plant)
            return k

        _, events_per_s = rate(flip)
        results.append(events_per_s)
        eng.close()
    return results[0], results[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        costs = eval_cost(tmp)
        full = event_rates(tmp, "full")
        normal = event_rates(tmp, "normal")
    ok = True
    print(f"{'evaluation per 120-cell string':<40}{'us':>10}{'x floor':>10}{'headroom':>10}")
    floor_us = costs[0][1]
    for name, us in costs:
        headroom = 1000.0 / us
        print(f"{name:<40}{us:>10.1f}{us / floor_us:>10.1f}{headroom:>9.0f}x")
    ok &= all(us <= EVAL_TARGET_US for _, us in costs)
    run_record.add(evaluation_us=dict(costs), events_per_s={"full": full, "normal": normal})
    print()
    print(f"{'events per second (engine + log)':<40}{'FULL':>10}{'NORMAL':>10}{'N/F':>10}")
    for i, name in enumerate(("burst, 40 events per commit", "single event per commit")):
        print(f"{name:<40}{full[i]:>10,.0f}{normal[i]:>10,.0f}{normal[i] / full[i]:>9.1f}x")
    ok &= full[0] >= BURST_TARGET and full[1] >= SINGLE_TARGET
    print()
    print(
        f"targets: evaluation <= {EVAL_TARGET_US:.0f} us/string; FULL bursts >= "
        f"{BURST_TARGET:,.0f} ev/s, single >= {SINGLE_TARGET:,.0f} ev/s: "
        f"{'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_alarms", main))
