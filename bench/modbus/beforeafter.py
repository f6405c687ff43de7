"""bench_modbus.py --against-head: the before/after of a change to the plugin,
HEAD's plugin package against the working tree's, over the wire and in
process. Its own module to keep bench_modbus.py short; the wire case runner
and the script to start for the in-process figure are passed in by it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import loadgen
from inprocess import INPROC_COUNT, INPROC_REQUESTS
from loadgen import Result

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this is bench/modbus/)


def head_copy(tmp: Path) -> Path:
    """The plugin package as committed, in ``tmp/head/modbus_tcp`` (git show: read only)."""
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", "HEAD", "plugins/modbus_tcp/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    dest = tmp / "head" / "modbus_tcp"
    dest.mkdir(parents=True)
    for name in names:
        if name.endswith(".py"):
            blob = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"HEAD:{name}"], check=True, capture_output=True
            ).stdout
            (dest / Path(name).name).write_bytes(blob)
    return dest.parent


def against_head(
    seconds: float,
    repeat: int,
    run_case: Callable[[str, int, float, Path, str], tuple[Result, float, float]],
    script: str,
) -> int:
    """Before (HEAD's plugin) and after (the working tree's), alternating, all runs shown.
    ``run_case`` is bench_modbus.py's (one server under load), ``script`` its path,
    run as ``script --inprocess-json`` for each side's in-process figure."""
    with tempfile.TemporaryDirectory() as tmpdir:
        sides = {"HEAD": str(head_copy(Path(tmpdir))), "working": ""}
        print(f"{loadgen.COUNT}-register FC 03 reads; {repeat} alternating runs of {seconds:g} s")
        print(f"{'plugin':<8} {'conns':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'srv CPU us/req':>14} {'of it kernel':>12} {'gen CPU':>7} "
              f"{'errors':>6}")  # fmt: skip
        cpu: dict[tuple[str, int], list[float]] = {}
        errors = 0
        for conns in (1, 10):
            for _ in range(repeat):
                for side, plugin_from in sides.items():
                    res, res.server_cpu_s, kernel = run_case(
                        "plugin", conns, seconds, Path(), plugin_from
                    )
                    cpu.setdefault((side, conns), []).append(res.cpu_us)
                    errors += res.errors
                    print(f"{side:<8} {conns:>5} {res.rate:>9.0f} {res.pct_ms(0.5):>7.3f} "
                          f"{res.pct_ms(0.99):>7.3f} {res.cpu_us:>14.1f} "
                          f"{1e6 * kernel / res.requests:>12.1f} "
                          f"{100 * res.gen_cpu:>6.0f}% {res.errors:>6}", flush=True)  # fmt: skip
        print("\nserver CPU per request, us (each run; median):")
        for conns in (1, 10):
            row = [f"{conns:>2} conn:"]
            for side in sides:
                runs = cpu[(side, conns)]
                shown = " / ".join(f"{us:.1f}" for us in runs)
                row.append(f"{side} {shown} ({sorted(runs)[len(runs) // 2]:.1f})")
            print("  " + "   ".join(row))
        print(f"\nin process, {INPROC_COUNT}-register FC 03 reads, us/req "
              f"(child processes alternating, 1 x {INPROC_REQUESTS:,} each):")  # fmt: skip
        inproc: dict[str, list[float]] = {side: [] for side in sides}
        source: dict[str, str] = {}
        for _ in range(repeat + 2):
            for side, plugin_from in sides.items():
                out = subprocess.run(
                    [sys.executable, script, "--inprocess-json", "--plugin-from", plugin_from],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                got = json.loads(out.splitlines()[-1])
                inproc[side].append(got["plugin"])
                source[side] = got["source"]
        for side, runs in inproc.items():
            print(
                f"  {side:<8} " + " / ".join(f"{us:.1f}" for us in runs), f" best {min(runs):.1f}"
            )
        for side, path in source.items():
            print(f"  {side}: the plugin's server.py was {path}")
    return 1 if errors else 0
