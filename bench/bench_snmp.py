"""SNMP agent against net-snmp's snmpd on the same cell table, side by side.

1. snmpbulkwalk of the whole cell table (32 strings x 120 cells x 7 columns
   = 26,880 varbinds) against this agent (running in its own process, so its
   RSS is the agent's) and, in the same run, against snmpd on another
   loopback port serving the same table from one `override` line per value.
   Prints varbinds/s, the ratio, the agent's RSS.
2. Full refresh: the plugin's work when all 32 strings deliver a new reading
   (same shape: snapshot swap) and when the shape changes (index rebuild).
3. Where the agent's time goes: cProfile of one walk, grouped by package.
4. Alarm latency: a simulator cell set over its limit -> the snmptrapd log
   line of the raise, at poll intervals of 0.2 s and 1 s (on_delay 0, so the
   poll cycle is what remains); printed against the poll interval.

Targets: agent >= 10 % of snmpd's varbinds/s, agent RSS < 60 MB, full
refresh < 5 ms, alarm latency <= poll interval + 0.5 s. Exit status 1 when
one is missed.

    python bench/bench_snmp.py [--runs N] [--repetitions R]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STRINGS, CELLS = 32, 120
RATIO_TARGET, RSS_TARGET_MB, REFRESH_TARGET_MS = 0.10, 60.0, 5.0
LATENCY_EXCESS_S = 0.5  # an alarm reaches the NOC within one poll cycle plus this
COMMUNITY = "public"
CELL_COLUMNS = 7  # accessible columns of btmsCellTable


# --- the agent process ----------------------------------------------------------
def serve(all_plugins: bool) -> None:
    """Child mode: run a gateway with the SNMP plugin and a full plant, then obey
    stdin commands (`profile-on`, `profile-off`, `refresh`, `quit`).

    By default only the plugins the agent needs are loaded (snmp, and bmsm for
    the device profile), so the RSS is the agent's; --all-plugins loads every
    installed plugin as `btms-gateway run` does (BACnet's stack alone is big)."""
    if not all_plugins:
        from importlib.metadata import entry_points

        from btms_gateway.core import plugin_manager, testing

        def only_needed() -> Any:
            pm = plugin_manager.create_manager(load_entrypoints=False)
            for ep in entry_points(group="btms_gateway"):
                if ep.name in ("snmp", "bmsm"):
                    pm.register(ep.load(), name=ep.name)
            return pm

        testing.create_manager = only_needed  # type: ignore[attr-defined]
    asyncio.run(_serve())


async def _serve() -> None:
    from btms_gateway.core.model import Quality
    from btms_gateway.core.testing import GatewayHarness, make_reading, plant_config
    from btms_gateway.plugins.snmp import plugin

    config = plant_config(
        strings=STRINGS, ups=STRINGS, plugins={"snmp": {"port": 0}}, stale_after_s=3600
    )
    async with GatewayHarness(config) as h:
        for i in range(1, STRINGS + 1):
            h.publish(f"S{i}", make_reading(CELLS), Quality.GOOD)
        snmp = plugin.current()
        await h.wait_until(
            lambda: all(s.reading for s in snmp.ctx.plant.strings.values()), timeout=30
        )
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()

        def reader() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line.strip())
            loop.call_soon_threadsafe(commands.put_nowait, "quit")

        threading.Thread(target=reader, daemon=True).start()
        ready = {"port": snmp.agent.bound[1], "rss_ready_mb": rss_mb(os.getpid())[0]}  # type: ignore[index]
        print(json.dumps(ready), flush=True)
        profiler = cProfile.Profile()
        while (cmd := await commands.get()) != "quit":
            if cmd == "profile-on":
                profiler.enable()
                print(json.dumps({"ok": True}), flush=True)
            elif cmd == "profile-off":
                profiler.disable()
                print(json.dumps({"profile": by_package(profiler)}), flush=True)
            elif cmd == "refresh":
                print(json.dumps(refresh_times(snmp, h)), flush=True)


def refresh_times(snmp: Any, h: Any) -> dict[str, float]:
    """Best of 20 full refreshes (32 new readings), both kinds."""
    from dataclasses import replace

    from btms_gateway.core.testing import make_reading
    from btms_gateway.plugins.snmp.image import build_index

    plant = snmp.ctx.plant
    fresh = [
        replace(s, reading=make_reading(CELLS, cell_voltage_v=2.2)) for s in plant.strings.values()
    ]
    plants = []
    for s in fresh:
        strings = dict(plant.strings, **{s.name: s})
        plants.append(replace(plant, strings=strings))
        plant = plants[-1]
    swap = rebuild = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        for p in plants:
            snmp.refresh(p)
        swap = min(swap, time.perf_counter() - t0)
        t0 = time.perf_counter()  # what a shape change (cells added...) costs
        snmp.agent.controller.index = build_index(snmp.base, snmp.ctx)
        rebuild = min(rebuild, time.perf_counter() - t0)
    return {"swap_ms": swap * 1000, "rebuild_ms": rebuild * 1000}


def by_package(profiler: cProfile.Profile) -> list[tuple[str, float]]:
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    total = 0.0
    for (path, _line, _fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = "other"
        for pkg in ("pyasn1", "pysnmp", "btms_gateway", "plugins/snmp", "asyncio"):
            if pkg in path:
                key = "btms_gateway (snmp plugin)" if pkg == "plugins/snmp" else pkg
                break
        own[key] = own.get(key, 0.0) + tt
        total += tt
    return sorted(((k, 100 * v / total) for k, v in own.items()), key=lambda kv: -kv[1])


# --- alarm latency ------------------------------------------------------------------
async def alarm_latency(poll_s: float, rounds: int) -> list[float]:
    """Seconds from a simulator cell going over its limit to snmptrapd's log line
    of the raise, ``rounds`` times (one string, 8 cells, 115200 baud)."""
    from btms_gateway.core.model import Quality
    from btms_gateway.core.testing import GatewayHarness, plant_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-snmptrapd-"))
    port, log = free_port(), tmp / "traps.log"
    (tmp / "snmptrapd.conf").write_text("disableAuthorization yes\n")
    trapd = subprocess.Popen(
        ["snmptrapd", "-f", "-C", "-c", str(tmp / "snmptrapd.conf"), "-Lf", str(log),
         f"udp:127.0.0.1:{port}"], env=dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp), MIBS=""),
    )  # fmt: skip
    receiver = {"name": "noc", "port": port, "community": COMMUNITY}
    snmp = {"port": 0, "receivers": [receiver], "cold_start": False}
    config = plant_config(strings=1, ups=1, plugins={"snmp": snmp}, poll_interval_s=poll_s)
    config["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    raise_oid = "8072.9999.9999.0.1"  # btmsTrapAlarmRaised, numeric (no MIB loaded)
    clear_oid = "8072.9999.9999.0.2"
    out: list[float] = []

    async def logged(needle: str, count: int, deadline: float) -> float:
        while time.monotonic() < deadline:
            if log.exists() and log.read_text().count(needle) >= count:
                return time.perf_counter()
            await asyncio.sleep(0.002)
        raise TimeoutError(f"snmptrapd did not log {needle} in time")

    try:
        async with GatewayHarness(config, simulate=True, alarms=True, cells=8) as h:
            await h.wait_quality(Quality.GOOD)
            sim, slave = h.sim_for("S1")
            for n in range(1, rounds + 1):
                await asyncio.sleep(poll_s * 0.37)  # vary the phase against the poll cycle
                t0 = time.perf_counter()
                sim.set_cell(slave, 5, voltage_v=2.55)
                out.append(await logged(raise_oid, n, time.monotonic() + 30) - t0)
                sim.set_cell(slave, 5, voltage_v=2.25)
                await logged(clear_oid, n, time.monotonic() + 30)
    finally:
        trapd.terminate()
        trapd.wait(10)
    return out


# --- the measuring side -----------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def snmpd_conf(directory: Path) -> Path:
    """One `override` line per cell value, at the agent's OIDs."""
    from btms_gateway.core.testing import make_reading
    from btms_gateway.plugins.snmp.tables import CELL_TABLE, DEFAULT_BASE, object_oids, parse_oid

    oids = object_oids(parse_oid(DEFAULT_BASE))
    cells = make_reading(CELLS).cells
    lines = [f"rocommunity {COMMUNITY} 127.0.0.1"]  # the address is on the command line
    for col in CELL_TABLE.columns:
        if col.access == "not-accessible":
            continue
        prefix = ".".join(map(str, oids[col.name]))
        for s in range(1, STRINGS + 1):
            for c in cells:
                value = col.get(c, None)  # type: ignore[misc]
                kind, text = (
                    ("octet_str", '"x"') if isinstance(value, bytes) else ("integer", value)
                )
                lines.append(f"override .{prefix}.{s}.{c.index} {kind} {text}")
    path = directory / "snmpd.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def walk(port: int, repetitions: int) -> tuple[int, float]:
    from btms_gateway.plugins.snmp.tables import CELL_TABLE, DEFAULT_BASE, OBJECTS_ARC, parse_oid

    table = ".".join(map(str, (*parse_oid(DEFAULT_BASE), OBJECTS_ARC, CELL_TABLE.subid)))
    cmd = ["snmpbulkwalk", "-v2c", "-c", COMMUNITY, f"-Cr{repetitions}", "-On", "-Oq"]
    cmd += ["-t", "10", "-r", "0", f"udp:127.0.0.1:{port}", "." + table]
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, MIBS="")
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"snmpbulkwalk failed: {r.stderr}")
    return len(r.stdout.splitlines()), elapsed


def wait_walkable(port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        r = subprocess.run(
            ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", f"udp:127.0.0.1:{port}",
             ".1.3.6.1.2.1.1.1.0"], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if r.returncode == 0:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"no answer on port {port}: {r.stderr}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=50, help="GETBULK max-repetitions")
    parser.add_argument("--all-plugins", action="store_true", help="load every plugin")
    parser.add_argument("--latency-rounds", type=int, default=7)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.all_plugins)
        return 0
    for tool in ("snmpd", "snmpbulkwalk", "snmpget"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install snmp snmpd", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-snmp-"))
    snmpd_port = free_port()
    conf = snmpd_conf(tmp)
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp), MIBS="")
    snmpd_cmd = ["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(tmp / "snmpd.log")]
    snmpd_cmd += ["-p", str(tmp / "pid"), f"udp:127.0.0.1:{snmpd_port}"]
    snmpd = subprocess.Popen(snmpd_cmd, env=env, stdout=subprocess.DEVNULL)
    agent = subprocess.Popen(
        [sys.executable, __file__, "--serve", *(["--all-plugins"] if args.all_plugins else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    try:
        assert agent.stdout is not None and agent.stdin is not None

        def ask(cmd: str) -> dict[str, Any]:
            agent.stdin.write(cmd + "\n")  # type: ignore[union-attr]
            agent.stdin.flush()  # type: ignore[union-attr]
            return json.loads(agent.stdout.readline())  # type: ignore[union-attr]

        ready = json.loads(agent.stdout.readline())
        agent_port = ready["port"]
        wait_walkable(agent_port, 60)
        wait_walkable(snmpd_port, 60)
        expected = STRINGS * CELLS * CELL_COLUMNS
        best = {"agent": 0.0, "snmpd": 0.0}
        for _ in range(args.runs):
            for name, port in (("agent", agent_port), ("snmpd", snmpd_port)):
                n, elapsed = walk(port, args.repetitions)
                if n != expected:
                    raise RuntimeError(f"{name}: walked {n} varbinds, expected {expected}")
                best[name] = max(best[name], n / elapsed)
        small = {}  # net-snmp's own default max-repetitions, for information
        for name, port in (("agent", agent_port), ("snmpd", snmpd_port)):
            n, elapsed = walk(port, 10)
            small[name] = n / elapsed
        rss, peak = rss_mb(agent.pid)
        refresh = ask("refresh")
        ask("profile-on")
        walk(agent_port, args.repetitions)
        profile = ask("profile-off")["profile"]
    finally:
        if agent.stdin:
            agent.stdin.close()
        agent.wait(20)
        snmpd.terminate()
        snmpd.wait(20)
    ratio = best["agent"] / best["snmpd"]
    print(f"cell table walk: {STRINGS} x {CELLS} rows x {CELL_COLUMNS} columns = {expected:,} "
          f"varbinds, snmpbulkwalk -Cr{args.repetitions}, best of {args.runs}")  # fmt: skip
    print(f"{'':34}{'varbinds/s':>12}{'x snmpd':>9}")
    print(f"{'net-snmp snmpd (override lines)':34}{best['snmpd']:>12,.0f}{1.0:>9.2f}")
    print(f"{'btms-gateway agent (pysnmp)':34}{best['agent']:>12,.0f}{ratio:>9.2f}")
    print(
        f"with -Cr10 (snmpbulkwalk's default), one walk each: snmpd {small['snmpd']:,.0f}, "
        f"agent {small['agent']:,.0f} varbinds/s ({small['agent'] / small['snmpd']:.2f})"
    )
    loaded = "every installed plugin" if args.all_plugins else "only the snmp and bmsm plugins"
    print(f"agent RSS: {ready['rss_ready_mb']:.1f} MB ready, {rss:.1f} MB after the walks "
          f"(peak {peak:.1f} MB), {loaded} loaded")  # fmt: skip
    print(f"full refresh, 32 new readings, same shape: {refresh['swap_ms']:.3f} ms; "
          f"shape change (index rebuild): {refresh['rebuild_ms']:.1f} ms")  # fmt: skip
    print("agent time by package during one walk (own time, %):")
    for pkg, share in profile:
        print(f"  {pkg:<30}{share:>6.1f}")
    print("alarm latency, simulator cell over its limit -> snmptrapd log line (on_delay 0):")
    worst_excess = 0.0
    for poll_s in (0.2, 1.0):
        lat = sorted(asyncio.run(alarm_latency(poll_s, args.latency_rounds)))
        worst_excess = max(worst_excess, lat[-1] - poll_s)
        print(f"  poll interval {poll_s:.1f} s: median {lat[len(lat) // 2] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms over {len(lat)} alarms "
              f"(max / poll interval {lat[-1] / poll_s:.2f})")  # fmt: skip
    missed = []
    if ratio < RATIO_TARGET:
        missed.append(f"ratio {ratio:.2f} < {RATIO_TARGET}")
    if peak >= RSS_TARGET_MB:
        missed.append(f"RSS peak {peak:.1f} MB >= {RSS_TARGET_MB}")
    if refresh["swap_ms"] >= REFRESH_TARGET_MS:
        missed.append(f"refresh {refresh['swap_ms']:.2f} ms >= {REFRESH_TARGET_MS}")
    if worst_excess > LATENCY_EXCESS_S:
        missed.append(f"alarm latency {worst_excess:.2f} s beyond one poll interval")
    print(
        "targets: >= 10 % of snmpd, RSS < 60 MB, refresh < 5 ms, alarm latency <= poll "
        f"interval + {LATENCY_EXCESS_S} s: " + ("; ".join(missed) or "met")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
