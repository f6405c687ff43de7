"""Hostile input on every northbound port: Modbus TCP, SNMP, BACnet/IP, HTTP.

The gateway runs as its own process (``btms-gateway run``, every plugin on,
polling simulators in another process). For each protocol this sends
``--count`` malformed or hostile inputs (default 100,000; bench/scale/
fuzzgen.py: hand-built valid frames mutated by bit flips, insertions,
truncation, oversized length fields, noise, glued frames), in batches; after
every batch a well-behaved client no one here wrote must be served: pymodbus
reads a string's registers over a connection opened before the attack,
net-snmp's snmpget, rusty-bacnet's ReadProperty, and urllib GETs /api/plant.
TCP protocols also get slow-drip connections (one byte every 0.5 s, held
through the whole phase) and a connection flood past the server's limit
from another host, 127.0.0.2 (held while the well-behaved client is
served). HTTP also checks that path traversal never returns a file from
outside the static folder.

Bounded by count and by --max-seconds per protocol; loopback only. Exits 1
if the gateway died or any well-behaved request failed.

    python bench/fuzz_northbound.py --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_record
from scale.fuzzgen import GENERATORS
from scale.fuzzsend import Drip, Sender, flood, udp_backlog
from scale.plant import Ports, bus_spec, gateway_config
from scale.procs import GatewayProcess, SimRunner, get_json, rss_mb

PROTOCOLS = ("modbus", "snmp", "bacnet", "http")
MODBUS_LIMIT = 16  # max_connections configured for the Modbus server
#: the connection flood comes from another host than the well-behaved clients
#: (127.0.0.1): a flood from the client's own address measures the per-address
#: rules, one from a neighbour the shared limit
FLOOD_HOST = "127.0.0.2"
#: BACnet/IP: keep at most this many bytes waiting in the device's socket
#: (a third of Linux's default 208 KB buffer): inputs beyond it would be
#: dropped by the kernel, never reaching the device, and so would the
#: well-behaved client's request after a batch (each such loss cost a 3 s
#: client time-out: 100 batches did not fit 240 s)
BACNET_PACE = 64 * 1024


class WellBehaved:
    """The clients that must be served throughout (none written here)."""

    def __init__(self, ports: Ports) -> None:
        from pymodbus.client import ModbusTcpClient

        self.ports = ports
        self.modbus = ModbusTcpClient("127.0.0.1", port=ports.modbus, timeout=3, retries=1)
        self.modbus.connect()  # opened before any attack, kept the whole run
        self.failures: dict[str, list[str]] = {p: [] for p in PROTOCOLS}
        self.ok: dict[str, int] = dict.fromkeys(PROTOCOLS, 0)

    def reconnect_modbus(self) -> None:
        """After other phases: the kept connection idled through them, and the
        server's idle timeout (120 s) may have closed it, as it should; a
        SCADA reconnects."""
        self.modbus.close()
        self.modbus.connect()

    def check(self, proto: str) -> bool:
        try:
            good = getattr(self, f"_{proto}")()
        except Exception as exc:
            good = False
            self.failures[proto].append(repr(exc)[:200])
        else:
            if not good:
                self.failures[proto].append("bad answer")
        self.ok[proto] += good
        return good

    def _modbus(self) -> bool:
        r = self.modbus.read_holding_registers(0, count=25, device_id=101)
        return not r.isError() and len(r.registers) == 25

    def _snmp(self) -> bool:
        out = subprocess.run(
            [
                "snmpget",
                "-v2c",
                "-c",
                "public",
                "-t",
                "2",
                "-r",
                "2",
                "-On",
                f"127.0.0.1:{self.ports.snmp}",
                "1.3.6.1.2.1.1.3.0",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.returncode == 0 and "Timeticks" in out.stdout

    def _bacnet(self) -> bool:
        return asyncio.run(_rusty_read(self.ports.bacnet))

    def _http(self) -> bool:
        plant = get_json(f"http://127.0.0.1:{self.ports.web}/api/plant", timeout=5)
        return len(plant["strings"]) > 0


async def _rusty_read(port: int) -> bool:
    import rusty_bacnet as rb
    from scale.procs import free_port

    async with rb.BACnetClient(
        interface="127.0.0.1",
        port=free_port(socket.SOCK_DGRAM),
        broadcast_address="127.255.255.255",
    ) as c:
        for _ in range(3):
            try:
                v = await asyncio.wait_for(
                    c.read_property(
                        f"127.0.0.1:{port}",
                        rb.ObjectIdentifier(rb.ObjectType.DEVICE, 47808),
                        rb.PropertyIdentifier.OBJECT_NAME,
                    ),
                    3,
                )
                return bool(v.value)
            except (TimeoutError, Exception):
                continue
    return False


def traversal_leaks(web: int) -> list[str]:
    """Paths that must never serve /etc/passwd."""
    leaks = []
    for path in (
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/..%2f..%2fetc/passwd",
    ):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}{path}", timeout=5) as r:
                if b"root:" in r.read():
                    leaks.append(path)
        except OSError:
            pass
    return leaks


def fuzz_protocol(
    proto: str,
    port: int,
    good: WellBehaved,
    count: int,
    batch: int,
    max_s: float,
    rng: random.Random,
) -> dict[str, Any]:
    gen = GENERATORS[proto]
    sender = Sender(proto, port, pace=BACNET_PACE if proto == "bacnet" else None)
    drops0 = udp_backlog(port)[1] if proto == "bacnet" else 0
    stop = threading.Event()
    drip = None
    if proto in ("modbus", "http"):
        payload = gen(rng) if proto == "modbus" else b"GET /api/plant HTTP/1.1\r\nHost: x\r\n"
        drip = Drip(port, payload, 4, stop)
        drip.start()
    sent, started = 0, time.monotonic()
    bad_checks = 0
    try:
        while sent < count and time.monotonic() - started < max_s:
            for _ in range(min(batch, count - sent)):
                sender.send(gen(rng), fresh=rng.random() < 0.5)
                sent += 1
            if proto == "bacnet":  # the batch read by the device before the client asks
                sender.drain()
            bad_checks += not good.check(proto)
        flooded = 0
        if proto in ("modbus", "http"):  # a flood past the limit, held while the good client asks
            socks = flood(port, MODBUS_LIMIT + 50 if proto == "modbus" else 600, FLOOD_HOST)
            flooded = len(socks)
            bad_checks += not good.check(proto)
            for s in socks:
                s.close()
    finally:
        stop.set()
        sender.close()
    return {
        "sent": sent,
        "seconds": time.monotonic() - started,
        "reconnects": sender.reconnects,
        "replies": sender.replies,
        "bad_checks": bad_checks,
        "flooded": flooded,
        "drip_closed": drip.closed_by_server if drip else None,
        # inputs the device's kernel dropped (socket buffer full): not delivered
        "kernel_drops": udp_backlog(port)[1] - drops0 if proto == "bacnet" else None,
    }


def run(
    count: int = 100_000,
    batch: int = 1000,
    max_s: float = 600.0,
    seed: int = 1,
    protocols: tuple[str, ...] = PROTOCOLS,
    log: Any = print,
) -> dict[str, Any]:
    spec = bus_spec(4, 12, 115200, 0.5, 0, frozen=True)
    workdir = tempfile.mkdtemp(prefix="btms-fuzz-")
    runner = SimRunner(spec)
    ports = Ports.free()
    gw = None
    try:
        config = gateway_config(spec, runner.where, ports, workdir, 0.5, ups=2)
        config["plugins"]["modbus_tcp"]["max_connections"] = MODBUS_LIMIT
        gw = GatewayProcess(config, workdir)
        gw.wait_http(ports.web)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every string GOOD, every server listening
            plant = get_json(f"http://127.0.0.1:{ports.web}/api/plant")
            if all(s["quality"] == "good" for s in plant["strings"]):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        good = WellBehaved(ports)
        for p in PROTOCOLS:  # everything works before the attack
            assert good.check(p), f"{p} not served before fuzzing: {good.failures[p]}"
        rss0 = rss_mb(gw.pid)
        rng = random.Random(seed)
        results: dict[str, dict[str, Any]] = {}
        passes: Counter[str] = Counter()
        for proto in protocols:
            passes[proto] += 1  # a protocol named twice runs twice: does RSS keep growing?
            key = proto if passes[proto] == 1 else f"{proto}#{passes[proto]}"
            port = {
                "modbus": ports.modbus,
                "snmp": ports.snmp,
                "bacnet": ports.bacnet,
                "http": ports.web,
            }[proto]
            if proto == "modbus" and results:
                good.reconnect_modbus()  # the client under attack connected just before it
            results[key] = fuzz_protocol(proto, port, good, count, batch, max_s, rng)
            results[key]["alive"] = gw.alive()
            results[key]["rss_mb"] = rss_mb(gw.pid) if gw.alive() else float("nan")
            log(f"{key}: {results[key]}")
            if not gw.alive():
                break
        leaks = traversal_leaks(ports.web) if gw.alive() else ["gateway dead"]
        good.reconnect_modbus()
        final = {p: good.check(p) for p in PROTOCOLS} if gw.alive() else {}
        return {
            "results": results,
            "alive": gw.alive(),
            "rss0": rss0,
            "rss1": rss_mb(gw.pid) if gw.alive() else float("nan"),
            "leaks": leaks,
            "final": final,
            "failures": good.failures,
            "ok": good.ok,
            "log": str(gw.log.name),
        }
    finally:
        if gw is not None:
            gw.stop()
        runner.close()


def problems(r: dict[str, Any]) -> list[str]:
    out = []
    if not r["alive"]:
        out.append(f"gateway died (log {r['log']})")
    for key, res in r["results"].items():
        if res["bad_checks"]:
            failed = r["failures"][key.split("#")[0]][:3]
            out.append(f"{key}: {res['bad_checks']} checks failed: {failed}")
    if r["leaks"]:
        out.append(f"path traversal served files: {r['leaks']}")
    if r["final"] and not all(r["final"].values()):
        out.append(f"not served after fuzzing: {r['final']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="inputs per protocol")
    ap.add_argument("--batch", type=int, default=1000, help="inputs between client checks")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="per protocol")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    a = ap.parse_args()
    r = run(a.count, a.batch, a.max_seconds, a.seed, tuple(a.protocols.split(",")))
    print(
        f"\n{'protocol':<9}{'inputs':>9}{'seconds':>9}{'reconnects':>11}{'flooded':>9}"
        f"{'good-client checks failed':>27}{'RSS after (MB)':>16}"
    )
    for key, res in r["results"].items():
        print(
            f"{key:<9}{res['sent']:>9}{res['seconds']:>9.0f}{res['reconnects']:>11}"
            f"{res['flooded']:>9}{res['bad_checks']:>27}{res['rss_mb']:>16.1f}"
        )
    if "bacnet" in r["results"]:
        drops = r["results"]["bacnet"]["kernel_drops"]
        print(f"bacnet datagrams dropped by the kernel before the device read them: {drops}")
    print(
        f"gateway alive: {r['alive']}; RSS {r['rss0']:.0f} -> {r['rss1']:.0f} MB; "
        f"well-behaved requests served: {r['ok']}"
    )
    bad = problems(r)
    run_record.add({k: r[k] for k in ("results", "alive", "rss0", "rss1", "ok", "final")},
                   failed=bad)  # fmt: skip
    for line in bad:
        print("FAILED:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_record.recorded("fuzz_northbound", main))
