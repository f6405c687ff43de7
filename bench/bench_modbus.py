"""Modbus TCP server benchmark: this plugin vs bare pymodbus vs libmodbus, side by side.

Every case is FC03 reads of 100 registers (``--count``) at random addresses
of the cell region of 32 string units (the image a SCADA polls), at 1 and at
10 concurrent connections, measured in the same run on the same loopback:

  plugin     the btms-gateway Modbus TCP service (image, quality rule, guard)
  pymodbus   a bare pymodbus 3.16 ModbusTcpServer, same unit ids and blocks, no action
  library    the plugin with ``fast_path = false``: the same service, guard and
             image, every request answered by pymodbus's request handling and
             SimCore datastore (plugin/library is what the fast path gains)
  libmodbus  a C server built here from Debian libmodbus-dev (the C reference)
  canned     a C server that answers a fixed response without parsing: the
             load generator's own ceiling (if the generator were the limit,
             every server would show the canned rate)

Each server runs in its own process; the load generator is this process
(raw sockets: a blocking loop for 1 connection, one epoll loop for 10), so
its CPU share is printed too. Exit status 1 when a target is missed:
plugin >= 90 % of bare pymodbus, p99 < 2 ms at 10 connections.
Then, in this process, the microseconds per 125-register FC03 request through
one connection's handler with no sockets (framer, decoder, datastore,
encoder, asyncio scheduling): the plugin, its library path, and bare
pymodbus (``--inprocess`` prints only this table).
``--profile`` also runs the plugin under cProfile and prints where time goes.

``--against-head`` is the before/after of a change to the plugin: the
plugin package as committed (``git show HEAD:plugins/modbus_tcp/...``,
copied to a temporary directory and imported in its server's process in
place of the working tree's) and the working tree's, alternating --repeat
times, every run printed, at 1 and 10 connections; then the in-process
figure of each, in child processes, alternating. The server CPU is split
into its kernel part (/proc stime: the send/recv/epoll system calls).

Usage: python bench/bench_modbus.py [--seconds 3] [--repeat 3] [--count 100] [--profile]
       [--inprocess] [--against-head]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
C_SOURCE = HERE / "modbus" / "reference_server.c"
sys.path.insert(0, str(HERE / "modbus"))
import loadgen  # noqa: E402
import run_record  # noqa: E402
from beforeafter import against_head  # noqa: E402
from inprocess import INPROC_REQUESTS, inprocess_us, report_inprocess  # noqa: E402
from loadgen import REGISTERS, UNITS, Result, load_1, load_n  # noqa: E402

TARGET_RATIO = 0.90
TARGET_P99_MS = 2.0


# --- servers (child processes) ---------------------------------------------------
def use_plugin_from(directory: str | None) -> str:
    """Import the plugin package from ``directory`` (a copy of HEAD's) instead of
    the working tree's; called before anything imports it. Returns its path."""
    import btms_gateway.plugins

    if directory:
        btms_gateway.plugins.__path__.insert(0, directory)
    import btms_gateway.plugins.modbus_tcp.server as server

    return str(server.__file__)


def plugin_service(port: int, fast_path: bool = True) -> Any:
    """The plugin's ModbusService over 32 GOOD strings of 120 cells in 8 UPS."""
    from btms_gateway.core.gateway import NoAlarms
    from btms_gateway.core.model import Quality, StringSnapshot
    from btms_gateway.core.store import SnapshotStore
    from btms_gateway.kit.testing import make_reading
    from btms_gateway.plugins.modbus_tcp.service import ModbusService
    from btms_gateway.plugins.modbus_tcp.settings import ModbusTcpSettings

    class BenchGateway:  # what ModbusService reads from a gateway
        alarms = NoAlarms()

        def __init__(self) -> None:
            now = time.time()
            strings = [
                StringSnapshot(f"S{i}", i, f"UPS{(i - 1) % 8 + 1}", (i - 1) % 8 + 1, i, "bus1",
                               Quality.GOOD, make_reading(120), now)
                for i in range(1, 33)
            ]  # fmt: skip
            self.store = SnapshotStore(strings, [(f"UPS{u}", u) for u in range(1, 9)])

    settings = ModbusTcpSettings(
        port=port, max_connections=64, max_connections_per_address=64, fast_path=fast_path
    )  # the load's 10 connections come from one address
    return ModbusService(settings, BenchGateway())


def bare_devices() -> list[Any]:
    """The same unit ids and blocks as the plugin's string units, no action."""
    from pymodbus.simulator import DataType, SimData, SimDevice

    return [
        SimDevice(u, simdata=[SimData(0, count=30, values=0, datatype=DataType.REGISTERS),
                              SimData(100, count=12000, values=0, datatype=DataType.REGISTERS)])
        for u in UNITS
    ]  # fmt: skip


async def serve_plugin(
    port: int, profile_out: str | None, source: str = "", fast_path: bool = True
) -> None:
    svc = plugin_service(port, fast_path)
    await svc.start()
    await _ready_then_wait(profile_out, source)
    await svc.stop()


async def serve_bare(port: int, profile_out: str | None) -> None:
    from pymodbus.server import ModbusTcpServer

    server = ModbusTcpServer(bare_devices(), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    await _ready_then_wait(profile_out)
    await server.shutdown()


async def _ready_then_wait(profile_out: str | None, source: str = "") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    profiler = None
    if profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    print("ready", source, flush=True)
    await stop.wait()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_out)


# --- orchestration -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_reference(tmp: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/modbus/modbus.h").exists():
        sys.exit("bench_modbus: needs gcc and libmodbus-dev (apt-get install gcc libmodbus-dev)")
    exe = tmp / "reference_server"
    subprocess.run(
        [gcc, "-O2", "-o", str(exe), str(C_SOURCE), "-I/usr/include/modbus", "-lmodbus"],
        check=True,
    )
    return exe


def start(cmd: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        sys.exit(f"bench_modbus: server {cmd} did not start")
    return proc


def cpu_s(pid: int) -> tuple[float, float]:
    """The process's CPU seconds: user and kernel (system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def server_cmd(
    name: str, port: int, ref: Path, profile_out: str | None = None, plugin_from: str = ""
) -> list[str]:
    if name in ("libmodbus", "canned"):
        return [str(ref), name, str(port), str(REGISTERS)]
    cmd = [sys.executable, __file__, "--serve", name, "--port", str(port)]
    cmd += ["--plugin-from", plugin_from] if plugin_from else []
    return cmd + (["--profile-out", profile_out] if profile_out else [])


def run_case(
    name: str, conns: int, seconds: float, ref: Path, plugin_from: str = ""
) -> tuple[Result, float, float]:
    """One server under load: the load's result, the server's CPU seconds over
    the measured window, and the kernel's part of them."""
    port = free_port()
    proc = start(server_cmd(name, port, ref, plugin_from=plugin_from))
    marks: list[tuple[float, float]] = []
    try:

        def mark() -> None:
            marks.append(cpu_s(proc.pid))

        if conns == 1:
            res = load_1(port, seconds, 0.5, mark)
        else:
            res = load_n(port, conns, seconds, 0.5, mark)
        user, system = cpu_s(proc.pid)  # minus the marks: the measured window only
    finally:
        stop(proc)
    return res, user + system - sum(marks[0]), system - marks[0][1]


def profile_plugin(seconds: float, ref: Path, tmp: Path) -> None:
    import pstats

    out = str(tmp / "plugin.prof")
    port = free_port()
    proc = start(server_cmd("plugin", port, ref, out))
    try:
        load_n(port, 10, seconds, 0.2)
    finally:
        stop(proc)
    print("\ncProfile of the plugin server at 10 connections (top 20 by own time):")
    pstats.Stats(out).sort_stats("tottime").print_stats(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case")
    ap.add_argument("--repeat", type=int, default=3, help="runs of plugin/pymodbus, best kept")
    ap.add_argument("--profile", action="store_true", help="also cProfile the plugin server")
    ap.add_argument(
        "--inprocess", action="store_true", help="only the in-process table (about 30 s)"
    )
    ap.add_argument(
        "--against-head", action="store_true", help="the committed plugin vs the working tree's"
    )
    ap.add_argument("--count", type=int, default=loadgen.COUNT, help="registers per wire request")
    ap.add_argument("--serve", choices=["plugin", "library", "bare"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    ap.add_argument("--plugin-from", default="", help=argparse.SUPPRESS)
    ap.add_argument("--inprocess-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve or args.inprocess_json:
        # a stopped benchmark leaves requests in flight; pymodbus would log each one
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        source = use_plugin_from(args.plugin_from)
        if args.inprocess_json:
            best = asyncio.run(
                inprocess_us(INPROC_REQUESTS, 1, plugin_service, bare_devices, only_plugin=True)
            )
            print(json.dumps({"source": source, **best}))
        elif args.serve in ("plugin", "library"):
            fast_path = args.serve == "plugin"
            asyncio.run(serve_plugin(args.port, args.profile_out, source, fast_path))
        else:
            asyncio.run(serve_bare(args.port, args.profile_out))
        return 0
    if args.inprocess:
        report_inprocess(INPROC_REQUESTS, args.repeat + 2, plugin_service, bare_devices)
        return 0
    loadgen.COUNT, loadgen.RESPONSE_LEN = args.count, 9 + 2 * args.count
    if args.against_head:
        return against_head(args.seconds, args.repeat, run_case, __file__)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ref = build_reference(tmp)
        results: dict[tuple[str, int], Result] = {}
        print(f"{'server':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'srv CPU us/req':>14} {'gen CPU':>7} {'errors':>6}")  # fmt: skip
        for conns in (1, 10):
            # plugin and pymodbus alternate --repeat times and keep their best run, so a
            # burst of load from elsewhere on a shared machine does not decide the ratio
            order = ["plugin", "pymodbus", "library"] * args.repeat + ["libmodbus", "canned"]
            runs: dict[str, tuple[Result, float]] = {}
            for name in order:
                server = {"pymodbus": "bare"}.get(name, name)
                res, server_cpu, _ = run_case(server, conns, args.seconds, ref)
                if name not in runs or res.rate > runs[name][0].rate:
                    runs[name] = (res, server_cpu)
            for name, (res, server_cpu) in runs.items():
                res.server_cpu_s = server_cpu
                results[(name, conns)] = res
                run_record.add({f"{name}, {conns} conn": {"req_per_s": res.rate,
                    "p50_ms": res.pct_ms(0.5), "p99_ms": res.pct_ms(0.99),
                    "server_cpu_us_per_req": res.cpu_us, "errors": res.errors}})  # fmt: skip
                print(f"{name:<10} {conns:>5} {res.rate:>9.0f} {res.pct_ms(0.5):>7.3f} "
                      f"{res.pct_ms(0.99):>7.3f} {res.cpu_us:>14.1f} "
                      f"{100 * res.gen_cpu:>6.0f}% {res.errors:>6}", flush=True)  # fmt: skip
        failed = report(results)
        report_inprocess(INPROC_REQUESTS, args.repeat + 2, plugin_service, bare_devices)
        if args.profile:
            profile_plugin(args.seconds, ref, tmp)
    return 1 if failed else 0


def report(results: dict[tuple[str, int], Result]) -> bool:
    failed = False
    print("\nratios (same run, same loopback):")
    for conns in (1, 10):
        plugin, bare = results[("plugin", conns)], results[("pymodbus", conns)]
        lib, canned = results[("libmodbus", conns)], results[("canned", conns)]
        library = results[("library", conns)]
        ratio = plugin.rate / bare.rate
        ok = ratio >= TARGET_RATIO
        failed |= not ok
        print(f"  {conns:>2} conn: plugin/pymodbus     {ratio:6.1%} "
              f"(target >= {TARGET_RATIO:.0%}: {'ok' if ok else 'MISSED'})")  # fmt: skip
        print(f"  {conns:>2} conn: fast path/library path {plugin.rate / library.rate:6.2f}x "
              f"the requests a second")  # fmt: skip
        print(f"  {conns:>2} conn: server CPU per request, plugin/pymodbus "
              f"{plugin.cpu_us / bare.cpu_us:.2f}, fast/library path "
              f"{plugin.cpu_us / library.cpu_us:.2f} (lower is cheaper)")  # fmt: skip
        fastest = max(bare.rate, library.rate, plugin.rate)
        print(f"  {conns:>2} conn: plugin/libmodbus     {plugin.rate / lib.rate:6.1%}; generator "
              f"ceiling (canned) {canned.rate:,.0f} req/s = {canned.rate / fastest:.1f}x "
              f"the pymodbus rates")  # fmt: skip
    p99 = results[("plugin", 10)].pct_ms(0.99)
    ok = p99 < TARGET_P99_MS
    failed |= not ok
    print(f"  plugin p99 at 10 connections: {p99:.3f} ms (target < {TARGET_P99_MS} ms: "
          f"{'ok' if ok else 'MISSED'})")  # fmt: skip
    errors = sum(r.errors for r in results.values())
    if errors:
        failed = True
        print(f"  {errors} responses were not {loadgen.COUNT}-register answers: MISSED")
    return failed


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_modbus", main))
