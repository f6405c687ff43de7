"""How cheap is publishing? Build 120-cell readings and publish them into a
32-string plant, and compare with what the gateway needs at full scale.

Need at full scale: 32 strings polled once per second = 32 publishes/s. The
table prints the measured rate and its ratio to that need; target: >= 100x
headroom (publishing must be a rounding error next to the wire).

    python bench/bench_model.py
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import run_record
from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.core.store import SnapshotStore
from btms_gateway.kit.testing import make_reading
from btms_gateway.protocols.bmsm.decode import decode_reading
from btms_gateway.protocols.bmsm.registers import BLOCK_COUNT, BLOCK_START, CELL_ARRAYS

STRINGS, CELLS, NEED_PER_S, TARGET_HEADROOM = 32, 120, 32.0, 100.0


def plant() -> SnapshotStore:
    strings = [
        StringSnapshot(
            f"S{i}",
            i,
            f"UPS{(i - 1) // 4 + 1}",
            (i - 1) // 4 + 1,
            i,
            "bus1",
            Quality.OFFLINE,
            None,
            0.0,
        )
        for i in range(1, STRINGS + 1)
    ]
    return SnapshotStore(strings, [(f"UPS{u}", u) for u in range(1, STRINGS // 4 + 1)])


def rate(fn, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - start)


def main() -> int:
    store = plant()
    names = list(store.snapshot.strings)
    readings = [make_reading(CELLS, current_a=float(i)) for i in range(STRINGS)]

    def publish(n: int) -> None:
        name = names[n % STRINGS]
        store.publish(
            StringSnapshot(
                name,
                n % STRINGS + 1,
                store.string(name).ups,
                1,
                1,
                "bus1",
                Quality.GOOD,
                readings[n % STRINGS],
                0.0,
            )
        )

    from btms_gateway.protocols.bmsm.simulator import StringModel

    image = StringModel.create(1, CELLS, seed=1).image()
    block = [image[a] for a in range(BLOCK_START, BLOCK_START + BLOCK_COUNT)]
    arrays = {a.base: [image[a.base + i] for i in range(CELLS)] for a in CELL_ARRAYS}

    def build_reading(n: int) -> None:
        decode_reading(block, arrays, read_at=float(n))

    def full_cycle(n: int) -> None:  # build + publish every string once
        for i in range(STRINGS):
            publish(i)

    tracemalloc.start()
    decoded = [decode_reading(block, arrays, read_at=0.0) for _ in range(STRINGS)]
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del decoded
    rows = [
        ("publish one string (120 cells)", rate(publish), NEED_PER_S),
        ("decode one 120-cell string", rate(build_reading), NEED_PER_S),
        ("publish all 32 strings", rate(full_cycle), 1.0),
    ]
    print(f"{'operation':<34}{'per second':>14}{'needed':>10}{'headroom':>12}")
    ok = True
    for name, measured, need in rows:
        headroom = measured / need
        ok &= headroom >= TARGET_HEADROOM
        run_record.add({name: {"per_s": measured, "needed_per_s": need}})
        print(f"{name:<34}{measured:>14,.0f}{need:>10,.0f}{headroom:>11,.0f}x")
    run_record.add(decoded_plant_mb=size / 1e6)
    print(f"memory of one decoded plant (32 x {CELLS} cells): {size / 1e6:.1f} MB")
    print(f"target: headroom >= {TARGET_HEADROOM:.0f}x: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_model", main))
