"""Fault soak: >= 10,000 polls under injected faults, every served value
checked against the simulator's ground truth.

The gateway (in this process, GatewayHarness) polls BM-SM simulators over
real pseudo-terminals through the real RTU link and engine. The simulators
inject 5 % bad CRC, 5 % timeouts (no reply), 1 % garbage, 1 % replies
``LATE_S`` late (past the timeout: the guard window must drop them) and
0.5 % replies swapped for the slave's previous one, per request; slaves
vanish for a few seconds and come back, others answer every request late
for a while ("all late"), and cell counts change (auto-addressing), some in
the middle of a poll and back again, the added cells reading 0 until
measured. Every string has 16 cells, so every reply of a poll (six cell
arrays and the string block) has the same length: a reply taken for another
request is never refused for its length. Values are frozen except for a
schedule this script drives: every ``change_s`` each string's current is
set to the next value of a unique sequence (1.00 A, 1.01 A, ...), so a
served current names exactly which device state it came from, and the
schedule (when each value was set and replaced) is the ground truth beside
the simulator's truth log (every reply, with its fault, timed). A cell keeps
its voltage when the count changes, so each cell's truth is one value.

Clients no one here wrote read what the gateway serves the whole time, on
every protocol (scale/soak_readers.py): pymodbus (registers 4-10 of each
string unit: current and cell count, and cells 1, 16 and 18: status and
voltage; data only when GOOD, exception 0x0B otherwise), aiohttp on the
REST API (quality, current and every cell), net-snmp's snmpget (each
string's quality, current, cell count and cells 1, 16 and 18 in one GET:
GOOD when the quality column in the same answer is good) and rusty-bacnet
(one ReadPropertyMultiple of each string's current and those cells'
voltage objects: GOOD when reliability is no-fault-detected and the fault
flag clear). A recorder plugin sees every snapshot the engine publishes.

Checked: zero wrong values (a served current the device never held, a cell
voltage the cell does not hold, a cell count it never had); zero
fresh-marked stale values (served as GOOD although the device had replaced
it more than one poll window ago); a vanished or all-late slave's string
leaves GOOD within 2 polls; after it answers again, GOOD on the first clean
poll; no crash; memory flat: RSS grows less than ``FLAT_MB`` after the first
quarter (the process also holds the simulators and the clients, but the
soak keeps only the records it still judges and each simulator a bounded
log, so what keeps growing is the gateway's).

    python bench/soak.py --polls 10000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_record
from scale.procs import free_port, rss_mb, slope_per_hour
from scale.soak_readers import (
    Failures,
    bacnet_objects,
    bacnet_reader,
    modbus_reader,
    rest_reader,
    snmp_reader,
)
from scale.truth import CellCheck, Seen, TransitionCheck, Truth, ValueCheck

RATES = {"bad_crc": 0.05, "no_reply": 0.05, "garbage": 0.01, "late": 0.01, "swapped": 0.005}
#: the buses' response timeout, and how late a "late" reply is: past the
#: timeout, within the guard window after it (by default the timeout again)
TIMEOUT_S, LATE_S = 0.1, 0.15
#: what one failed attempt can cost the bus: the timeout, then the guard
#: window's silence (the timeout again), which a late reply starts over
ATTEMPT_S = LATE_S + TIMEOUT_S
#: cells per string, and the counts auto-addressing moves between
CELLS, COUNTS = 16, (14, 15, 16, 17, 18)
#: cells a count change adds read 0 this long (not measured yet)
UNMEASURED_S = 0.3
#: a vanish is judged this long after the slave came back: its string is
#: probed once a second (back-off at most 1 s) and a probe fails at the first
#: faulty transaction of its six (about half do), so two complete polls can
#: take several seconds; with 5 s, 11 of 123 vanishes had no verdict
SETTLE_S = 10.0
#: what the soak keeps of its own records (schedule, recorder): judging needs
#: the last few seconds only, so its memory is flat after the first minutes
HORIZON_S = 60.0
#: replies each simulator remembers: ~85 s at the soak's ~23 replies/s a bus
TRUTH_LOG_SIZE = 2_000
#: "memory flat": what RSS may grow after the first quarter of a run (least
#: squares over the rest of it); a 10,000-poll soak leaking 500 bytes a poll
#: crosses it. Checked by the benchmark, not the short test (resource targets
#: live in bench/)
FLAT_MB = 4.0
#: the protocols read and checked (the default: all of them)
PROTOCOLS = ("modbus", "rest", "snmp", "bacnet")
SNMP_COMMUNITY = "soak"
BACNET_DEVICE = 4711


class Recorder:
    """A plugin like any other: every published snapshot, timed."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    from btms_gateway.core.config_base import PluginSection
    from btms_gateway.core.hookspecs import hookimpl

    @hookimpl
    def register_config_sections(self, register: Any) -> None:
        register("soak_recorder", self.PluginSection)  # runtime hooks need a section

    @hookimpl
    def string_reading(self, string: Any) -> None:
        self.events.append((time.time(), string.name, string.quality.name))

    def prune(self, before: float) -> None:
        """Drop events older than ``before`` but each string's last one of them
        (its quality then): the soak judges only recent moments (memory flat)."""
        last: dict[str, tuple[float, str, str]] = {}
        recent = []
        for event in self.events:
            if event[0] < before:
                last[event[1]] = event
            else:
                recent.append(event)
        self.events = sorted(last.values()) + recent


async def soak(
    polls: int = 10_000,
    strings: int = 8,
    buses: int = 2,
    interval_s: float = 0.1,
    change_s: float = 0.3,
    vanish_every_s: float = 4.0,
    vanish_s: float = 2.0,
    late_every_s: float = 5.0,
    count_every_s: float = 1.5,
    seed: int = 7,
    max_s: float = 1800.0,
    log: Any = print,
    protocols: tuple[str, ...] = PROTOCOLS,
) -> dict[str, Any]:
    from btms_gateway.core.model import Quality
    from btms_gateway.kit.testing import GatewayHarness, plant_config
    from btms_gateway.plugins.bacnet.plugin import service
    from btms_gateway.protocols.bmsm.simulator.faults import Fault

    mb, web = free_port(), free_port()
    snmp, bacnet = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    served = {
        "modbus": ("modbus_tcp", {"port": mb}),
        "rest": ("web", {"port": web}),
        "snmp": ("snmp", {"port": snmp, "community": SNMP_COMMUNITY}),
        "bacnet": ("bacnet", {"address": f"127.0.0.1/8:{bacnet}", "device_instance":
                              BACNET_DEVICE, "cells_per_string": max(COUNTS)}),
    }  # fmt: skip
    cfg = plant_config(
        strings,
        2,
        poll_interval_s=interval_s,
        stale_after_s=2.0,
        offline_after_failures=3,
        plugins={"soak_recorder": {}} | dict(served[p] for p in protocols),
    )
    cfg["buses"] = [
        {
            "name": f"bus{b + 1}",
            "port": "/dev/null-placeholder",
            "baudrate": 115200,
            "timeout_s": TIMEOUT_S,
            "backoff_max_s": 1.0,
        }
        for b in range(buses)
    ]
    for i, s in enumerate(cfg["strings"]):
        s["bus"], s["slave_id"] = f"bus{i % buses + 1}", i // buses + 1
    rec = Recorder()
    truth, rng = Truth(), random.Random(seed)
    h = GatewayHarness(
        cfg,
        simulate=True,
        cells=CELLS,
        seed=seed,
        extra_plugins={"soak_recorder": rec},
        truth_log_size=TRUTH_LOG_SIZE,
    )
    names = [s["name"] for s in cfg["strings"]]
    index = {n: i for i, n in enumerate(names, start=1)}
    seen: list[Seen] = []
    per_bus = -(-strings // buses)
    # one poll window: the interval, a full bus cycle with every other string
    # failing a transaction for good (retries + 1 failed attempts each), the
    # string's own poll recovering from one more (a retry that works), and
    # the propagation to the servers
    window = interval_s + per_bus * (2 * ATTEMPT_S + 0.02) + ATTEMPT_S + 0.3
    cells = CellCheck({}, set(COUNTS))
    checker = ValueCheck(truth, window, cells)
    trans = TransitionCheck(limit_stale_s=2 * window, settle_s=SETTLE_S)

    def log_of(name: str) -> list[Any]:
        sim, slave = h.sim_for(name)
        return [r for r in sim.truth_log if r.slave == slave]

    rss: list[tuple[float, float]] = []
    k = 0
    async with h:
        await h.wait_quality(Quality.GOOD, timeout=30)
        for n in names:
            sim, slave = h.sim_for(n)
            before = time.time()
            sim.set_string(slave, current_a=1.0)
            truth.set(n, 1.0, before - 3600, time.time())  # held since start (frozen)
            # every cell a count can reach, once: a cell keeps its values after
            sim.set_cell_count(slave, max(COUNTS))
            cells.volts[n] = [c.voltage_v for c in sim.expected(slave).cells]
            sim.set_cell_count(slave, CELLS)
        await h.wait_quality(Quality.GOOD, timeout=30)
        await asyncio.sleep(2 * interval_s + 0.5)
        rates = {Fault(f): p for f, p in RATES.items()}
        for n in names:
            sim, slave = h.sim_for(n)
            sim.set_rates(slave, rates, late_s=LATE_S)
        stop = asyncio.Event()
        refused = Failures()
        start = {
            "modbus": lambda: modbus_reader(mb, index, seen, stop),
            "rest": lambda: rest_reader(web, names, seen, stop),
            "snmp": lambda: snmp_reader(snmp, SNMP_COMMUNITY, index, seen, stop, refused),
            "bacnet": lambda: bacnet_reader(
                f"127.0.0.1:{bacnet}", bacnet_objects(service(h.gateway), names), seen, stop,
                refused,
            ),
        }  # fmt: skip
        readers = [asyncio.create_task(start[p]()) for p in protocols]
        t0 = time.monotonic()
        next_vanish = t0 + vanish_every_s
        next_late = t0 + late_every_s / 2
        next_count = t0 + count_every_s
        gone: dict[str, float] = {}
        late: dict[str, float] = {}  # strings answering every request late, since
        counts = dict.fromkeys(names, CELLS)
        late_phases = count_changes = 0
        total_polls = lambda: sum(h.gateway.string_counters(n).polls for n in names)  # noqa: E731
        p0 = total_polls()
        while total_polls() - p0 < polls and time.monotonic() - t0 < max_s:
            k += 1
            for n in names:
                if n in gone or n in late:
                    continue
                sim, slave = h.sim_for(n)
                value = round(1.0 + k * 0.01, 2)
                before = time.time()
                sim.set_string(slave, current_a=value)
                truth.set(n, value, before, time.time())
            now = time.monotonic()
            if now >= next_vanish:
                n = rng.choice([x for x in names if x not in gone and x not in late])
                sim, slave = h.sim_for(n)
                gone[n] = time.time()
                sim.vanish(slave)
                next_vanish = now + vanish_every_s
            if now >= next_late:  # all late: every reply past the timeout for a while
                n = rng.choice([x for x in names if x not in gone and x not in late])
                sim, slave = h.sim_for(n)
                late[n] = time.time()
                sim.set_reply_delay(slave, LATE_S)
                late_phases += 1
                next_late = now + late_every_s
            if now >= next_count:  # auto-addressing, at a random read of a poll
                n = rng.choice(names)
                sim, slave = h.sim_for(n)
                new = rng.choice([c for c in COUNTS if c != counts[n]])
                sim.inject(slave, Fault.CELL_COUNT, after=rng.randrange(7), cells=new,
                           unmeasured_s=UNMEASURED_S)  # fmt: skip
                if rng.random() < 0.5:  # and back at the next read: the count moved mid-poll
                    sim.inject(slave, Fault.CELL_COUNT, cells=counts[n])
                else:
                    counts[n] = new
                count_changes += 1
                next_count = now + count_every_s
            for n, since in list(gone.items()):
                if time.time() - since >= vanish_s:
                    sim, slave = h.sim_for(n)
                    sim.restore(slave)
                    trans.vanished(n, since, time.time())
                    del gone[n]
            for n, since in list(late.items()):
                if time.time() - since >= vanish_s:
                    sim, slave = h.sim_for(n)
                    sim.set_reply_delay(slave, 0.0)
                    trans.vanished(n, since, time.time())
                    del late[n]
            for t in readers:
                if t.done():
                    t.result()  # a reader that died is a failure (gateway refused a client)
            if k % 10 == 0:
                checker.consume(seen)
                trans.judge(rec.events, log_of, time.time())
                truth.prune(time.time() - HORIZON_S)
                rec.prune(time.time() - HORIZON_S)
                rss.append((time.monotonic() - t0, rss_mb(os.getpid())))
            await asyncio.sleep(change_s)
        for n in list(gone):
            sim, slave = h.sim_for(n)
            sim.restore(slave)
        for n in list(late):
            sim, slave = h.sim_for(n)
            sim.set_reply_delay(slave, 0.0)
        stop.set()
        await asyncio.gather(*readers)
        checker.consume(seen)
        elapsed = time.monotonic() - t0
        done_polls = total_polls() - p0
        failed = sum(h.gateway.string_counters(n).polls_failed for n in names)
        failed_by: dict[str, int] = {}
        for n in names:
            for kind, c in h.gateway.string_counters(n).polls_failed_by.items():
                if c:
                    failed_by[kind.value] = failed_by.get(kind.value, 0) + c
        trans.judge(rec.events, log_of)
        truth_log_kept = min(len(log_of(n)) for n in names)
        faults = {}
        for sim in h.sims.values():
            for f, c in sim.responder.faults.items():
                faults[f.value] = faults.get(f.value, 0) + c
        cycle = max((b.last_cycle_s or 0.0) for b in h.gateway.bus_status())
    values = checker.result()
    return {
        "polls": done_polls,
        "polls_failed": failed,
        "polls_failed_by": failed_by,
        "late_phases": late_phases,
        "count_changes": count_changes,
        "elapsed_s": elapsed,
        "faults": faults,
        "values": values,
        "transitions": trans.result(),
        "window_s": window,
        "rss": rss,
        "last_cycle_s": cycle,
        "truth_log_window": truth_log_kept,
        "protocols": protocols,
        "reader_failures": refused.count,
        "reader_failure_last": refused.last,
    }


def failures(r: dict[str, Any]) -> list[str]:
    v, t = r["values"], r["transitions"]
    out = []
    if v["wrong"]:
        out.append(f"{len(v['wrong'])} wrong values, first {v['wrong'][:3]}")
    c = v["cells"]
    if c["wrong"]:
        out.append(f"{len(c['wrong'])} wrong cell voltages, first {c['wrong'][:3]}")
    if c["wrong_counts"]:
        out.append(f"{len(c['wrong_counts'])} wrong cell counts, first {c['wrong_counts'][:3]}")
    if v["stale_fresh"]:
        out.append(
            f"{len(v['stale_fresh'])} stale values served as GOOD, first {v['stale_fresh'][:3]}"
        )
    if t["slow_stale"]:
        out.append(
            f"{len(t['slow_stale'])} vanishes or all-late spells not marked within 2 polls: "
            f"{t['slow_stale'][:3]}"
        )
    if r["reader_failures"]:
        out.append(f"requests that failed: {r['reader_failures']}, last {r['reader_failure_last']}")
    if t["slow_good"]:
        out.append(
            f"{len(t['slow_good'])} recoveries not GOOD on the first clean poll: "
            f"{t['slow_good'][:3]}"
        )
    return out


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # quality transitions are expected by the thousand
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--polls", type=int, default=10_000)
    ap.add_argument("--max-minutes", type=float, default=30.0)
    ap.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="the protocols read and checked, comma-separated [default: %(default)s]",
    )
    a = ap.parse_args()
    protocols = tuple(p for p in a.protocols.split(",") if p)
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        ap.error(f"unknown protocols {sorted(unknown)}: choose from {', '.join(PROTOCOLS)}")
    r = asyncio.run(soak(a.polls, max_s=a.max_minutes * 60, protocols=protocols))
    report(r)
    bad = failures(r)
    if r["polls"] < a.polls:
        bad.append(f"only {r['polls']} polls in {a.max_minutes} min")
    grown = rss_growth_mb(r["rss"])
    if grown >= FLAT_MB:
        bad.append(f"RSS grew {grown:.1f} MB after the first quarter")
    run_record.add({k: v for k, v in r.items() if k != "rss"}, rss_growth_mb=grown, failed=bad)
    for line in bad:
        print("FAILED:", line)
    return 1 if bad else 0


def rss_growth_mb(rss: list[tuple[float, float]]) -> float:
    """Growth over the run after its first quarter (warm-up: caches, pools and
    the simulators' bounded logs filling), from the least-squares slope."""
    rest = rss[len(rss) // 4 :]
    if len(rest) < 3:
        return 0.0
    return slope_per_hour(rest) * (rest[-1][0] - rest[0][0]) / 3600


NAMES = {"modbus": "Modbus", "rest": "REST", "snmp": "SNMP", "bacnet": "BACnet"}


def report(r: dict[str, Any]) -> None:
    v, t = r["values"], r["transitions"]
    rss = r["rss"]
    growth = slope_per_hour(rss[len(rss) // 4 :])
    print(
        f"\nFault soak: {r['polls']} polls in {r['elapsed_s']:.0f} s "
        f"({r['polls_failed']} failed polls: {r['polls_failed_by']}), faults injected "
        f"{r['faults']}, {r['late_phases']} all-late spells, {r['count_changes']} cell count "
        "changes"
    )
    print(f"{'figure':<52}{'measured':>12}{'target':>10}")
    served = " + ".join(NAMES[p] for p in r["protocols"])
    rows = [
        (f"values served ({served})", v["served"], ""),
        ("  of which marked GOOD", v["good"], ""),
        *((f"    {NAMES[p]}", v["good_by"].get(p, 0), "") for p in r["protocols"]),
        ("wrong values (never held by the device)", len(v["wrong"]), 0),
        ("cell voltages served as GOOD", v["cells"]["checked"], ""),
        *(
            (f"    {NAMES[p]}", v["cells"]["checked_by"].get(p, 0), "")
            for p in r["protocols"]
            if p != "rest"
        ),
        ("  wrong cell voltages", len(v["cells"]["wrong"]), 0),
        ("  wrong cell counts", len(v["cells"]["wrong_counts"]), 0),
        ("stale values served as GOOD", len(v["stale_fresh"]), 0),
        (
            f"worst GOOD value age past replacement (s, window {r['window_s']:.2f})",
            round(v["worst_late_s"], 3),
            "",
        ),
        ("slaves vanished or all late, and came back", t["vanishes"], ""),
        ("  not marked non-GOOD within 2 polls", len(t["slow_stale"]), 0),
        ("  recoveries judged (polled twice since)", t["recoveries"], ""),
        ("  not GOOD on the first clean poll", len(t["slow_good"]), 0),
        ("requests that failed (SNMP, BACnet)", sum(r["reader_failures"].values()), 0),
        ("process RSS at end (MB)", round(rss[-1][1], 1) if rss else 0, ""),
        ("RSS growth after the first quarter (MB)", round(rss_growth_mb(rss), 2), f"< {FLAT_MB}"),
        ("  the same per hour (MB/hour)", round(growth, 1), ""),
    ]
    for name, value, target in rows:
        print(f"{name:<52}{value!s:>12}{target!s:>10}")


if __name__ == "__main__":
    sys.exit(run_record.recorded("soak", main))
