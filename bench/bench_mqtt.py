"""MQTT at full scale, side by side in one run (docs/mqtt.md).

1. CPU and bytes: the full-scale plant (32 strings x 120 cells polled every
   second, simulators in a child process, ``btms-gateway run`` in another)
   with the web plugin only, then with MQTT Sparkplug by exception, Sparkplug
   reporting every value, and the JSON mode; gateway CPU (fraction of a core,
   /proc) and what reached a subscriber of the local Mosquitto (messages/s,
   bytes/s). Target: Sparkplug adds at most 0.015 of a core.
2. A broker outage (``--outage-minutes``, 10 for the real test) at full
   scale with alarm events made during it: events lost (event log seqs
   against what the host received), readings lost within the bound (buffer
   rows against historical messages), order, replay time after the broker's
   return (target 2 min), live data age while replaying (target 2 s).
3. A fleet: the plugin's own session and encoder code (MqttSession) run as
   ``--gateways`` gateways of 32 x 120 (synthetic readings: a few cells move
   each second) against one local Mosquitto: messages/s, broker CPU,
   end-to-end latency (metric time to a subscriber's receipt) p50/p99, and
   the per-gateway figures scaled to 1,000 sites.

    python bench/bench_mqtt.py                       # short (a shared machine)
    python bench/bench_mqtt.py --seconds 60 --outage-minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paho.mqtt.client as mqtt
from btms_gateway.core.model import CellReading, Quality, StringSnapshot
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.mqtt.session import MqttSession
from btms_gateway.plugins.mqtt.settings import MqttSettings
from btms_gateway.plugins.mqtt.sparkplug import sparkplug_b_pb2 as pb
from mqtt_peers import OBSERVER, OBSERVER_PASSWORD, Mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from scale.plant import Ports, bus_spec, gateway_config
from scale.procs import GatewayProcess, SimRunner, cpu_seconds
from scale.scene import wait_all_good

TARGETS = {"cpu_added": 0.015, "replay_s": 120.0, "live_age_s": 2.0}


class Watcher:
    """A subscriber on the broker's plain listener: counts, and decodes
    Sparkplug data to time it (receipt - newest metric time)."""

    def __init__(self, broker: Mosquitto, topics: list[str], decode: bool = False) -> None:
        self.decode = decode
        self.lock = threading.Lock()
        self.messages = self.bytes = 0
        self.ages: list[tuple[float, float, bool]] = []  # (received, age s, historical)
        self.historical: dict[str, list[int]] = {}  # device -> metric times, in arrival order
        self.event_seqs: list[int] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"w{time.time_ns()}",
                             clean_session=False)  # fmt: skip
        self.c.username_pw_set(OBSERVER, OBSERVER_PASSWORD)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        time.sleep(0.5)

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        now = time.time()
        with self.lock:
            self.messages += 1
            self.bytes += len(msg.payload) + len(msg.topic)
        if not self.decode or "/DDATA/" not in msg.topic:
            return
        p = pb.Payload.FromString(msg.payload)
        if not p.metrics:
            return
        hist = p.metrics[0].is_historical
        newest = max(m.timestamp for m in p.metrics) / 1000
        device = msg.topic.rsplit("/", 1)[1]
        with self.lock:
            self.ages.append((now, now - newest, hist))
            if hist:
                self.historical.setdefault(device, []).append(newest)
            if device == "Alarms":
                self.event_seqs.extend(m.long_value for m in p.metrics if m.alias == 64)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.messages, self.bytes

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def mqtt_section(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return broker.plugin_section(reconnect_min_s=0.5, reconnect_max_s=2.0, **extra)


# -- 1. CPU and bytes ----------------------------------------------------------------------
def full_scale(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    spec = bus_spec(args.strings, args.cells, 115200, 1.0, 2, headroom=0.5)
    runner = SimRunner(spec)
    variants = {
        "off": None,
        "sparkplug by exception": {"mode": ["sparkplug"]},
        "sparkplug full reports": {"mode": ["sparkplug"], "report_by_exception": False},
        "json by exception": {"mode": ["json"]},
    }
    out: dict[str, Any] = {}
    try:
        for name, mq in variants.items():
            ports = Ports.free()
            workdir = tempfile.mkdtemp(prefix="btms-bench-mqtt-")
            extra = {"mqtt": mqtt_section(broker, node_id="bench", **mq)} if mq else {}
            config = gateway_config(spec, runner.where, ports, workdir, 1.0, plugins=("web",),
                                    extra=extra)  # fmt: skip
            watcher = Watcher(broker, ["spBv1.0/#", "btms/#"])
            gw = GatewayProcess(config, workdir)
            try:
                gw.wait_http(ports.web)
                asyncio.run(wait_all_good(ports.web, args.strings))
                time.sleep(args.warmup)
                m0, b0 = watcher.snapshot()
                c0, t0 = cpu_seconds(gw.pid), time.monotonic()
                time.sleep(args.seconds)
                span = time.monotonic() - t0
                cpu = (cpu_seconds(gw.pid) - c0) / span
                m1, b1 = watcher.snapshot()
            finally:
                gw.stop()
                watcher.close()
            out[name] = {"cpu": cpu, "msgs_s": (m1 - m0) / span, "bytes_s": (b1 - b0) / span}
            log(f"  {name:<24} cpu {cpu:.3f} core  {out[name]['msgs_s']:7.1f} msg/s  "
                f"{out[name]['bytes_s'] / 1024:8.1f} KiB/s")  # fmt: skip
    finally:
        runner.close()
    return out


# -- 2. a broker outage -------------------------------------------------------------------------
def outage(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    spec = bus_spec(args.strings, args.cells, 115200, 1.0, 2, headroom=0.5)
    runner = SimRunner(spec)
    ports = Ports.free()
    workdir = tempfile.mkdtemp(prefix="btms-bench-mqtt-outage-")
    extra = {"mqtt": mqtt_section(broker, node_id="outage", mode=["sparkplug"])}
    config = gateway_config(spec, runner.where, ports, workdir, 1.0, plugins=("web",), extra=extra)
    config["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    db = Path(workdir) / "mqtt" / "buffer.sqlite"
    watcher = Watcher(broker, ["spBv1.0/#"], decode=True)
    gw = GatewayProcess(config, workdir)
    try:
        gw.wait_http(ports.web)
        asyncio.run(wait_all_good(ports.web, args.strings))
        time.sleep(args.warmup)
        broker.wait_saved()
        broker.kill()
        t_kill = time.time()
        flip = False
        while time.time() - t_kill < args.outage_minutes * 60:
            flip = not flip  # a burst of alarm events: cells over the limit and back
            runner.call(op="set_cells", bus="b1", slave=1, cells=list(range(1, 11)),
                        values={"voltage_v": 2.5 if flip else 2.25})  # fmt: skip
            time.sleep(min(5.0, args.outage_minutes * 60 / 4))
        rows = read_rows(db)
        t_back = time.time()
        broker.start()
        while read_rows(db)["total"] > 0 and time.time() - t_back < 600:
            time.sleep(0.2)
        replay_s = time.time() - t_back
        time.sleep(2)
        events = read_events(Path(workdir) / "events.sqlite")
    finally:
        gw.stop()
        runner.close()
        watcher.close()
    live = [a for t, a, h in watcher.ages if not h and t_back <= t <= t_back + replay_s]
    hist_msgs = sum(len(v) for v in watcher.historical.values())
    ordered = all(v == sorted(v) for v in watcher.historical.values())
    lost_events = sorted(set(events) - set(watcher.event_seqs))
    r = {
        "outage_s": t_back - t_kill,
        "buffered_rows": rows["total"],
        "buffered_events": rows["events"],
        "dropped": rows["dropped"],
        "historical_msgs": hist_msgs,
        "readings_lost": max(0, rows["total"] - hist_msgs),
        "events_in_log": len(events),
        "events_lost": len(lost_events),
        "ordered": ordered,
        "replay_s": replay_s,
        "live_age_max_s": max(live, default=0.0),
        "live_age_p99_s": pct(live, 99),
        "live_msgs_during_replay": len(live),
    }
    log(f"  outage {r['outage_s']:.0f} s: {r['buffered_rows']} records buffered "
        f"({r['buffered_events']} events, {r['dropped']} dropped), replayed in {replay_s:.1f} s; "
        f"historical messages {hist_msgs}; events lost {r['events_lost']} of "
        f"{len(events)}; order kept {ordered}; live age during replay max "
        f"{r['live_age_max_s']:.2f} s p99 {r['live_age_p99_s']:.2f} s "
        f"({len(live)} live messages)")  # fmt: skip
    return r


def read_rows(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        total = con.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        events = con.execute("SELECT COUNT(*) FROM queue WHERE kind = 'e'").fetchone()[0]
        dropped = con.execute("SELECT value FROM meta WHERE key = 'dropped_readings'").fetchone()
        return {"total": total, "events": events, "dropped": dropped[0] if dropped else 0}
    finally:
        con.close()


def read_events(db: Path) -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        con.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# -- 3. a fleet ------------------------------------------------------------------------------------
def frames(strings: int, cells: int, count: int, seed: int) -> list[list[Any]]:
    """``count`` readings per string, each moving a few cells from the one before
    (about what the simulator's drifts do to a 120-cell string in a second)."""
    rng = random.Random(seed)
    out = []
    for _ in range(strings):
        r = make_reading(cells)
        seq = []
        for _ in range(count):
            cs = list(r.cells)
            for i in rng.sample(range(cells), max(1, cells // 12)):
                c: CellReading = cs[i]
                cs[i] = replace(
                    c, voltage_v=round((c.voltage_v or 2.25) + rng.choice((-3, 3)) / 1000, 3)
                )
            r = replace(r, cells=tuple(cs), current_a=round(r.current_a + rng.gauss(0, 0.2), 2))
            seq.append(r)
        out.append(seq)
    return out


def fleet(args: argparse.Namespace, broker: Mosquitto, log: Any) -> dict[str, Any]:
    data = frames(args.strings, args.cells, 20, 1)
    workdir = Path(tempfile.mkdtemp(prefix="btms-bench-fleet-"))
    watcher = Watcher(broker, ["spBv1.0/#"])
    lat: list[float] = []

    def on_message(c: Any, u: Any, msg: Any) -> None:
        now = time.time()
        with watcher.lock:
            watcher.messages += 1
            watcher.bytes += len(msg.payload) + len(msg.topic)
        if "/DDATA/" in msg.topic:
            p = pb.Payload.FromString(msg.payload)
            if p.metrics:
                lat.append(now - max(m.timestamp for m in p.metrics) / 1000)

    watcher.c.on_message = on_message
    sessions = []
    for g in range(args.gateways):
        settings = MqttSettings.model_validate(
            mqtt_section(broker, node_id=f"site{g:04d}", mode=["sparkplug"])
        )
        s = MqttSession(settings, gateway_name=f"site {g}", data_dir=workdir / f"g{g}")
        s.start()
        sessions.append(s)
    names = [f"S{i + 1}" for i in range(args.strings)]
    try:
        time.sleep(2)
        broker_cpu0 = cpu_seconds(broker.proc.pid)
        m0, b0 = watcher.snapshot()
        lat.clear()
        t0 = time.monotonic()
        tick = 0
        offered = 0
        while time.monotonic() - t0 < args.fleet_seconds:
            start = time.monotonic()
            now = time.time()
            for g, s in enumerate(sessions):
                for i, name in enumerate(names):
                    r = replace(data[i][(tick + g) % 20], read_at=now)
                    s.offer_reading(
                        StringSnapshot(name, i + 1, None, 0, i + 1, "b", Quality.GOOD, r, 0.0)
                    )
                    offered += 1
            tick += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
        span = time.monotonic() - t0
        m1, b1 = watcher.snapshot()
        broker_cpu = (cpu_seconds(broker.proc.pid) - broker_cpu0) / span
        coalesced = sum(s.inbox.coalesced for s in sessions)
    finally:
        for s in sessions:
            s.stop(2.0)
        watcher.close()
    msgs_s, bytes_s = (m1 - m0) / span, (b1 - b0) / span
    r = {
        "gateways": args.gateways,
        "offered_s": offered / span,
        "coalesced": coalesced,
        "msgs_s": msgs_s,
        "bytes_s": bytes_s,
        "broker_cpu": broker_cpu,
        "lat_p50_ms": pct(lat, 50) * 1000,
        "lat_p99_ms": pct(lat, 99) * 1000,
        "per_gw_msgs_s": msgs_s / args.gateways,
        "per_gw_bytes_s": bytes_s / args.gateways,
    }
    log(f"  {args.gateways} gateways: offered {r['offered_s']:.0f} readings/s "
        f"({coalesced} coalesced), broker in {msgs_s:.0f} msg/s {bytes_s / 1024:.0f} KiB/s, "
        f"broker CPU {broker_cpu:.3f} core, latency p50 {r['lat_p50_ms']:.1f} ms "
        f"p99 {r['lat_p99_ms']:.1f} ms")  # fmt: skip
    log(f"  per gateway {r['per_gw_msgs_s']:.1f} msg/s {r['per_gw_bytes_s'] / 1024:.1f} KiB/s; "
        f"1,000 sites: {r['per_gw_msgs_s'] * 1000:.0f} msg/s, "
        f"{r['per_gw_bytes_s'] * 1000 * 8 / 1e6:.1f} Mbit/s into the cluster, "
        f"{1000 * (2 + args.strings)} devices, broker CPU ~{broker_cpu / args.gateways * 1000:.1f} "
        "cores of this machine's kind (linear)")  # fmt: skip
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured per CPU variant")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--strings", type=int, default=32)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--outage-minutes", type=float, default=0.5)
    ap.add_argument("--gateways", type=int, default=50)
    ap.add_argument("--fleet-seconds", type=float, default=20.0)
    ap.add_argument("--skip", action="append", default=[], choices=["cpu", "outage", "fleet"])
    args = ap.parse_args()
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="btms-bench-broker-"))).start()
    results: dict[str, Any] = {}
    ok = True
    try:
        if "cpu" not in args.skip:
            print(
                f"1. full scale ({args.strings} x {args.cells} at 1 s), {args.seconds:.0f} s each:"
            )
            cpu = results["cpu"] = full_scale(args, broker, print)
            added = cpu["sparkplug by exception"]["cpu"] - cpu["off"]["cpu"]
            print(f"  Sparkplug adds {added:+.3f} of a core (target <= {TARGETS['cpu_added']})")
            ok &= added <= TARGETS["cpu_added"]
        if "outage" not in args.skip:
            print(f"2. broker outage of {args.outage_minutes:g} min at full scale:")
            o = results["outage"] = outage(args, broker, print)
            ok &= o["events_lost"] == 0 and o["readings_lost"] == 0 and o["ordered"]
            ok &= (
                o["replay_s"] <= TARGETS["replay_s"]
                and o["live_age_max_s"] <= TARGETS["live_age_s"]
            )
        if "fleet" not in args.skip:
            print(f"3. fleet: {args.gateways} gateways of {args.strings} x {args.cells}:")
            results["fleet"] = fleet(args, broker, print)
    finally:
        broker.stop()
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
