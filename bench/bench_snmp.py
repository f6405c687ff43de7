"""SNMP agent against net-snmp's snmpd on the same cell table, and against an
older copy of itself, side by side.

1. snmpbulkwalk of the whole cell table (32 strings x 120 cells x 7 columns
   = 26,880 varbinds) against this agent (running in its own process, so its
   RSS is the agent's) and, in the same run, against snmpd on another
   loopback port serving the same table from one `override` line per value.
   Prints varbinds/s, the ratio, the agent's RSS.
2. With ``--baseline DIR|REV`` (a copy of an older plugins/snmp, or a git
   revision to take it from), a second agent process runs that version and
   both are measured in turns: the agent's own CPU time (time.process_time)
   per varbind of the walk (v2c and v3 authPriv), per single GET, and per
   change of shape (an alarm raised or cleared, a string's cell count,
   a build from scratch), as the first request after the change pays it.
   The two agents' walks must print the same lines.
3. Full refresh: the plugin's work when all 32 strings deliver a new reading
   of the same shape (a snapshot swap).
4. Where the agent's time goes: cProfile of one walk, grouped by package.
5. Alarm latency: a simulator cell set over its limit -> the snmptrapd log
   line of the raise, at poll intervals of 0.2 s and 1 s (on_delay 0).

Targets: agent >= 10 % of snmpd's varbinds/s, agent RSS < 60 MB, full
refresh < 5 ms, alarm latency <= poll interval + 0.5 s. Exit status 1 when
one is missed.

    python bench/bench_snmp.py [--runs N] [--repetitions R] [--baseline DIR|REV]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "snmp"))
import peers
import run_record
from peers import AUTH, CELL_COLUMNS, CELLS, COMMUNITY, PRIV, STRINGS, USER

RATIO_TARGET, RSS_TARGET_MB, REFRESH_TARGET_MS = 0.10, 60.0, 5.0
LATENCY_EXCESS_S = 0.5  # an alarm reaches the NOC within one poll cycle plus this


# --- the agent process ----------------------------------------------------------
def serve(all_plugins: bool, plugin_dir: str | None) -> None:
    """Child mode: run a gateway with the SNMP plugin (from ``plugin_dir`` when
    given) and a full plant, then obey stdin commands, one JSON line each.

    By default only the plugins the agent needs are loaded (snmp, bmsm for the
    device profile and rtu for the serial transport), so the RSS is the agent's;
    --all-plugins loads every installed plugin as `btms-gateway run` does
    (BACnet's stack alone is big)."""
    if plugin_dir:
        import importlib.util

        class Redirect:  # btms_gateway.plugins.snmp from another directory
            @staticmethod
            def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
                if name != "btms_gateway.plugins.snmp":
                    return None
                init = os.path.join(plugin_dir, "__init__.py")
                return importlib.util.spec_from_file_location(
                    name, init, submodule_search_locations=[plugin_dir]
                )

        sys.meta_path.insert(0, Redirect)  # type: ignore[arg-type]
    if not all_plugins:
        from importlib.metadata import entry_points

        from btms_gateway.core import plugin_manager
        from btms_gateway.kit import testing

        def only_needed() -> Any:
            pm = plugin_manager.create_manager(load_entrypoints=False)
            for ep in entry_points(group="btms_gateway"):
                if ep.name in ("snmp", "bmsm", "rtu"):  # rtu: the serial bus transport
                    pm.register(ep.load(), name=ep.name)
            return pm

        testing.create_manager = only_needed  # type: ignore[attr-defined]
    asyncio.run(_serve())


async def _serve() -> None:
    from btms_gateway.core.model import Quality
    from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
    from btms_gateway.plugins.snmp import plugin

    user = {"name": USER, "auth_key": AUTH, "priv_key": PRIV}
    config = plant_config(
        strings=STRINGS, ups=STRINGS, stale_after_s=3600,
        plugins={"snmp": {"port": 0, "users": [user], **unthrottled()}},
    )  # fmt: skip
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
        spent = callback_clock()
        ready = {"port": snmp.agent.bound[1], "rss_ready_mb": peers.rss_mb(os.getpid())[0]}  # type: ignore[index]
        print(json.dumps(ready), flush=True)
        profiler = cProfile.Profile()
        while (cmd := await commands.get()) != "quit":
            if cmd == "cpu":
                reply: dict[str, Any] = {"cpu": time.process_time(), "callbacks": spent[0]}
            elif cmd == "profile-on":
                profiler.enable()
                reply = {"ok": True}
            elif cmd == "profile-off":
                profiler.disable()
                reply = {"profile": by_package(profiler)}
            elif cmd == "refresh":
                reply = refresh_times(snmp, h)
            print(json.dumps(reply), flush=True)


#: The agent's limits against reflection (docs/snmp.md, "Limits") turned off:
#: the walks measure the agent's speed, not its rate limit, and each GETBULK
#: answer holds its -Cr repetitions as before the limits (1,472 bytes would
#: cut them), so figures stay comparable with earlier runs and with snmpd.
UNTHROTTLED = {"rate_limit_per_s": 0, "max_response_bytes": 65507}


def unthrottled() -> dict[str, Any]:
    """UNTHROTTLED, as far as the agent under test has those settings (an
    older copy, ``--baseline``, may predate them: it refuses unknown keys)."""
    from btms_gateway.plugins.snmp.settings import SnmpSettings

    return {k: v for k, v in UNTHROTTLED.items() if k in SnmpSettings.model_fields}


def callback_clock() -> list[float]:
    """The CPU time spent in the agent's datagram callbacks (AllowlistUdp's
    datagram_received, where the direct path answers v2c reads, and _process,
    where pysnmp decodes, answers, encodes and sends), without the loop, the
    sockets' readiness polling and the gateway's other tasks that the process
    time holds."""
    from btms_gateway.plugins.snmp import agent

    spent = [0.0]

    def clocked(method: Any) -> Any:
        def timed(self: Any, *args: Any) -> None:
            t0 = time.thread_time()
            try:
                method(self, *args)
            finally:
                spent[0] += time.thread_time() - t0

        return timed

    agent.AllowlistUdp._process = clocked(agent.AllowlistUdp._process)  # type: ignore[method-assign]
    agent.AllowlistUdp.datagram_received = clocked(agent.AllowlistUdp.datagram_received)  # type: ignore[method-assign]
    return spent


def best_ms(step: Any, rounds: int = 20) -> float:
    best = float("inf")
    for n in range(rounds):
        t0 = time.process_time()
        step(n)
        best = min(best, time.process_time() - t0)
    return best * 1000


def refresh_times(snmp: Any, h: Any) -> dict[str, float]:
    """Best of 20: a same-shape refresh of all 32 strings; and each change of
    shape with the first request's index rebuild after it (``current()``)."""
    from dataclasses import replace

    from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
    from btms_gateway.kit.events import active_alarm
    from btms_gateway.kit.testing import make_reading
    from btms_gateway.plugins.snmp.image import build_index

    plant = snmp.ctx.plant
    fresh = [
        replace(s, reading=make_reading(CELLS, cell_voltage_v=2.2)) for s in plant.strings.values()
    ]
    plants = []
    for s in fresh:
        plants.append(replace(plant, strings=dict(plant.strings, **{s.name: s})))
        plant = plants[-1]
    shrunk = replace(plant.strings["S7"], reading=make_reading(CELLS - 1))
    shapes = [plant, replace(plant, strings=dict(plant.strings, S7=shrunk))]
    controller = snmp.agent.controller

    raised = AlarmEvent(1, EventKind.RAISED, "cell_voltage_high:S1:3", "cell_voltage_high",
                        Severity.ALARM, ObjectPath("UPS1", "S1", 3), 2.5, 2.4, "V", "high",
                        time.time())  # fmt: skip
    cleared = replace(raised, kind=EventKind.CLEARED)
    one = (active_alarm(raised),)

    def alarm(n: int) -> None:
        # the active tuple changes each time, as with each commit
        snmp.on_alarm(*((cleared, ()) if n % 2 else (raised, one)))
        controller.current()

    def cells(n: int) -> None:
        snmp.refresh(shapes[(n + 1) % 2])
        controller.current()

    swap = best_ms(lambda n: [snmp.refresh(p) for p in plants])
    times = {"swap_ms": swap, "alarm_ms": best_ms(alarm), "cells_ms": best_ms(cells)}
    times["full_ms"] = best_ms(lambda n: build_index(snmp.base, snmp.ctx))
    snmp.refresh(plants[-1])
    return times


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
    from btms_gateway.kit.testing import GatewayHarness, plant_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-snmptrapd-"))
    port, log = peers.free_port(), tmp / "traps.log"
    (tmp / "snmptrapd.conf").write_text("disableAuthorization yes\n")
    trapd = subprocess.Popen(
        ["snmptrapd", "-f", "-C", "-c", str(tmp / "snmptrapd.conf"), "-Lf", str(log),
         f"udp:127.0.0.1:{port}"], env=dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp), MIBS=""),
    )  # fmt: skip
    receiver = {"name": "noc", "port": port, "community": COMMUNITY}
    snmp = {"port": 0, "receivers": [receiver], "cold_start": False, **unthrottled()}
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
ROWS = (
    ("walk_v2c", "GETBULK walk, v2c (us/varbind)"),
    ("walk_v2c_cb", "  of it in the datagram callbacks"),
    ("walk_v3", "GETBULK walk, v3 authPriv (us/varbind)"),
    ("walk_v3_cb", "  of it in the datagram callbacks"),
    ("get", "GET of one OID, v2c (us/request)"),
    ("get_cb", "  of it in the datagram callbacks"),
    ("alarm_ms", "alarm raised/cleared + rebuild (ms)"),
    ("cells_ms", "cell count change + rebuild (ms)"),
    ("full_ms", "index built from scratch (ms)"),
    ("swap_ms", "32 readings, same shape (ms)"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=50, help="GETBULK max-repetitions")
    parser.add_argument("--all-plugins", action="store_true", help="load every plugin")
    parser.add_argument("--latency-rounds", type=int, default=7)
    parser.add_argument("--baseline", help="older plugins/snmp: a directory or a git revision")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plugin-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.all_plugins, args.plugin_dir)
        return 0
    for tool in ("snmpd", "snmpbulkwalk", "snmpget"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install snmp snmpd", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-snmp-"))
    snmpd_port = peers.free_port()
    conf = peers.snmpd_conf(tmp)
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp), MIBS="")
    snmpd_cmd = ["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(tmp / "snmpd.log")]
    snmpd_cmd += ["-p", str(tmp / "pid"), f"udp:127.0.0.1:{snmpd_port}"]
    snmpd = subprocess.Popen(snmpd_cmd, env=env, stdout=subprocess.DEVNULL)
    agents = {"new": peers.AgentProcess(__file__, args.all_plugins)}
    if args.baseline:
        agents["old"] = peers.AgentProcess(
            __file__, args.all_plugins, peers.baseline_dir(args.baseline)
        )
    agent = agents["new"]
    try:
        peers.wait_walkable(snmpd_port, 60)
        expected = STRINGS * CELLS * CELL_COLUMNS
        best = {"agent": 0.0, "snmpd": 0.0}
        for _ in range(args.runs):
            for name, port in (("agent", agent.port), ("snmpd", snmpd_port)):
                out, elapsed = peers.walk(port, args.repetitions)
                if out.count("\n") != expected:
                    raise RuntimeError(f"{name}: walked {out.count(chr(10))}, expected {expected}")
                best[name] = max(best[name], expected / elapsed)
        small = {}  # net-snmp's own default max-repetitions, for information
        for name, port in (("agent", agent.port), ("snmpd", snmpd_port)):
            out, elapsed = peers.walk(port, 10)
            small[name] = out.count("\n") / elapsed
        rss, peak = peers.rss_mb(agent.proc.pid)
        side = peers.compare(agents, args.runs, args.repetitions) if args.baseline else None
        refresh = agent.ask("refresh")
        agent.ask("profile-on")
        peers.walk(agent.port, args.repetitions)
        profile = agent.ask("profile-off")["profile"]
    finally:
        for a in agents.values():
            a.close()
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
    print(f"agent RSS: {agent.ready['rss_ready_mb']:.1f} MB ready, {rss:.1f} MB after the walks "
          f"(peak {peak:.1f} MB), {loaded} loaded")  # fmt: skip
    if side is not None:
        old, new = side["cpu"]["old"], side["cpu"]["new"]
        print(f"agent CPU time, baseline {args.baseline} (old) vs this tree (new), median of "
              f"{args.runs} runs in turns, -Cr{args.repetitions}; ms rows best of 20; the whole "
              "process, and the part spent in its datagram callbacks:")  # fmt: skip
        print(f"  {'':42}{'old':>9}{'new':>9}{'new/old':>9}")
        for key, label in ROWS:
            print(f"  {label:42}{old[key]:>9.3g}{new[key]:>9.3g}{new[key] / old[key]:>9.2f}")
        print(f"  both agents' walks printed the same lines: {'yes' if side['same'] else 'NO'}")
    print(f"full refresh, 32 new readings, same shape: {refresh['swap_ms']:.3f} ms; shape "
          f"change + rebuild: alarm {refresh['alarm_ms']:.2f} ms, cell count "
          f"{refresh['cells_ms']:.2f} ms (from scratch {refresh['full_ms']:.1f} ms)")  # fmt: skip
    print("agent time by package during one walk (own time, %):")
    for pkg, share in profile:
        print(f"  {pkg:<30}{share:>6.1f}")
    print("alarm latency, simulator cell over its limit -> snmptrapd log line (on_delay 0):")
    worst_excess = 0.0
    latency: dict[str, list[float]] = {}
    for poll_s in (0.2, 1.0):
        lat = latency[f"poll {poll_s} s"] = sorted(
            asyncio.run(alarm_latency(poll_s, args.latency_rounds))
        )
        worst_excess = max(worst_excess, lat[-1] - poll_s)
        print(f"  poll interval {poll_s:.1f} s: median {lat[len(lat) // 2] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms over {len(lat)} alarms "
              f"(max / poll interval {lat[-1] / poll_s:.2f})")  # fmt: skip
    run_record.add(walk_varbinds_per_s=best, walk_cr10_varbinds_per_s=small, ratio=ratio,
                   rss_ready_mb=agent.ready["rss_ready_mb"], rss_peak_mb=peak, refresh_ms=refresh,
                   alarm_latency_s=latency, baseline=side)  # fmt: skip
    missed = []
    if ratio < RATIO_TARGET:
        missed.append(f"ratio {ratio:.2f} < {RATIO_TARGET}")
    if peak >= RSS_TARGET_MB:
        missed.append(f"RSS peak {peak:.1f} MB >= {RSS_TARGET_MB}")
    if refresh["swap_ms"] >= REFRESH_TARGET_MS:
        missed.append(f"refresh {refresh['swap_ms']:.2f} ms >= {REFRESH_TARGET_MS}")
    if worst_excess > LATENCY_EXCESS_S:
        missed.append(f"alarm latency {worst_excess:.2f} s beyond one poll interval")
    if side is not None and not side["same"]:
        missed.append("the baseline's walk printed other lines")
    print(
        "targets: >= 10 % of snmpd, RSS < 60 MB, refresh < 5 ms, alarm latency <= poll "
        f"interval + {LATENCY_EXCESS_S} s: " + ("; ".join(missed) or "met")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_snmp", main))
