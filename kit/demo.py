"""``btms-gateway demo``: a whole battery room on one machine.

Two simulated buses (a pseudo-terminal at 115200 baud and an RS485-to-TCP
converter at 38400 baud) carry four BM-SM strings in two UPS, one string with
the full 120 cells. The gateway polls them through the real RTU link and
engine, with every installed plugin that can run on its defaults (its demo
port on 127.0.0.1), and prints one line per poll.

Everything the demo makes on disk (the pseudo-terminal's link, pysnmp's
engine state and, unless ``--data-dir`` says otherwise, the event log) lives
in one temporary folder, removed when the demo ends however it ends (Ctrl-C,
``--duration``, a failed start). The plant itself is configuration
(core/demo_plant.py), which the exporters document without starting
anything; this module starts its simulators and runs it. The command reaches
the CLI through the kit's plugin (kit/plugin.py), so core never imports the
kit.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from btms_gateway.core.alarm_types import AlarmEvent
from btms_gateway.core.demo_plant import PLANT, bus_section, demo_config
from btms_gateway.core.gateway import Gateway
from btms_gateway.core.hookspecs import hookimpl
from btms_gateway.core.model import StringSnapshot
from btms_gateway.core.plugin_manager import FailureLog, create_manager
from btms_gateway.core.registry import config_sections, validate_config
from btms_gateway.core.runner import run_until_signalled
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.bmsm.simulator.control import ControlServer, Target

from .ports import FreePorts, with_free_ports

log = logging.getLogger("btms_gateway.demo")

ENDPOINT_KEYS = ("host", "port", "address", "tls")


class StatusPrinter:
    """Prints each poll as one line a person can follow (a plugin like any other)."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout

    @hookimpl
    def string_reading(self, string: StringSnapshot) -> None:
        r = string.reading
        stamp = time.strftime("%H:%M:%S")
        if r is None:
            line = f"{stamp}  {string.name:<3} {string.quality.name:<7} (never read)"
        else:
            age = string.age_s() or 0.0
            line = (
                f"{stamp}  {string.name:<3} {string.quality.name:<7} {r.voltage_v:8.2f} V "
                f"{r.current_a:+8.2f} A  SOC {r.soc_pct:3.0f}%  {r.state.name.lower():<15} "
                f"{r.cell_count:3d} cells  age {age:4.1f} s"
            )
        print(line, file=self.out, flush=True)

    @hookimpl
    def alarm_event(self, event: AlarmEvent) -> None:
        print(
            f"{time.strftime('%H:%M:%S')}  ALARM {event.kind.value:<12} {event.severity.name:<8} "
            f"{event.path}  {event.message}",
            file=self.out,
            flush=True,
        )


def start_simulators(
    seed: int, folder: Path, frozen: bool = False
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The PLANT's simulators, started (a pseudo-terminal's link goes into
    ``folder``), and the ``[[buses]]`` entries pointing at them. If one fails
    to start, those already started are stopped. ``frozen``: values stay as
    they start (tests compare them exactly)."""
    sims: list[Any] = []
    buses = []
    try:
        for bus, transport, baud, strings in PLANT:
            modes = {mode for *_, mode in strings}
            sim = Simulator(
                [s[1] for s in strings],
                {s[1]: s[2] for s in strings},
                baud=baud,
                seed=seed,
                transport=transport,
                link=str(folder / bus) if transport == "pty" else None,
                mode=modes.pop(),
                frozen=frozen,
            ).start()
            sims.append(sim)
            where = sim.tcp_address if transport == "tcp" else sim.port
            buses.append(bus_section(bus, transport, baud, where))
    except BaseException:
        for sim in sims:
            sim.stop()
        raise
    return sims, buses


def endpoints(loaded: Any) -> list[str]:
    lines = []
    for name, settings in sorted(loaded.plugins.items()):
        if name == "demo-status":
            continue
        values = settings.model_dump()
        shown = {k: values[k] for k in ENDPOINT_KEYS if k in values and values[k] is not None}
        tls = shown.pop("tls", None)
        where = " ".join(f"{k}={v}" for k, v in shown.items()) or "(no network endpoint)"
        if isinstance(tls, dict) and tls.get("enabled"):
            where += f" tls-port={tls.get('port')}"
        lines.append(f"  {name:<12} {where}")
    return lines


@click.command()
@click.option("--seed", default=1, show_default=True, help="Simulator seed (same seed, same run).")
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the event log goes (default: a temporary folder, removed at exit).",
)
@click.option(
    "--free-ports",
    is_flag=True,
    help="Every listener on a free port of 127.0.0.1 instead of its default "
    "(another gateway or demo holds the defaults); the ports are printed.",
)
def demo(seed: int, duration: float | None, data_dir: str | None, free_ports: bool) -> None:
    """Run the gateway on simulated strings: 2 UPS, 4 strings (one of 120 cells),
    every plugin on its demo port on 127.0.0.1 (or on free ports)."""
    folder = Path(tempfile.mkdtemp(prefix="btms-demo-"))
    # pysnmp keeps its engine's boot count under gettempdir() (__pysnmp/ENGINE-ID/):
    # in the demo's folder, it goes with the rest
    tempdir, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        data = Path(data_dir) if data_dir else None
        sys.exit(run_demo(seed, duration, data, folder, free_ports))
    finally:
        tempfile.tempdir = tempdir
        shutil.rmtree(folder, ignore_errors=True)


def run_demo(
    seed: int, duration: float | None, data_dir: Path | None, folder: Path, free_ports: bool = False
) -> int:
    """The demo in ``folder``, a temporary folder the caller removes; the exit status.
    ``free_ports``: the listeners the demo would put on their defaults get free ports."""
    pm = create_manager()
    sims, buses = start_simulators(seed, folder)
    control = None
    try:
        targets = {
            name: Target(sim, slave)
            for sim, (_, _, _, strings) in zip(sims, PLANT, strict=True)
            for name, slave, _, _ in strings
        }
        control = ControlServer(folder / "control.sock", targets).start()
        left_out: dict[str, str] = {}
        data = demo_config(buses, str(data_dir or folder / "var"), pm, left_out)
        if free_ports:
            sections = config_sections(pm, FailureLog())
            # a plugin that may be left out of the demo (``demo_unavailable``) is a
            # client: its port is its server's, not one to move
            listeners = {
                name: section
                for name, section in data["plugins"].items()
                if not hasattr(sections.get(name), "demo_unavailable")
            }
            data["plugins"] |= with_free_ports(listeners, sections, FreePorts())
        pm.register(StatusPrinter(), name="demo-status")
        data["plugins"]["demo-status"] = {}
        loaded = validate_config(data, "<demo>", pm)
        gateway = Gateway(loaded, pm, demo=True)
        click.echo("btms-gateway demo: 2 UPS, 4 simulated BM-SM strings")
        for bus, sim in zip(buses, sims, strict=True):
            where = sim.port if "port" in bus else f"{bus['host']}:{bus['tcp_port']}"
            click.echo(f"  bus {bus['name']:<9} {bus['baudrate']:>6} baud  {where}")
        if data_dir is None:
            click.echo(f"  event log {folder / 'var'} (removed at exit; --data-dir keeps one)")
        else:
            click.echo(f"  event log {data_dir}")
        click.echo("serving:")
        for line in endpoints(loaded):
            click.echo(line)
        for name, reason in sorted(left_out.items()):
            click.echo(f"  {name:<12} off: {reason}")
        click.echo(
            f"simulator control: btms-gateway simulate-control --socket {control.path} "
            "discharge --string A1 --current 50   (or force-alarm, stop, status)"
        )
        click.echo("Ctrl-C stops.")
        return run_until_signalled(gateway, stop_after=duration)
    finally:
        if control is not None:
            control.stop()
        for sim in sims:
            sim.stop()
