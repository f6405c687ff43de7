"""A history writer to kill -9 (run by test_history_kill9.py; holds no tests).

Writes readings of one string with simulated timestamps (T0 + i seconds) at
about ``rate`` a second in real time and prints ``i monotonic`` once each is
handed to the writer, so the parent knows what was written when."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from btms_gateway.core.history import HistorySection, HistoryService
from history_support import T0, reading_at


def main() -> None:
    data_dir, first, rate = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    svc = HistoryService(HistorySection(commit_interval_s=0.5), data_dir).start()
    rng = random.Random(first)
    i = first
    while True:
        svc.write("S1", reading_at(T0 + i, rng, cells=120, current_a=0.8))
        print(i, time.monotonic(), flush=True)
        i += 1
        time.sleep(1 / rate)


if __name__ == "__main__":
    main()
