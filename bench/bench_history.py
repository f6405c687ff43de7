"""History's cost and speed, side by side in one run (issue 26's targets).

1. Full scale (32 strings x 120 cells at 1 s, every plugin on, the simulators
   in a child process): the gateway's CPU and RSS with history off, then on.
   Targets: + 0.02 of a core and + 30 MB at most.
2. Bytes per stored value of the raw tier on the simulator's float-charge and
   discharge data (target 1.0 at most), and each tier's GB per day at full
   scale (one string measured, times 32).
3. Queries: one cell's resistance over 10 years from the hour tier (< 100 ms);
   one string's 24 h raw, every cell, one quantity (< 1 s).
4. The history service alone at 32, 64 and 128 strings (x 120 cells), in
   simulated time ten times faster than real, with commits and period closes
   as at 1 s: CPU per second of data and RSS against string count (linear).
5. The whole gateway with history on at 32, 64 and 128 strings (x 120 cells,
   every plugin on, no clients; ``--gateway-strings``, ``--gateway-interval``):
   CPU, RSS, cost per string and whether the buses kept up. Target at 128
   strings: 0.25 of a core and 250 MB.

The dashboard's chart draw time is measured in Chromium by
tests/test_history_browser.py (printed with -s).

    python bench/bench_history.py --minutes 1      # about 20 minutes
    python bench/bench_history.py --skip-gateway   # parts 2-4 only (about 3 minutes)
    python bench/bench_history.py --parts 5 --minutes 2 --gateway-interval 2

Writes bench/results/bench_history-*.json. Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from btms_gateway.core.history import HistorySection, HistoryService
from btms_gateway.core.history.quantities import (
    CELL_QUANTITIES,
    STRING_QUANTITIES,
    column_count,
)
from btms_gateway.core.history.store import HOUR, HistoryStore
from history_engines import T0, simulated, timed

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"cpu_on_off": 0.02, "rss_on_off": 30.0, "bytes_per_value": 1.0,
           "query_10y_ms": 100.0, "query_24h_s": 1.0,
           "cpu_128": 0.25, "rss_128": 250.0}  # fmt: skip
CELLS = 120


# --- 1. full scale, history off and on (and 5. the whole gateway against string count) ------
async def full_scale(
    history: bool, minutes: float, warmup_s: float, strings: int = 32, interval_s: float = 1.0
) -> dict[str, Any]:
    """The gateway (every plugin on, no clients) polling ``strings`` simulated
    strings of 120 cells. Besides CPU and RSS: whether the buses kept up,
    as cycles done over cycles due in the measured time (the slowest bus, and
    the mean of all; 1.0 = every string read every interval), the longest
    cycle seen, and the simulators' CPU (a child process of their own, on the
    same cores)."""
    from scale.plant import Ports, bus_spec, gateway_config
    from scale.procs import GatewayProcess, SimRunner, cpu_seconds, get_json, rss_mb
    from scale.scene import wait_all_good

    spec = bus_spec(strings, CELLS, 115200, interval_s, 2, headroom=0.5)
    runner = SimRunner(spec)
    workdir = tempfile.mkdtemp(prefix="btms-hist-scale-")
    ports = Ports.free()
    gw = None
    buses_url = f"http://127.0.0.1:{ports.web}/api/buses"

    async def cycles() -> dict[str, int]:
        return {b["name"]: b["cycles"] for b in await asyncio.to_thread(get_json, buses_url)}

    try:
        config = gateway_config(spec, runner.where, ports, workdir, interval_s)
        config["history"] = {"enabled": history}
        gw = GatewayProcess(config, workdir)
        gw.wait_http(ports.web)
        await wait_all_good(ports.web, strings, timeout=max(90.0, strings * 1.5))
        await asyncio.sleep(warmup_s)
        sim_pid = runner.proc.pid
        c0, s0, t0, n0 = cpu_seconds(gw.pid), cpu_seconds(sim_pid), time.monotonic(), await cycles()
        rss, longest = [rss_mb(gw.pid)], 0.0
        end = t0 + minutes * 60
        while time.monotonic() < end and gw.alive():
            await asyncio.sleep(min(5.0, max(0.0, end - time.monotonic())))
            rss.append(rss_mb(gw.pid))
            buses = await asyncio.to_thread(get_json, buses_url)
            longest = max([longest, *(b["last_cycle_s"] or 0.0 for b in buses)])
        n1, elapsed = await cycles(), time.monotonic() - t0
        cpu = (cpu_seconds(gw.pid) - c0) / elapsed
        sim_cpu = (cpu_seconds(sim_pid) - s0) / elapsed
        done = [(n1[b] - n0[b]) / (elapsed / interval_s) for b in n0]
        state = None
        if history:  # (without history the endpoint answers 404)
            url = f"http://127.0.0.1:{ports.web}/api/history"
            state = await asyncio.to_thread(get_json, url)
        return {"cpu_core": cpu, "rss_mb": max(rss), "alive": gw.alive(), "history": state,
                "strings": strings, "interval_s": interval_s, "buses": len(spec),
                "kept_up": min(done), "kept_up_mean": sum(done) / len(done),
                "longest_cycle_s": longest, "sim_cpu_core": sim_cpu,
                "minutes": elapsed / 60,
                "loadavg_1min": float(Path("/proc/loadavg").read_text().split()[0])}  # fmt: skip
    finally:
        if gw is not None:
            gw.stop()
        runner.close()


# --- 2. bytes per value and GB per day -----------------------------------------------------
def density(seconds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("float", "discharge"):
        data = simulated(mode, seconds, seed=11)
        work = Path(tempfile.mkdtemp(prefix="btms-hist-density-"))
        svc = HistoryService(HistorySection(), work).start()
        for r in data:
            svc.write("S1", r)
        svc.write("~clock", replace(data[-1], read_at=data[-1].read_at + 86400))
        assert svc.sync(600)
        tiers = {t["tier"]: t for t in svc.queries.info()["tiers"]}
        svc.close()
        hours = seconds / 3600
        per_day = {name: (t["block_bytes"] / hours) * 24 * 32 / 1e9 for name, t in tiers.items()}
        out[mode] = {
            "raw_bytes_per_value": tiers["raw"]["bytes_per_value"],
            "minute_bytes_per_value": tiers["minute"]["bytes_per_value"],
            "gb_per_day_full_scale": per_day,
        }
    return out


# --- 3. queries ------------------------------------------------------------------------------
def synthetic_rows(n: int, rng: np.random.Generator, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows like the simulator's float charge: cell voltages and temperatures on
    a slow random walk, resistances and SOC/SOH steady (scaled as stored)."""
    t = start + np.arange(n, dtype=np.float64)
    values = np.empty((n, column_count(CELLS)))
    ns = len(STRING_QUANTITIES)
    base = [2250.0, 450.0, 240.0, 100.0, 97.0, 0.0]
    for qi, _q in enumerate(CELL_QUANTITIES):
        cols = slice(ns + qi * CELLS, ns + (qi + 1) * CELLS)
        walk = np.cumsum(rng.normal(0, 0.3 if qi == 0 else 0.1 if qi == 2 else 0, (n, CELLS)), 0)
        values[:, cols] = np.rint(base[qi] + walk)
    values[:, 0] = values[:, ns : ns + CELLS].sum(axis=1) / 10  # string voltage, 0.01 V
    values[:, 1:ns] = [80, 100, 9950, 0, 235, 450, 0]
    return t, values


def queries(fill_hours: float) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    work = Path(tempfile.mkdtemp(prefix="btms-hist-query-"))
    svc = HistoryService(HistorySection(), work).start()
    n = int(fill_hours * 3600)
    filled = time.perf_counter()
    for a in range(0, n, 3600):
        t, values = synthetic_rows(min(3600, n - a), rng, T0 + a)
        svc.write_rows("S1", t, values, CELLS)
    svc.write_rows("~clock", [T0 + n + 86400], values[:1], CELLS)
    assert svc.sync(1200)
    fill_s = time.perf_counter() - filled
    a = T0 + (fill_hours - 24.5) * 3600
    q = svc.queries
    raw_24h = timed(lambda: q.series("S1", ["cell_voltage_v"], a, a + 86400, resolution="raw"))
    rows = len(q.series("S1", ["cell_voltage_v"], a, a + 86400, resolution="raw").t)
    svc.close()
    # ten years of the hour tier, loaded as roll-ups (see HistoryStore.load_rollups)
    work = Path(tempfile.mkdtemp(prefix="btms-hist-10y-"))
    store = HistoryStore(work / "history.sqlite", HistorySection())
    store.open()
    sid = store.string_id("S1")
    hours = 10 * 8766
    loaded = time.perf_counter()
    block = HOUR.block_ms // 3_600_000
    for h0 in range(0, hours, block):
        m = min(block, hours - h0)
        t_ms = (np.int64(T0) + 3600 * np.arange(h0, h0 + m, dtype=np.int64)) * 1000
        mean = synthetic_rows(m, rng, 0)[1].astype(np.int64)
        stats = np.stack([mean - 2, mean + 2, mean * 3600, np.full_like(mean, 3600)])
        store.load_rollups(HOUR, sid, t_ms, stats, CELLS)
        store.close_rollup(HOUR, sid, int(t_ms[0]) // HOUR.block_ms * HOUR.block_ms)
    load_s = time.perf_counter() - loaded
    store.close()
    from btms_gateway.core.history import HistoryQueries

    hq = HistoryQueries(work / "history.sqlite")
    end = T0 + hours * 3600
    ten_years = timed(
        lambda: hq.series("S1", ["cell_resistance_mohm"], T0, end, cells=[7], resolution="hour")
    )
    points = len(hq.series("S1", ["cell_resistance_mohm"], T0, end, cells=[7]).t)
    return {"raw_24h_all_cells_s": raw_24h, "raw_24h_rows": rows, "fill_s": fill_s,
            "fill_hours": fill_hours, "hour_10y_one_cell_ms": 1000 * ten_years,
            "hour_10y_points": points, "load_10y_s": load_s}  # fmt: skip


# --- 4. the service alone against string count ---------------------------------------------
def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scale(counts: list[int], wall_s: float, speed: float) -> list[dict[str, Any]]:
    pool = [simulated("float", 600, seed=s) for s in (1, 2, 3, 4)]
    out = []
    for n in counts:
        work = Path(tempfile.mkdtemp(prefix="btms-hist-n-"))
        rss0 = rss_now_mb()
        svc = HistoryService(HistorySection(commit_interval_s=2.0 / speed), work).start()
        c0, w0 = time.process_time(), time.monotonic()
        peak, data_s = rss0, 0
        while time.monotonic() - w0 < wall_s:
            tick = time.monotonic()
            for _ in range(int(speed)):
                for s in range(n):
                    r = pool[s % 4][data_s % 600]
                    svc.write(f"S{s + 1}", replace(r, read_at=T0 + data_s))
                data_s += 1
            peak = max(peak, rss_now_mb())
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        assert svc.sync(300)
        cpu = time.process_time() - c0
        peak = max(peak, rss_now_mb())
        closed = svc.status().counters["periods_closed"]
        svc.close()
        out.append({"strings": n, "cpu_core": cpu / data_s, "rss_mb": peak - rss0,
                    "data_s": data_s, "periods_closed": closed})  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="measured minutes per gateway run")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--skip-gateway", action="store_true", help="skip part 1")
    ap.add_argument("--density-s", type=int, default=1800, help="simulated seconds, part 2")
    ap.add_argument("--fill-hours", type=float, default=26.0, help="raw hours filled, part 3")
    ap.add_argument("--scale-wall", type=float, default=70.0, help="wall seconds per size, part 4")
    ap.add_argument("--speed", type=float, default=10.0, help="data seconds per wall second")
    ap.add_argument("--parts", default="1,2,3,4,5", help="the parts to run, e.g. 5 or 2,3")
    ap.add_argument("--gateway-strings", default="32,64,128", help="string counts, part 5")
    ap.add_argument("--gateway-interval", type=float, default=1.0, help="poll interval, part 5")
    a = ap.parse_args()
    parts = {int(x) for x in a.parts.split(",")} - ({1, 5} if a.skip_gateway else set())
    r: dict[str, Any] = {}
    if 1 in parts:
        print("1. full scale, history off then on ...", flush=True)
        r["off"] = asyncio.run(full_scale(False, a.minutes, a.warmup))
        r["on"] = asyncio.run(full_scale(True, a.minutes, a.warmup))
    if 2 in parts:
        print("2. bytes per value ...", flush=True)
        r["density"] = density(a.density_s)
    if 3 in parts:
        print("3. queries ...", flush=True)
        r["queries"] = queries(a.fill_hours)
    if 4 in parts:
        print("4. the service alone at 32, 64, 128 strings ...", flush=True)
        r["scale"] = scale([32, 64, 128], a.scale_wall, a.speed)
    if 5 in parts:
        r["gateway_scale"] = []
        for n in (int(x) for x in a.gateway_strings.split(",")):
            print(f"5. the whole gateway, history on, {n} strings ...", flush=True)
            run = full_scale(True, a.minutes, a.warmup, n, a.gateway_interval)
            r["gateway_scale"].append(asyncio.run(run))
    missed = report(r, a)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {"bench": "bench_history", "at": stamp, "machine": platform.node(),
              "cpus": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().split()[:3],
              "args": vars(a), "results": r, "missed": missed}  # fmt: skip
    out = RESULTS / f"bench_history-{stamp}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print(
        f"\nwritten to bench/results/{out.name}; load {Path('/proc/loadavg').read_text().strip()}"
    )
    print(f"MISSED: {', '.join(missed)}" if missed else "all targets met")
    return 1 if missed else 0


def report(r: dict[str, Any], a: argparse.Namespace) -> list[str]:
    missed = []

    def row(label: str, value: float, target: float | None, fmt: str = "{:.3f}") -> None:
        ok = "" if target is None else ("yes" if value <= target else "NO")
        if target is not None and value > target:
            missed.append(label)
        t = "" if target is None else fmt.format(target)
        print(f"{label:<52}{fmt.format(value):>12}{t:>10}  {ok}")

    print(f"\n{'figure':<52}{'measured':>12}{'target':>10}  ok")
    if "on" in r:
        off, on = r["off"], r["on"]
        print(f"1. full scale, {a.minutes:g} min each after {a.warmup:g} s warm-up (preliminary)")
        row("   gateway CPU, history off (core)", off["cpu_core"], None)
        row("   gateway CPU, history on (core)", on["cpu_core"], None)
        row(
            "   CPU added by history (core)",
            on["cpu_core"] - off["cpu_core"],
            TARGETS["cpu_on_off"],
        )
        row("   gateway RSS, history off (MB)", off["rss_mb"], None, "{:.1f}")
        row("   gateway RSS, history on (MB)", on["rss_mb"], None, "{:.1f}")
        row(
            "   RSS added by history (MB)",
            on["rss_mb"] - off["rss_mb"],
            TARGETS["rss_on_off"],
            "{:.1f}",
        )
    if "density" in r:
        report_density(r, row, a)
    if "queries" in r:
        report_queries(r, row)
    if "scale" in r:
        print(f"4. the history service alone, simulated x{a.speed:g} (CPU per second of data)")
        print(f"   {'strings':>8}{'CPU core':>10}{'per string':>12}{'RSS MB':>9}{'periods':>9}")
        for s in r["scale"]:
            print(f"   {s['strings']:>8}{s['cpu_core']:>10.4f}"
                  f"{s['cpu_core'] / s['strings']:>12.6f}{s['rss_mb']:>9.1f}"
                  f"{s['periods_closed']:>9}")  # fmt: skip
    if "gateway_scale" in r:
        report_gateway_scale(r["gateway_scale"], row)
    return missed


def report_gateway_scale(runs: list[dict[str, Any]], row: Any) -> None:
    """Part 5: the whole gateway against string count. Per string: the CPU and
    RSS over the strings polled; beside it, the marginal cost from the smaller
    size before it (what each added string cost), which is what "linear"
    means: constant marginal cost, whatever the fixed part. "kept up": cycles
    done over cycles due, of the slowest bus / the mean of all buses."""
    print("5. the whole gateway, history on, every plugin, no clients (120 cells a string)")
    print(f"   {'strings':>7}{'interval':>9}{'buses':>6}{'CPU core':>9}{'/string':>9}"
          f"{'marginal':>9}{'RSS MB':>8}{'/string':>8}{'marginal':>9}{'kept up':>11}"
          f"{'longest':>8}{'sim CPU':>8}{'load':>6}")  # fmt: skip
    before = None
    for g in runs:
        n = g["strings"]
        dcpu = drss = float("nan")
        if before is not None and before["interval_s"] == g["interval_s"] and n > before["strings"]:
            dn = n - before["strings"]
            dcpu = (g["cpu_core"] - before["cpu_core"]) / dn
            drss = (g["rss_mb"] - before["rss_mb"]) / dn
        print(f"   {n:>7}{g['interval_s']:>8g}s{g['buses']:>6}{g['cpu_core']:>9.3f}"
              f"{g['cpu_core'] / n:>9.4f}{dcpu:>9.4f}{g['rss_mb']:>8.1f}"
              f"{g['rss_mb'] / n:>8.2f}{drss:>9.2f}{g['kept_up']:>6.2f}/"
              f"{g.get('kept_up_mean', float('nan')):.2f}"
              f"{g['longest_cycle_s']:>7.2f}s{g['sim_cpu_core']:>8.3f}"
              f"{g.get('loadavg_1min', float('nan')):>6.1f}")  # fmt: skip
        before = g
    for g in runs:
        if g["strings"] == 128:
            row(f"   128 strings at {g['interval_s']:g} s: gateway CPU (core)", g["cpu_core"],
                TARGETS["cpu_128"])  # fmt: skip
            row(f"   128 strings at {g['interval_s']:g} s: gateway RSS (MB)", g["rss_mb"],
                TARGETS["rss_128"], "{:.1f}")  # fmt: skip


def report_density(r: dict[str, Any], row: Any, a: argparse.Namespace) -> None:
    print(f"2. density on {a.density_s} s of the simulator's data (one 120-cell string)")
    for mode, d in r["density"].items():
        row(f"   raw bytes per value, {mode}", d["raw_bytes_per_value"], TARGETS["bytes_per_value"])
        row(f"   minute-tier bytes per value, {mode}", d["minute_bytes_per_value"], None)
        for tier, gb in d["gb_per_day_full_scale"].items():
            if tier != "hour":
                row(f"   GB per day at full scale, {tier} tier, {mode}", gb, None)
    d = r["density"]["float"]["gb_per_day_full_scale"]
    hour = d["minute"] / 60  # a row an hour instead of a minute: an estimate, see docs/history.md
    total = 2 * d["raw"] + 90 * d["minute"] + 3660 * hour
    row("   GB per day at full scale, hour tier (estimated: minute / 60)", hour, None, "{:.4f}")
    row("   GB for the default retentions at full scale (estimated)", total, None, "{:.1f}")


def report_queries(r: dict[str, Any], row: Any) -> None:
    q = r["queries"]
    print(f"3. queries ({q['fill_hours']:g} h raw filled in {q['fill_s']:.1f} s; "
          f"10 years of hours loaded in {q['load_10y_s']:.1f} s)")  # fmt: skip
    row(f"   one cell's resistance, 10 y hour tier ({q['hour_10y_points']} pts, ms)",
        q["hour_10y_one_cell_ms"], TARGETS["query_10y_ms"], "{:.1f}")  # fmt: skip
    row(f"   one string 24 h raw, 120 cells, 1 quantity ({q['raw_24h_rows']} rows, s)",
        q["raw_24h_all_cells_s"], TARGETS["query_24h_s"])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
