"""Acquisition: how close does a 120-cell poll get to the wire-time limit?

Polls one 120-cell BM-SM string through the paced simulator (a background
thread releasing reply bytes at the line's wire speed) over a real
pseudo-terminal with pyserial, through the real RTU link and BM-SM poller, at
9600, 19200 and 115200 baud 8N1. The theoretical limit of one poll is
sum over its transactions of (request + reply bytes) x bits per character /
baud, plus two 3.5-character gaps per transaction (after the request, after
the reply; 1.75 ms each above 19200 baud). Target: median measured / limit
<= 1.10 at every rate; exits 1 when missed.

Beside it, the polling thread's own CPU per transaction (``time.thread_time``
around the polls: link, framing, poller and decoding, not the simulator's
thread), the figure a change to the fast path is judged by.

    python bench/bench_poll.py [--polls N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import run_record
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.regmap import DEFAULT_MAP
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.rtu import framing, open_link

CELLS, TARGET, BAUDS = 120, 1.10, (9600, 19200, 115200)


def wire_limit_s(baud: int, cells: int = CELLS, bits: int = 10) -> float:
    char = bits / baud
    gap = 0.00175 if baud > 19200 else 3.5 * char
    plan = DEFAULT_MAP.full_plan(cells)
    nbytes = sum(framing.REQUEST_LENGTH + framing.reply_length(r.count) for r in plan)
    return nbytes * char + 2 * gap * len(plan)


def measure(baud: int, polls: int) -> tuple[list[float], float]:
    """Each poll's duration, and the polling thread's CPU seconds per transaction."""
    with Simulator([1], cells=CELLS, baud=baud, seed=1, frozen=True) as sim:
        link = open_link(sim.bus_config(timeout_s=0.5, retries=0))
        link.open()
        poller = BmsmPoller(link, 1)
        try:
            poller.poll()  # warm-up: plan cache, first open
            times = []
            cpu = time.thread_time()
            for _ in range(polls):
                t = time.perf_counter()
                reading = poller.poll()
                times.append(time.perf_counter() - t)
                assert len(reading.cells) == CELLS
            cpu = time.thread_time() - cpu
        finally:
            link.close()
    return times, cpu / (polls * len(DEFAULT_MAP.full_plan(CELLS)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", type=int, default=5)
    args = ap.parse_args()
    transactions = len(DEFAULT_MAP.full_plan(CELLS))
    print(f"120-cell poll, {transactions} transactions, 8N1, paced simulator over a pty")
    print(f"{'baud':>7} {'wire limit s':>13} {'median s':>10} {'worst s':>9} "
          f"{'median/limit':>13} {'worst/limit':>12} {'CPU us/transaction':>19}")  # fmt: skip
    ok = True
    for baud in BAUDS:
        times, cpu = measure(baud, args.polls)
        limit, med, worst = wire_limit_s(baud), statistics.median(times), max(times)
        ok &= med / limit <= TARGET
        run_record.add({f"{baud} baud": {"wire_limit_s": limit, "median_s": med, "worst_s": worst,
                                         "cpu_us_per_transaction": cpu * 1e6}})  # fmt: skip
        print(f"{baud:>7} {limit:>13.4f} {med:>10.4f} {worst:>9.4f} "
              f"{med / limit:>13.3f} {worst / limit:>12.3f} {cpu * 1e6:>19.0f}")  # fmt: skip
    print(f"target: median/limit <= {TARGET:.2f} at every rate: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_poll", main))
