"""MQTT at full scale, side by side in one run (docs/mqtt.md).

1. CPU and bytes: the full-scale plant (32 strings x 120 cells polled every
   second, simulators in a child process, ``btms-gateway run`` in another)
   with the web plugin only ("off") and with MQTT Sparkplug by exception
   ("on"), both at the same time, each with simulators of its own, so the
   two share whatever else the machine is doing; ``--rounds`` such rounds.
   Then once all four side by side: off, Sparkplug by exception, Sparkplug
   reporting every value, the JSON mode: gateway CPU (fraction of a core,
   /proc) and what reached a subscriber of the local Mosquitto (messages/s,
   bytes/s). Target: Sparkplug adds at most 0.015 of a core (the median of
   the rounds; each round is printed).
2. A broker outage (``--outage-minutes``, 10 for the issue's figure) at
   full scale with alarm events made during it: events lost (event log seqs
   against what the host received), readings lost within the bound (each
   buffered record's string and time against the historical messages),
   order, replay time after the broker's return (target 2 min), and the
   age of live data at a subscribing host while the backlog replays
   (target 2 s; receipt time minus the poll time of the newest value).
3. A fleet: the plugin's own session and encoder code (MqttSession) run as
   ``--gateways`` gateways of 32 x 120 in ``--fleet-procs`` processes, fed
   simulator readings spread over each second as a gateway's buses deliver
   them, against one local Mosquitto: messages/s, broker CPU, end-to-end
   latency to a subscribing host (p50/p99), the generator's own CPU and the
   readings it fed against those due (so it shows whether it kept up), and
   the per-gateway figures a broker cluster must carry for 1,000 sites.

Every run writes its figures and this output to bench/results/mqtt-<time>
(.json and .txt) with the machine it ran on.

    python bench/bench_mqtt.py                        # everything, ~15 min
    python bench/bench_mqtt.py --skip fleet --skip outage --rounds 1 --seconds 20
    python bench/bench_mqtt.py --skip cpu --skip fleet --outage-minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paho.mqtt.client as mqtt
from btms_gateway.core.model import Quality, StringReading, StringSnapshot
from btms_gateway.plugins.mqtt.sparkplug import sparkplug_b_pb2 as pb
from conftest import wait_for
from mqtt_peers import OBSERVER, OBSERVER_PASSWORD, Mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from scale.plant import Ports, bus_spec, gateway_config
from scale.procs import GatewayProcess, SimRunner, StealMonitor, cpu_seconds
from scale.scene import wait_all_good

TARGETS = {"cpu_added": 0.015, "replay_s": 120.0, "live_age_s": 2.0}
RESULTS = Path(__file__).resolve().parent / "results"
GROUP = "btms"  # the default group_id and JSON topic prefix
ALARMS = "Alarms"


# -- a subscribing host ---------------------------------------------------------------------
@dataclass
class Seen:
    """What a Watcher saw (under its lock)."""

    messages: int = 0
    bytes: int = 0
    #: (received, age s) of live DDATA of a string: receipt - poll time of its newest value
    live: list[tuple[float, float]] = field(default_factory=list)
    #: device -> poll times (ms) of its historical DDATA, in arrival order
    historical: dict[str, list[int]] = field(default_factory=dict)
    event_seqs: list[int] = field(default_factory=list)
    births: list[float] = field(default_factory=list)  # NBIRTH receipts
    connects: list[float] = field(default_factory=list)  # this subscriber's (re)connections


class Watcher:
    """A subscriber on the broker's plain listener (a session the broker keeps
    across its restart, reconnecting within 0.5 s): counts what arrives and,
    with ``decode``, times Sparkplug data and keeps what a loss check needs."""

    def __init__(self, broker: Mosquitto, topics: list[str], decode: bool = False) -> None:
        self.decode = decode
        self.lock = threading.Lock()
        self.seen = Seen()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"w{time.time_ns()}",
                             clean_session=False)  # fmt: skip
        self.c.username_pw_set(OBSERVER, OBSERVER_PASSWORD)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self._topics = topics
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        wait_for(lambda: self.seen.connects, 10, "the subscriber to connect")

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe([(t, 1) for t in self._topics])
        with self.lock:
            self.seen.connects.append(time.time())

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        now = time.time()
        with self.lock:
            self.seen.messages += 1
            self.seen.bytes += len(msg.payload) + len(msg.topic)
        if not self.decode:
            return
        kind = msg.topic.split("/")[2]
        if kind == "NBIRTH":
            with self.lock:
                self.seen.births.append(now)
        if kind != "DDATA":
            return
        p = pb.Payload.FromString(msg.payload)
        device = msg.topic.rsplit("/", 1)[1]
        if device == ALARMS:
            with self.lock:
                self.seen.event_seqs.extend(m.long_value for m in p.metrics if m.alias == 64)
            return
        # the poll time: the newest value's (a Quality metric carries its change's time)
        stamps = [m.timestamp for m in p.metrics if m.alias & 0xFFF] or [0]
        with self.lock:
            if p.metrics and p.metrics[0].is_historical:
                self.seen.historical.setdefault(device, []).append(max(stamps))
            else:
                self.seen.live.append((now, now - max(stamps) / 1000))

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.seen.messages, self.seen.bytes

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def mqtt_section(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return broker.plugin_section(reconnect_min_s=0.5, reconnect_max_s=2.0, **extra)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def loadavg() -> float:
    return os.getloadavg()[0]


# -- 1. CPU and bytes ----------------------------------------------------------------------
#: variant -> its [plugins.mqtt] (None: MQTT off), node id and the topics that are its own
VARIANTS: dict[str, tuple[dict[str, Any] | None, str]] = {
    "off": (None, ""),
    "sparkplug by exception": ({"mode": ["sparkplug"]}, "exc"),
    "sparkplug full reports": ({"mode": ["sparkplug"], "report_by_exception": False}, "full"),
    "json by exception": ({"mode": ["json"]}, "json"),
}
ON = "sparkplug by exception"


@dataclass
class Running:
    """One variant's gateway, its simulators and its subscriber."""

    runner: SimRunner
    gw: GatewayProcess
    watcher: Watcher | None
    web: int

    def stop(self) -> None:
        self.gw.stop()
        self.runner.close()
        if self.watcher is not None:
            self.watcher.close()


def start_variant(name: str, args: argparse.Namespace, broker: Mosquitto) -> Running:
    spec = bus_spec(args.strings, args.cells, 115200, 1.0, 2, headroom=0.5)
    runner = SimRunner(spec)
    mq, node = VARIANTS[name]
    ports = Ports.free()
    workdir = tempfile.mkdtemp(prefix="btms-bench-mqtt-")
    extra = {"mqtt": mqtt_section(broker, node_id=node, **mq)} if mq else {}
    config = gateway_config(spec, runner.where, ports, workdir, 1.0, plugins=("web",), extra=extra)
    topics = [f"spBv1.0/{GROUP}/+/{node}/#", f"{GROUP}/{node}/#"]
    watcher = Watcher(broker, topics) if mq else None
    return Running(runner, GatewayProcess(config, workdir), watcher, ports.web)


def side_by_side(
    names: list[str], args: argparse.Namespace, broker: Mosquitto
) -> dict[str, dict[str, float]]:
    """The variants' gateways at the same time, measured over the same ``args.seconds``."""
    running: dict[str, Running] = {}
    steal = StealMonitor().start()
    try:
        for name in names:
            running[name] = start_variant(name, args, broker)
        for r in running.values():
            r.gw.wait_http(r.web)
            asyncio.run(wait_all_good(r.web, args.strings))
        time.sleep(args.warmup)
        load0 = loadavg()
        before = {n: (cpu_seconds(r.gw.pid), r.watcher.snapshot() if r.watcher else (0, 0))
                  for n, r in running.items()}  # fmt: skip
        t0, wall0 = time.monotonic(), time.time()
        time.sleep(args.seconds)
        span = time.monotonic() - t0
        out = {}
        for n, r in running.items():
            (c0, (m0, b0)), c1 = before[n], cpu_seconds(r.gw.pid)
            m1, b1 = r.watcher.snapshot() if r.watcher else (0, 0)
            out[n] = {"cpu": (c1 - c0) / span, "msgs_s": (m1 - m0) / span,
                      "bytes_s": (b1 - b0) / span}  # fmt: skip
        stolen = steal.stolen_s(wall0, wall0 + span) / ((os.cpu_count() or 1) * span)
        out["machine"] = {"load1": (load0 + loadavg()) / 2, "steal_share": stolen}
    finally:
        steal.stop()
        for r in running.values():
            r.stop()
    return out


def full_scale(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    rounds = []
    for k in range(args.rounds):
        r = side_by_side(["off", ON], args, broker)
        added = r[ON]["cpu"] - r["off"]["cpu"]
        rounds.append({"off": r["off"]["cpu"], "on": r[ON]["cpu"], "added": added,
                       **r["machine"]})  # fmt: skip
        log(f"  round {k + 1}: off {r['off']['cpu']:.4f} core, on {r[ON]['cpu']:.4f} core, "
            f"added {added:+.4f}  (load {r['machine']['load1']:.1f}, "
            f"steal {100 * r['machine']['steal_share']:.1f} %)")  # fmt: skip
    added = [r["added"] for r in rounds]
    log(
        f"  Sparkplug adds {statistics.median(added):+.4f} of a core (median of {len(added)}; "
        f"spread {min(added):+.4f} .. {max(added):+.4f}; target <= {TARGETS['cpu_added']})"
    )
    modes = side_by_side(list(VARIANTS), args, broker)
    log(f"  all four side by side ({args.seconds:.0f} s, load {modes['machine']['load1']:.1f}):")
    for name in VARIANTS:
        m = modes[name]
        log(
            f"    {name:<24} cpu {m['cpu']:.4f} core  {m['msgs_s']:7.1f} msg/s  "
            f"{m['bytes_s'] / 1024:8.1f} KiB/s"
        )
    return {"rounds": rounds, "added_median": statistics.median(added), "modes": modes}


# -- 2. a broker outage -------------------------------------------------------------------------
def outage(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    spec = bus_spec(args.strings, args.cells, 115200, 1.0, 2, headroom=0.5)
    runner = SimRunner(spec)
    ports = Ports.free()
    workdir = Path(tempfile.mkdtemp(prefix="btms-bench-mqtt-outage-"))
    extra = {"mqtt": mqtt_section(broker, node_id="outage", mode=["sparkplug"])}
    config = gateway_config(spec, runner.where, ports, str(workdir), 1.0, plugins=("web",),
                            extra=extra)  # fmt: skip
    config["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    db = workdir / "mqtt" / "buffer.sqlite"
    watcher = Watcher(broker, [f"spBv1.0/{GROUP}/+/outage/#"], decode=True)
    gw = GatewayProcess(config, str(workdir))
    steal = StealMonitor().start()
    try:
        gw.wait_http(ports.web)
        asyncio.run(wait_all_good(ports.web, args.strings))
        time.sleep(args.warmup)
        t_steady = time.time()
        time.sleep(10)  # live data age with nothing to replay, for comparison
        broker.wait_saved()  # the subscriber's session survives the kill
        broker.kill()
        t_kill = time.time()
        flip = False
        while time.time() - t_kill < args.outage_minutes * 60:
            flip = not flip  # a burst of alarm events: cells over the limit and back
            runner.call(op="set_cells", bus="b1", slave=1, cells=list(range(1, 11)),
                        values={"voltage_v": 2.5 if flip else 2.25})  # fmt: skip
            time.sleep(min(5.0, args.outage_minutes * 60 / 4))
        buffered = read_buffer(db)
        t_back = time.time()
        broker.start()
        wait_for(lambda: read_buffer(db)["total"] == 0, 600, "the replay to empty the buffer")
        t_done = time.time()
        time.sleep(3)  # the last acknowledged messages reach the subscriber
        events = read_events(workdir / "events.sqlite")
    finally:
        steal.stop()
        gw.stop()
        runner.close()
        watcher.close()
    seen = watcher.seen
    born = min((t for t in seen.births if t >= t_back), default=t_back)
    back = min((t for t in seen.connects if t >= t_back), default=t_back)
    during = [a for t, a in seen.live if born <= t <= t_done]
    steady = [a for t, a in seen.live if t_steady <= t < t_kill]
    received = {(d, ts) for d, stamps in seen.historical.items() for ts in stamps}
    lost = [k for k in buffered["readings"] if k not in received]
    lost_events = sorted(set(events) - set(seen.event_seqs))
    r = {
        "outage_s": t_back - t_kill,
        "buffered_readings": len(buffered["readings"]),
        "buffered_events": buffered["events"],
        "dropped": buffered["dropped"],
        "historical_msgs": sum(len(v) for v in seen.historical.values()),
        "readings_lost": len(lost),
        "events_in_log": len(events),
        "events_lost": len(lost_events),
        "ordered": all(v == sorted(v) for v in seen.historical.values()),
        "reconnect_s": born - t_back,
        "subscriber_back_s": back - t_back,
        "replay_s": t_done - t_back,
        "live_msgs_during_replay": len(during),
        "live_age_p50_s": pct(during, 50),
        "live_age_p99_s": pct(during, 99),
        "live_age_max_s": max(during, default=float("nan")),
        "steady_age_p50_s": pct(steady, 50),
        "steady_age_max_s": max(steady, default=float("nan")),
        "steal": steal.summary()["share"],
    }
    log(f"  outage {r['outage_s']:.0f} s: {r['buffered_readings']} readings and "
        f"{r['buffered_events']} events buffered ({r['dropped']} dropped); node born again "
        f"{r['reconnect_s']:.1f} s after the broker's return, buffer empty after "
        f"{r['replay_s']:.1f} s (target {TARGETS['replay_s']:.0f} s)")  # fmt: skip
    log(
        f"  lost: {r['readings_lost']} readings of {r['buffered_readings']} buffered, "
        f"{r['events_lost']} events of {len(events)} in the log; order kept {r['ordered']}"
    )
    log(f"  live data age while replaying: p50 {r['live_age_p50_s']:.2f} s, p99 "
        f"{r['live_age_p99_s']:.2f} s, max {r['live_age_max_s']:.2f} s over {len(during)} "
        f"live messages (target {TARGETS['live_age_s']:.0f} s); before the outage p50 "
        f"{r['steady_age_p50_s']:.2f} s, max {r['steady_age_max_s']:.2f} s")  # fmt: skip
    if back > born:
        log(
            f"  note: the subscriber reconnected {back - born:.1f} s after the node's birth; "
            "what the broker queued for it meanwhile arrived late (ages include that)"
        )
    return r


def read_buffer(db: Path) -> dict[str, Any]:
    """The buffer's readings as (string, poll time ms), its event count, the dropped count."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT kind, body FROM queue").fetchall()
        dropped = con.execute("SELECT value FROM meta WHERE key = 'dropped_readings'").fetchone()
    finally:
        con.close()
    readings = [tuple(json.loads(body)[0:4:3]) for kind, body in rows if kind == "r"]
    return {"total": len(rows), "readings": readings, "events": len(rows) - len(readings),
            "dropped": dropped[0] if dropped else 0}  # fmt: skip


def read_events(db: Path) -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        con.close()


# -- 3. a fleet ------------------------------------------------------------------------------------
FRAMES = 30  # distinct readings per string, played forwards and back (no jumps)
SLICE_S = 0.05  # the feeder hands over what is due this often


def plant_frames(strings: int, cells: int, seed: int) -> list[list[StringReading]]:
    """Per string, readings of the simulator's model a second apart, played
    forwards then back: each differs from the one before as a real poll does."""
    from btms_gateway.protocols.bmsm.simulator.model import StringModel

    models = [StringModel.create(i + 1, cells, seed) for i in range(strings)]
    out: list[list[StringReading]] = [[] for _ in models]
    for _ in range(FRAMES):
        for seq, m in zip(out, models, strict=True):
            m.step(1.0)
            seq.append(m.expected_reading(0.0))
    return [seq + seq[-2:0:-1] for seq in out]


def fleet_worker(job: dict[str, Any], conn: Any) -> None:
    """One generator process: ``job["gateways"]`` MqttSessions fed 32 readings
    a second each, spread over the second; reports what it fed and its CPU."""
    from dataclasses import replace

    from btms_gateway.plugins.mqtt.session import MqttSession
    from btms_gateway.plugins.mqtt.settings import MqttSettings

    strings, first, count = job["strings"], job["first"], job["gateways"]
    frames = plant_frames(strings, job["cells"], seed=job["seed"])
    sessions = []
    for g in range(first, first + count):
        settings = MqttSettings.model_validate(job["section"] | {"node_id": f"site{g:04d}"})
        s = MqttSession(settings, gateway_name=f"site {g}", data_dir=Path(job["dir"]) / f"g{g}")
        s.start()
        sessions.append(s)
    wait_for(lambda: all(s.uplinks[0].ready() for s in sessions), 60, "the sessions' births")
    names = [f"S{i + 1}" for i in range(strings)]
    # a first reading of every string, so the devices' births are not in the measured time
    for s in sessions:
        for i, name in enumerate(names):
            r = replace(frames[i][0], read_at=time.time())
            s.offer_reading(StringSnapshot(name, i + 1, None, 0, i + 1, "b", Quality.GOOD, r, 0.0))
    wait_for(lambda: all(s.filter.known(n) for s in sessions for n in names), 120, "births")
    coalesced0 = sum(s.inbox.coalesced for s in sessions)
    conn.send("ready")
    t0, until = conn.recv()  # a common start (wall clock) and end
    # (due offset within the second, gateway, string): the buses deliver spread out
    schedule = sorted(((i / strings + (first + k) * 0.618) % 1.0, k, i) for k in range(count)
                      for i in range(strings))  # fmt: skip
    fed = due = 0
    cpu0 = time.process_time()
    n, slot = 0, 0  # the second, and the schedule position within it
    time.sleep(max(0.0, t0 - time.time()))
    while (now := time.time()) < until:
        while t0 + n + schedule[slot][0] <= now:
            _, k, i = schedule[slot]
            r = replace(frames[i][(n + k + 1) % len(frames[i])], read_at=now)
            snap = StringSnapshot(names[i], i + 1, None, 0, i + 1, "b", Quality.GOOD, r, 0.0)
            sessions[k].offer_reading(snap)
            fed += 1
            slot += 1
            if slot == len(schedule):
                n, slot = n + 1, 0
        time.sleep(SLICE_S)
    due = int((until - t0) * strings * count)
    cpu = time.process_time() - cpu0
    coalesced = sum(s.inbox.coalesced for s in sessions) - coalesced0
    for s in sessions:
        s.stop(2.0)
    conn.send({"fed": fed, "due": due, "cpu_s": cpu, "span_s": until - t0,
               "coalesced": coalesced})  # fmt: skip


def fleet(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="btms-bench-fleet-"))
    watcher = Watcher(broker, ["spBv1.0/#"], decode=True)
    section = mqtt_section(broker, mode=["sparkplug"])
    ctx = multiprocessing.get_context("spawn")
    per = -(-args.gateways // args.fleet_procs)
    procs, conns = [], []
    for first in range(0, args.gateways, per):
        parent, child = ctx.Pipe()
        job = {"strings": args.strings, "cells": args.cells, "first": first, "seed": 1 + first,
               "gateways": min(per, args.gateways - first), "section": section,
               "dir": str(workdir)}  # fmt: skip
        p = ctx.Process(target=fleet_worker, args=(job, child), daemon=True)
        p.start()
        procs.append(p)
        conns.append(parent)
    steal = StealMonitor().start()
    try:
        for c in conns:
            if not c.poll(180):
                raise TimeoutError("a generator process did not get its sessions born")
            c.recv()
        t0 = time.time() + 1.0
        until = t0 + args.warmup + args.fleet_seconds
        for c in conns:
            c.send((t0, until))
        time.sleep(max(0.0, t0 + args.warmup - time.time()))
        m0, b0 = watcher.snapshot()
        broker0, host0 = cpu_seconds(broker.proc.pid), time.process_time()
        w0 = time.time()
        time.sleep(max(0.0, until - 0.5 - time.time()))
        w1 = time.time()
        m1, b1 = watcher.snapshot()
        span = w1 - w0
        broker_cpu = (cpu_seconds(broker.proc.pid) - broker0) / span
        host_cpu = (time.process_time() - host0) / span
        gens = []
        for c in conns:
            if not c.poll(60):
                raise TimeoutError("a generator process did not report")
            gens.append(c.recv())
    finally:
        steal.stop()
        watcher.close()
        for p in procs:
            p.join(10)
    with watcher.lock:
        lat = [a for t, a in watcher.seen.live if w0 <= t <= w1]
    msgs_s, bytes_s = (m1 - m0) / span, (b1 - b0) / span
    fed, due = sum(g["fed"] for g in gens), sum(g["due"] for g in gens)
    gen_cpu = [g["cpu_s"] / g["span_s"] for g in gens]
    r = {
        "gateways": args.gateways,
        "processes": len(gens),
        "fed": fed,
        "due": due,
        "coalesced": sum(g["coalesced"] for g in gens),
        "generator_cpu": sum(gen_cpu),
        "generator_cpu_max_process": max(gen_cpu),
        "host_cpu": host_cpu,
        "msgs_s": msgs_s,
        "bytes_s": bytes_s,
        "broker_cpu": broker_cpu,
        "lat_p50_ms": pct(lat, 50) * 1000,
        "lat_p99_ms": pct(lat, 99) * 1000,
        "lat_n": len(lat),
        "per_gw_msgs_s": msgs_s / args.gateways,
        "per_gw_bytes_s": bytes_s / args.gateways,
        "steal": steal.summary()["share"],
    }
    log(
        f"  generator: {len(gens)} processes, {r['generator_cpu']:.3f} core in all (the busiest "
        f"{r['generator_cpu_max_process']:.3f}); fed {fed} of {due} readings due "
        f"({100 * fed / max(1, due):.1f} %), {r['coalesced']} coalesced in the sessions' inboxes"
    )
    log(
        f"  broker: {msgs_s:.0f} msg/s in, {bytes_s / 1024:.0f} KiB/s, "
        f"{broker_cpu:.3f} core; subscribing host ({host_cpu:.3f} core): latency p50 "
        f"{r['lat_p50_ms']:.0f} ms, p99 {r['lat_p99_ms']:.0f} ms over {len(lat)} messages"
    )
    log(
        f"  per gateway {r['per_gw_msgs_s']:.1f} msg/s, {r['per_gw_bytes_s'] / 1024:.2f} KiB/s; "
        f"1,000 sites: {r['per_gw_msgs_s'] * 1000:,.0f} msg/s and "
        f"{r['per_gw_bytes_s'] * 1000 * 8 / 1e6:.1f} Mbit/s into the cluster (payload and "
        f"topic), 1,000 connections, {1000 * (args.strings + 1):,} devices, broker CPU "
        f"~{broker_cpu / args.gateways * 1000:.1f} cores of this machine's kind (linear)"
    )
    return r


# -- the run -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "load1_at_start": loadavg()}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured per CPU round")
    ap.add_argument("--rounds", type=int, default=3, help="off/on rounds of the CPU part")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--strings", type=int, default=32)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--outage-minutes", type=float, default=3.0)
    ap.add_argument("--gateways", type=int, default=50)
    ap.add_argument("--fleet-procs", type=int, default=5, help="generator processes")
    ap.add_argument("--fleet-seconds", type=float, default=60.0)
    ap.add_argument("--skip", action="append", default=[], choices=["cpu", "outage", "fleet"])
    args = ap.parse_args()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    record: dict[str, Any] = {"started": started, "machine": machine(), "args": vars(args)}
    log(
        f"bench_mqtt {started}: {record['machine']['cpus']} x {record['machine']['cpu']}, "
        f"load {record['machine']['load1_at_start']:.1f}"
    )
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="btms-bench-broker-"))).start()
    results: dict[str, Any] = record.setdefault("results", {})
    ok = True
    try:
        if "cpu" not in args.skip:
            log(
                f"1. full scale ({args.strings} x {args.cells} at 1 s), off and on side by side, "
                f"{args.rounds} rounds of {args.seconds:.0f} s:"
            )
            cpu = results["cpu"] = full_scale(args, broker, log)
            ok &= cpu["added_median"] <= TARGETS["cpu_added"]
        if "outage" not in args.skip:
            log(f"2. broker outage of {args.outage_minutes:g} min at full scale:")
            o = results["outage"] = outage(args, broker, log)
            ok &= o["events_lost"] == 0 and o["readings_lost"] == 0 and o["ordered"]
            ok &= o["replay_s"] <= TARGETS["replay_s"]
            ok &= o["live_age_max_s"] <= TARGETS["live_age_s"]
        if "fleet" not in args.skip:
            log(
                f"3. fleet: {args.gateways} gateways of {args.strings} x {args.cells} in "
                f"{args.fleet_procs} processes, {args.fleet_seconds:.0f} s:"
            )
            results["fleet"] = fleet(args, broker, log)
    finally:
        broker.stop()
        log("targets met" if ok else "TARGETS MISSED")
        record["ok"], record["log"] = ok, lines
        record["machine"]["load1_at_end"] = loadavg()
        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"mqtt-{started}"
        stem.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        stem.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        print(f"written: {stem}.json, .txt")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
