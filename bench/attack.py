"""Hostile network neighbours, one attack at a time, against a gateway process.

The gateway runs as ``btms-gateway run`` under the usual service limit of
1,024 open files (``prlimit``), with every northbound plugin on, polling the
simulators of bench/scale (the full-scale plant, 32 strings x 120 cells, or
``--strings N``) in another process. Well-behaved clients in a third process
(bench/attack/probe.py) ask without pause on every protocol from 127.0.0.1:
a Modbus read, an SNMP GET, a BACnet ReadProperty and an HTTP GET of
/api/plant. The attackers come from other loopback addresses (127.0.0.2..).

Each attack runs ``--seconds`` (default 15), then the gateway gets up to 20 s
to settle (every string GOOD) before the next. Per attack it prints the
gateway's open descriptors and RSS (from /proc, the most during the attack),
its CPU, every protocol's p99 latency for the well-behaved client, whether
any string left GOOD, and pass/fail against the targets:

- a well-behaved Modbus client's p99 stays under 50 ms and no string leaves
  GOOD, under every attack;
- SNMP answers nothing to a source that is not allowed, and from an allowed
  one no response is larger than ``max_response_bytes`` and no more are
  answered than ``rate_limit_burst`` + ``rate_limit_per_s`` x seconds
  (docs/snmp.md, "Limits");
- the SSE hog leaves a live-update slot for another client.

The attacks (issue 24, items 1-5; bench/attack/ holds them, shared with the
tests' short versions): 1,100 idle HTTP connections from 100 hosts; Modbus
TCP from one host (many connections), slow-loris, lying MBAP lengths and a
pipelined flood; BACnet ReadPropertyMultiple of all properties of all
objects and a COV subscription flood; SNMP GETBULK (10,000 repetitions) from
an allowed and from a refused source; 300 parallel web logins a wave; one
address taking every live-update slot.

A run writes bench/results/attack-<UTC time>.json (bench/run_record.py: date,
machine, arguments, every figure). Exit status 1 if a target was missed.

    python bench/attack.py                      # full scale, about 4 minutes
    python bench/attack.py --strings 4 --cells 24 --seconds 5 --attacks snmp-refused
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_record  # noqa: E402
from attack import bacnet, modbus, net, snmp, web  # noqa: E402
from scale.plant import Ports, bus_spec, gateway_config  # noqa: E402
from scale.procs import (  # noqa: E402
    GatewayProcess,
    JsonLines,
    SimRunner,
    StealMonitor,
    cpu_seconds,
    rss_mb,
)
from scale.scene import wait_all_good  # noqa: E402

MODBUS_P99_MS = 50.0
NOFILE = 1024  # the usual service limit of open files
PASSWORD = "correct horse battery staple"
SNMP_ALLOWED = "127.0.0.3"  # an allowed manager that attacks; 127.0.0.2 is not allowed
SNMP_LIMITS = {"max_response_bytes": 1472, "rate_limit_per_s": 200.0, "rate_limit_burst": 1000}
TRANSITION = re.compile(r"string (\S+): GOOD -> (\w+)")


@dataclass
class Scene:
    """What every attack is aimed at, and the figures it may add."""

    ports: Ports
    gw: GatewayProcess
    strings: int
    seconds: float
    objects: list[tuple[str, int]] = field(default_factory=list)  # BACnet (type, instance)
    device: int = 47808
    web: str = field(init=False)  # the web server's URL
    bacnet: str = field(init=False)  # the BACnet device's HOST:PORT

    def __post_init__(self) -> None:
        self.web, self.bacnet = (
            f"http://127.0.0.1:{self.ports.web}",
            f"127.0.0.1:{self.ports.bacnet}",
        )


Attack = Callable[[Scene, Callable[[], bool]], Awaitable[dict[str, Any]]]


# --- the attacks: each runs until ``over()`` and returns its own figures -----------------
async def http_idle(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    hosts = [net.attacker(n) for n in range(100)]
    socks = await asyncio.to_thread(web.open_idle, scene.ports.web, 1100, hosts)
    try:
        while not over():
            await asyncio.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    return {"connections_opened": len(socks)}


async def modbus_one_host(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """200 connections from one host, then 50 more every half second (those
    the server closed are let go): the old server let 16 lock everyone out."""
    host, held, opened = [net.attacker(0)], [], 0
    try:
        batch = 200
        while not over():
            fresh = await net.hold(scene.ports.modbus, host, batch)
            opened += len(fresh)
            held = [c for c in held if not c[0].at_eof()] + fresh
            batch = 50
            await asyncio.sleep(0.5)
    finally:
        net.release(held)
    return {"connections_opened": opened}


async def modbus_slow_loris(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """50 connections from 10 hosts, each sending one byte of a request every
    0.1 s, opened again when the server closes them."""
    closed = 0
    frame = modbus.read_frame(1) * 100

    async def drip(host: str) -> None:
        nonlocal closed
        while not over():
            shut, _ = await modbus.slow_loris(scene.ports.modbus, host, frame, 0.1, scene.seconds)
            closed += shut

    await asyncio.gather(*(drip(net.attacker(n % 10)) for n in range(50)))
    return {"closed_by_server": closed}


async def modbus_lying_mbap(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """50 connections from 10 hosts whose header announces 254 bytes and
    which then send 6 and go silent, opened again when the server closes them."""
    closed = 0

    async def lie(host: str) -> None:
        nonlocal closed
        tid = 0
        while not over():
            tid = (tid + 1) & 0xFFFF
            closed += await modbus.lying_mbap(
                scene.ports.modbus, host, modbus.lying_header(tid), scene.seconds
            )

    await asyncio.gather(*(lie(net.attacker(n % 10)) for n in range(50)))
    return {"closed_by_server": closed}


async def modbus_pipelined(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """4 hosts, each writing 750 reads (9,000 bytes) at a time and reading the
    answers, again and again."""
    results = await asyncio.gather(
        *(modbus.pipelined_flood(scene.ports.modbus, net.attacker(n), 750, over) for n in range(4))
    )
    return {
        "requests_answered": sum(a for a, _ in results),
        "closed_by_server": sum(c for _, c in results),
    }


async def bacnet_rpm_all(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """ReadPropertyMultiple of every property of every object, 2,000 objects
    a request (all objects in turn; a full plant's answer is cut at
    max_response_segments), from 2 clients without pause. rusty-bacnet bound
    to 127.0.0.2 and up sends nothing the device receives (0.14), so these
    clients use 127.0.0.1, each on a port of its own."""
    import rusty_bacnet as rb
    from btms_gateway.kit.ports import free_udp_port

    kinds = {
        "analogInput": rb.ObjectType.ANALOG_INPUT,
        "binaryInput": rb.ObjectType.BINARY_INPUT,
        "multiStateInput": rb.ObjectType.MULTI_STATE_INPUT,
        "structuredView": rb.ObjectType.STRUCTURED_VIEW,
    }
    specs = [
        (rb.ObjectIdentifier(kinds[k], i), [(rb.PropertyIdentifier.ALL, None)])
        for k, i in scene.objects
    ]
    slices = [specs[i : i + 2000] for i in range(0, len(specs), 2000)]

    async def client(n: int) -> dict[str, int]:
        async with rb.BACnetClient(
            interface="127.0.0.1",
            port=free_udp_port(),
            broadcast_address="127.255.255.255",
            apdu_timeout_ms=5000,
        ) as c:
            return await bacnet.rpm_all_flood(c, scene.bacnet, slices[n:] + slices[:n], over)

    counts = await asyncio.gather(client(0), client(1))
    totals = {f"requests_{k}": sum(c[k] for c in counts) for k in counts[0]}
    return {"objects": len(specs), **totals}


async def bacnet_cov_flood(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """SubscribeCOV with lifetime 0 (kept forever by the old device) from 8
    hosts, over every analog input, 256 in flight per host."""
    instances = [i for k, i in scene.objects if k == "analogInput"]
    hosts = [net.attacker(n) for n in range(8)]
    counts = await bacnet.cov_flood(scene.bacnet, hosts, instances, over)
    return {f"subscriptions_{k}": v for k, v in counts.items()}


def _getbulk() -> bytes:
    return snmp.v2c_message("public", "bulk", [snmp.CELL_VOLTAGE], 0, 10_000)


async def snmp_from(source: str, scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    request = _getbulk()
    started = time.monotonic()
    sent, sizes = await asyncio.to_thread(
        snmp.flood, ("127.0.0.1", scene.ports.snmp), source, request, scene.seconds, 2000.0
    )
    seconds = time.monotonic() - started
    bytes_in, bytes_out = sent * len(request), sum(sizes)
    return {
        "source": source,
        "requests": sent,
        "request_bytes": len(request),
        "answered": len(sizes),
        "largest_response": max(sizes, default=0),
        "largest_over_request": round(max(sizes, default=0) / len(request), 1),
        "amplification": round(bytes_out / bytes_in, 2) if bytes_in else 0.0,
        "bound_answers": round(
            SNMP_LIMITS["rate_limit_burst"] + SNMP_LIMITS["rate_limit_per_s"] * seconds
        ),
    }


async def snmp_allowed(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    return await snmp_from(SNMP_ALLOWED, scene, over)


async def snmp_refused(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    return await snmp_from(net.attacker(0), scene, over)


async def web_login_flood(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """Waves of 300 wrong passwords sent at once, each wave from another host."""
    statuses: dict[str, int] = {}
    wave = 0
    while not over():
        for status in await web.login_flood(scene.web, 300, host=net.attacker(wave % 200)):
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        wave += 1
    return {"waves": wave, "logins_checked": statuses.get("401", 0), "statuses": statuses}


async def web_sse_hog(scene: Scene, over: Callable[[], bool]) -> dict[str, Any]:
    """One host asks for 40 live streams (all 32 slots and more); then another
    client asks for one."""
    held: list[Any] = []
    try:
        hog = [await web.open_stream(scene.web, net.attacker(0), held) for _ in range(40)]
        other = await web.open_stream(scene.web, "127.0.0.1", held)
        while not over():
            await asyncio.sleep(0.2)
    finally:
        await web.close_held(held)
    return {"hog_streams": hog.count(200), "hog_refused": len(hog) - hog.count(200),
            "other_client_status": other}  # fmt: skip


ATTACKS: dict[str, Attack] = {
    "http-idle-1100": http_idle,
    "modbus-one-host": modbus_one_host,
    "modbus-slow-loris": modbus_slow_loris,
    "modbus-lying-mbap": modbus_lying_mbap,
    "modbus-pipelined": modbus_pipelined,
    "bacnet-rpm-all": bacnet_rpm_all,
    "bacnet-cov-flood": bacnet_cov_flood,
    "snmp-allowed": snmp_allowed,
    "snmp-refused": snmp_refused,
    "web-login-flood": web_login_flood,
    "web-sse-hog": web_sse_hog,
}


def own_checks(name: str, extra: dict[str, Any]) -> list[str]:
    """The targets particular to one attack; each miss as a sentence."""
    missed = []
    if name == "snmp-refused" and extra["answered"]:
        missed.append(f"{extra['answered']} answers to a source not allowed")
    if name == "snmp-allowed":
        if extra["largest_response"] > SNMP_LIMITS["max_response_bytes"]:
            missed.append(f"a response of {extra['largest_response']} bytes")
        if extra["answered"] > extra["bound_answers"]:
            missed.append(f"{extra['answered']} answers > {extra['bound_answers']:.0f}")
    if name == "web-sse-hog" and extra["other_client_status"] != 200:
        missed.append(f"another client's stream got {extra['other_client_status']}")
    return missed


# --- measuring ------------------------------------------------------------------------------
class Probe(JsonLines):
    """bench/attack/probe.py in a child process (its measurements are its own)."""

    def __init__(self, scene: Scene) -> None:
        ports = {
            **{k: getattr(scene.ports, k) for k in ("modbus", "snmp", "bacnet", "web")},
            "strings": scene.strings,
            "device": scene.device,
        }
        super().__init__(
            [sys.executable, "-m", "attack.probe", json.dumps(ports)], "the probe", cwd=HERE
        )
        ready = self.read()["ready"]
        if not all(ready.values()):
            raise RuntimeError(f"a well-behaved client was not served before the attacks: {ready}")


class Watch(threading.Thread):
    """The gateway's open descriptors and RSS every 0.1 s: the most of each."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.fds = self.rss = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            with contextlib.suppress(OSError):
                self.fds = max(self.fds, fd_count(self.pid))
                self.rss = max(self.rss, rss_mb(self.pid))

    def stop(self) -> tuple[int, float]:
        self.done.set()
        self.join(5)
        return int(self.fds), self.rss


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def left_good(log: Path, offset: int) -> list[str]:
    """Strings the gateway logged leaving GOOD since ``offset`` of its log."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return sorted({f"{m[1]}->{m[2]}" for m in TRANSITION.finditer(text)})


async def settle(scene: Scene, fds: int, timeout: float = 20.0) -> None:
    """Until every string is GOOD and the descriptors are back near ``fds``."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError):
        await wait_all_good(scene.ports.web, scene.strings, timeout)
    while time.monotonic() < deadline and fd_count(scene.gw.pid) > fds + 16:
        await asyncio.sleep(0.5)


async def one_attack(name: str, scene: Scene, probe: Probe) -> dict[str, Any]:
    pid, log = scene.gw.pid, Path(scene.gw.log.name)
    fds0, rss0, cpu0 = fd_count(pid), rss_mb(pid), cpu_seconds(pid)
    offset = log.stat().st_size
    watch = Watch(pid)
    watch.start()
    probe.call(op="window")
    started = time.monotonic()
    end = started + scene.seconds
    extra = await ATTACKS[name](scene, lambda: time.monotonic() >= end)
    seconds = time.monotonic() - started
    latency = probe.call(op="report")
    fds, rss = watch.stop()
    cpu = (cpu_seconds(pid) - cpu0) / seconds if scene.gw.alive() else float("nan")
    await asyncio.sleep(2.0)  # a string the attack starved leaves GOOD a poll later
    left = left_good(log, offset)
    p99 = {p: r["p99_ms"] for p, r in latency.items()}
    missed = own_checks(name, extra)
    if not scene.gw.alive():
        missed.append("the gateway died")
    if p99["modbus"] is None or p99["modbus"] >= MODBUS_P99_MS:
        missed.append(f"Modbus p99 {p99['modbus']} ms")
    if left:
        missed.append(f"strings left GOOD: {', '.join(left)}")
    result = {
        "attack": name, "seconds": round(seconds, 1), "fds_before": fds0, "fds_max": fds,
        "rss_before_mb": round(rss0, 1), "rss_max_mb": round(rss, 1), "cpu_core": round(cpu, 3),
        "latency": latency, "left_good": left, "extra": extra, "missed": missed,
        "passed": not missed,
    }  # fmt: skip
    if scene.gw.alive():
        await settle(scene, fds0)
    return result


async def run(
    strings: int = 32,
    cells: int = 120,
    seconds: float = 15.0,
    attacks: tuple[str, ...] = tuple(ATTACKS),
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """The whole bench; the figures (see ``report``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's own sockets
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError("prlimit (util-linux) runs the gateway under 1,024 open files")
    spec = bus_spec(strings, cells, 115200, 1.0, min(2, strings // 2), headroom=0.5)
    workdir = tempfile.mkdtemp(prefix="btms-attack-")
    runner = SimRunner(spec)
    ports = Ports.free()
    gw = probe = None
    steal = StealMonitor().start()
    try:
        config = gateway_config(spec, runner.where, ports, workdir, 1.0)
        from btms_gateway.plugins.web.auth import hash_password

        config["plugins"]["web"]["users"] = {"tech": hash_password(PASSWORD)}
        config["plugins"]["snmp"] |= {"allowed_managers": ["127.0.0.1", SNMP_ALLOWED]}
        config["plugins"]["snmp"] |= SNMP_LIMITS
        gw = GatewayProcess(config, workdir, prefix=(prlimit, f"--nofile={NOFILE}:{NOFILE}"))
        gw.wait_http(ports.web)
        await wait_all_good(ports.web, strings)
        from btms_gateway.plugins.bacnet.export import plant_points

        _, points = plant_points(gw.path)
        scene = Scene(ports, gw, strings, seconds, [(p.kind, p.oid[1]) for p in points])
        probe = Probe(scene)
        log(f"gateway pid {gw.pid}: {strings} strings x {cells} cells GOOD; workdir {workdir}")
        results = []
        for name in attacks:
            results.append(await one_attack(name, scene, probe))
            log(line(results[-1]))
            if not gw.alive():
                break
        return {"strings": strings, "cells": cells, "seconds": seconds, "attacks": results,
                "passed": all(r["passed"] for r in results) and len(results) == len(attacks),
                "steal": steal.summary(), "log": gw.log.name}  # fmt: skip
    finally:
        steal.stop()
        if probe is not None:
            probe.close()
        if gw is not None:
            gw.stop()
        runner.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- reporting --------------------------------------------------------------------------------
PROTOCOLS = ("modbus", "snmp", "bacnet", "http")
COLUMNS = (
    f"{'attack':<19}{'fds max':>8}{'RSS MB':>10}{'CPU':>6}  p99 ms"
    + "".join(f"{p:>8}" for p in PROTOCOLS)
    + f"  {'left GOOD':<10} result"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def line(r: dict[str, Any]) -> str:
    lat = r["latency"]
    left = ",".join(r["left_good"]) or "none"
    rss = f"{r['rss_before_mb']:.0f}->{r['rss_max_mb']:.0f}"
    return (
        f"{r['attack']:<19}{r['fds_max']:>8}{rss:>10}{r['cpu_core']:>6.2f}        "
        + "".join(f"{_ms(lat[p]['p99_ms']):>8}" for p in PROTOCOLS)
        + f"  {left:<10} {'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['missed'])}"
    )


def report(result: dict[str, Any]) -> str:
    out = [COLUMNS, *(line(r) for r in result["attacks"]), "", "attack figures:"]
    for r in result["attacks"]:
        fails = {p: v["failures"] for p, v in r["latency"].items() if v["failures"]}
        failed = f"; client failures {fails}" if fails else ""
        out.append(f"  {r['attack']:<19} {r['extra']}{failed}")
    steal = result["steal"]
    out.append(f"host steal: {steal['share']:.1%} of CPU time; gateway log {result['log']}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strings", type=int, default=32)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=15.0, help="per attack")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help=f"of {', '.join(ATTACKS)}")
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results/attack-*")
    a = ap.parse_args()
    chosen = tuple(a.attacks.split(","))
    unknown = set(chosen) - set(ATTACKS)
    if unknown:
        ap.error(f"unknown attacks {sorted(unknown)}")
    print(COLUMNS)
    result = asyncio.run(
        run(a.strings, a.cells, a.seconds, chosen, log=lambda s: print(s, flush=True))
    )
    print()
    print(report(result))
    run_record.add(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("attack", main))
