"""BM-SM simulators in a process of their own, driven over stdin/stdout.

Run ``python bench/scale/simrunner.py SPEC.json``: SPEC is a list of buses
``{"name", "transport": "pty"|"tcp", "baud", "slaves": {id: cells}, "seed",
"rates": {fault: p}, "frozen"}``. The runner prints one JSON line mapping each
bus to where a gateway connects, then answers one JSON command per line:

* ``{"op": "set_string", "bus", "slave", "values"}`` -> ``{"t": when applied}``
* ``{"op": "set_cells", "bus", "slave", "cells": [i...], "values"}`` -> ``{"t"}``
* ``{"op": "first_data_after", "bus", "slave", "t", "reg"?}`` -> ``{"at", "prev"}``:
  when the first reply after t carrying register reg (default 2, the string
  current) was served, and when the poll before that one ended (from the truth log)
* ``{"op": "last_reply", "bus", "slave"}`` -> ``{"at"}``: when the slave last
  served data (None before its first poll)
* ``{"op": "vanish"|"restore", "bus", "slave", "seconds"?}``
* ``{"op": "stats"}`` -> requests and faults per bus

It exits when stdin closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from typing import Any


def start(spec: list[dict[str, Any]]) -> dict[str, Any]:
    from btms_gateway.protocols.bmsm.simulator import Simulator
    from btms_gateway.protocols.bmsm.simulator.faults import Fault

    sims: dict[str, Any] = {}
    for bus in spec:
        slaves = {int(k): int(v) for k, v in bus["slaves"].items()}
        link = None
        if bus["transport"] == "pty":
            link = f"{tempfile.mkdtemp(prefix='btms-scale-')}/{bus['name']}"
        sims[bus["name"]] = Simulator(
            list(slaves),
            slaves,
            baud=bus["baud"],
            seed=bus.get("seed", 1),
            transport=bus["transport"],
            link=link,
            rates={Fault(k): v for k, v in bus.get("rates", {}).items()},
            frozen=bus.get("frozen", False),
            log_size=bus.get("log_size", 20_000),
        ).start()
    return sims


def where(sims: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, sim in sims.items():
        if sim.transport == "tcp":
            host, port = sim.tcp_address
            out[name] = {"transport": "rtu-over-tcp", "host": host, "tcp_port": port}
        else:
            out[name] = {"port": sim.port}
    return out


def first_data_after(
    sim: Any, slave: int, t: float, reg: int, gap_s: float = 0.2
) -> dict[str, float | None]:
    """When the first reply after ``t`` carrying register ``reg`` was served
    (``at``), and when the poll before the one it belongs to ended (``prev``:
    that poll's last reply with data, the moment the gateway stamps as
    read_at). The replies of one poll follow each other within ``gap_s``
    (a reply's wire time and a turnaround); one slave's polls are an interval
    apart. Whatever order a poll reads its ranges in, ``prev`` is where the
    data served until the change came from."""
    records = [r for r in sim.truth_log if r.slave == slave and r.words is not None]
    for i, rec in enumerate(records):
        if rec.at >= t and rec.address <= reg < rec.address + rec.count:
            first = i  # the first reply of the poll that carried the change
            while first > 0 and records[first].at - records[first - 1].at < gap_s:
                first -= 1
            return {"at": rec.at, "prev": records[first - 1].at if first > 0 else None}
    return {"at": None, "prev": records[-1].at if records else None}


def handle(sims: dict[str, Any], cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "stats":
        return {
            name: {
                "requests": s.responder.requests,
                "faults": {f.value: n for f, n in s.responder.faults.items() if n},
            }
            for name, s in sims.items()
        }
    sim, slave = sims[cmd["bus"]], int(cmd["slave"])
    if op == "set_string":
        sim.set_string(slave, **cmd["values"])
    elif op == "set_cells":
        for i in cmd["cells"]:
            sim.set_cell(slave, i, **cmd["values"])
    elif op == "first_data_after":
        return first_data_after(sim, slave, cmd["t"], cmd.get("reg", 2))
    elif op == "last_reply":
        log = sim.truth_log
        at = next((r.at for r in reversed(log) if r.slave == slave and r.words is not None), None)
        return {"at": at}
    elif op == "vanish":
        sim.vanish(slave, cmd.get("seconds"))
    elif op == "restore":
        sim.restore(slave)
    else:
        return {"error": f"unknown op {op!r}"}
    return {"t": time.time()}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    # Devices have no garbage collector and no interpreter lock: keep the rig's
    # own pauses out of the timing it serves. A full collection walked every
    # truth record (200,000 and more, none in a cycle) and stopped all simulated
    # buses for 50 ms; eleven bus threads waited up to 5 ms for each other.
    gc.disable()
    sys.setswitchinterval(0.001)
    sims = start(spec)
    try:
        print(json.dumps(where(sims)), flush=True)
        for line in sys.stdin:
            if line.strip():
                try:
                    reply = handle(sims, json.loads(line))
                except Exception as exc:  # a bad command must not kill the simulators
                    reply = {"error": repr(exc)}
                print(json.dumps(reply), flush=True)
    finally:
        for sim in sims.values():
            sim.stop()


if __name__ == "__main__":
    main()
