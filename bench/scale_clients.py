"""What each client of bench/scale.py costs the gateway, one client at a time.

bench/scale.py measures the gateway with every client at once, against the
target of 10 % of a core. When that target is missed, this says where the
clients' part goes: the same plant (32 strings x 120 cells, every plugin on),
then each client alone for ``--seconds``, the gateway's CPU split into its
event loop (every northbound server) and the rest (the bus threads). Polling
alone is measured first and last: on a shared VM the difference between the
two is the noise every other row carries.

    python bench/scale_clients.py --seconds 40

Prints a table; the ``+loop`` column is a client's cost on the event loop
above the mean of the two polling-only rows. No target: exit 0 unless the
gateway died or a client saw errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_record
from scale import clients, observers
from scale.plant import Ports, bus_spec, gateway_config, strings_of
from scale.procs import CpuSplit, GatewayProcess, SimRunner
from scale.scene import bacnet_targets, probes_of, wait_all_good

Make = Callable[[clients.Stats, observers.Observed, asyncio.Event], list[Any]]


def phases(
    ports: Ports,
    plant: list[tuple[str, str, int]],
    probes: list[tuple[str, str, int]],
    oids: Any,
    names: Any,
    runner: SimRunner,
) -> list[tuple[str, Make]]:
    probe_names = [p[0] for p in probes]
    index = {n: i for i, (n, _b, _s) in enumerate(plant, start=1)}
    targets = {n: index[n] for n in probe_names}
    every = list(range(1, len(plant) + 1))

    def probe(watch: Any, proto: str) -> Make:
        return lambda st, ob, stop: [
            watch(st, ob, stop),
            observers.age_probe(runner, probes, ob, st, stop, (proto,)),
        ]

    return [
        ("polling only", lambda st, ob, stop: []),
        (
            "Modbus scan every 10 s",
            lambda st, ob, stop: [clients.modbus_sweeper(ports.modbus, every, 10.0, st, stop)],
        ),
        (
            "snmpbulkwalk every 15 s",
            lambda st, ob, stop: [clients.snmp_walker(ports.snmp, 15.0, st, stop)],
        ),
        ("dashboard stream", lambda st, ob, stop: [clients.sse_reader(ports.web, st, stop)]),
        (
            "BACnet COV",
            lambda st, ob, stop: [
                observers.bacnet_cov(f"127.0.0.1:{ports.bacnet}", oids, names, ob, st, stop)
            ],
        ),
        (
            "age probe, Modbus",
            probe(
                lambda st, ob, stop: observers.watch_modbus(ports.modbus, targets, ob, st, stop),
                "modbus",
            ),
        ),
        (
            "age probe, SNMP",
            probe(
                lambda st, ob, stop: observers.watch_snmp(ports.snmp, targets, ob, st, stop), "snmp"
            ),
        ),
        (
            "age probe, REST",
            probe(
                lambda st, ob, stop: observers.watch_rest(ports.web, probe_names, ob, st, stop),
                "rest",
            ),
        ),
        ("polling only, again", lambda st, ob, stop: []),
    ]


async def run(seconds: float, strings: int, cells: int) -> list[dict[str, Any]]:
    spec = bus_spec(strings, cells, 115200, 1.0, 2, headroom=0.5)
    plant = strings_of(spec)
    runner = SimRunner(spec)
    ports = Ports.free()
    workdir = tempfile.mkdtemp(prefix="btms-scale-clients-")
    gw = GatewayProcess(gateway_config(spec, runner.where, ports, workdir, 1.0), workdir)
    rows = []
    try:
        gw.wait_http(ports.web)
        await wait_all_good(ports.web, strings)
        probes = probes_of(plant, spec)
        oids, names = bacnet_targets(
            gw.path, [p[0] for p in probes], [p[0] for p in plant[:2]], strings
        )
        await asyncio.sleep(10)  # first cycles and caches settle
        for label, make in phases(ports, plant, probes, oids, names, runner):
            st, ob = clients.Stats(), observers.Observed()
            observing = observers.ObserverThread(
                lambda stop, make=make, st=st, ob=ob: make(st, ob, stop) or [stop.wait()]
            )
            await asyncio.sleep(4)  # connections and subscriptions made
            split = CpuSplit(gw.pid)
            await asyncio.sleep(seconds)
            cpu = split.fractions()
            await asyncio.to_thread(observing.stop, 15)
            observing.raise_if_failed()
            rows.append({"label": label, **cpu, "ops": dict(st.ops), "errors": dict(st.errors)})
            print(f"  measured: {label}", flush=True)
            if not gw.alive():
                raise RuntimeError("the gateway died")
    finally:
        gw.stop()
        runner.close()
    return rows


def report(rows: list[dict[str, Any]], seconds: float) -> bool:
    idle = [r for r in rows if r["label"].startswith("polling only")]
    base = sum(r["loop"] for r in idle) / len(idle)
    print(f"\nEach client alone, {seconds:.0f} s each (fractions of one core)")
    print(f"{'client':<26}{'total':>8}{'loop':>8}{'+loop':>8}{'other':>8}{'kernel':>8}  done")
    for r in rows:
        extra = "" if r in idle else f"{r['loop'] - base:>8.4f}"
        done = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
        print(
            f"{r['label']:<26}{r['total']:>8.4f}{r['loop']:>8.4f}{extra:>8}"
            f"{r['other']:>8.4f}{r['kernel']:>8.4f}  {done}"
        )
    noise = abs(idle[0]["total"] - idle[-1]["total"])
    print(
        f"\npolling only, first and last: {idle[0]['total']:.4f} / {idle[-1]['total']:.4f}"
        f" (the noise of every row: {noise:.4f})"
    )
    errors = {r["label"]: r["errors"] for r in rows if r["errors"]}
    if errors:
        print(f"client errors: {errors}")
    return not errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="measured per client")
    ap.add_argument("--strings", type=int, default=32)
    ap.add_argument("--cells", type=int, default=120)
    a = ap.parse_args()
    rows = asyncio.run(run(a.seconds, a.strings, a.cells))
    run_record.add(rows=rows)
    return 0 if report(rows, a.seconds) else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("scale_clients", main))
