"""``btms-gateway simulate``: BM-SM string masters for bench-testing a gateway
or a SCADA without hardware. Runs until interrupted (or for --duration).
``btms-gateway simulate-control``: start a discharge or force an alarm in a
running simulator or demo (control.py)."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from btms_gateway.core.api import BAUD_RATES

from ..cli_options import map_or_exit, overrides_option
from .control import FORCINGS, ControlServer, Target, request
from .faults import Fault, parse_rates
from .server import Simulator

F = TypeVar("F", bound=Callable[..., Any])


def _slaves(value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected ids like 1,2,3, found {value!r}") from None
    if not ids or any(not 1 <= i <= 247 for i in ids) or len(set(ids)) != len(ids):
        raise click.BadParameter(f"expected distinct slave ids 1..247, found {value!r}")
    return ids


def _cells(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        cells = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected cells like 17,58, found {value!r}") from None
    if any(not 1 <= c <= 120 for c in cells):
        raise click.BadParameter(f"expected cells 1..120, found {value!r}")
    return cells


def _duration(flag: str, default: float, most: float, help: str) -> Callable[[F], F]:
    """An option for a time (seconds or milliseconds, as its name says)."""
    return click.option(
        flag, type=click.FloatRange(0, most), default=default, show_default=True, help=help
    )


@click.command()
@click.option("--slaves", default="1", show_default=True, help="Slave ids, comma separated.")
@click.option("--cells", type=click.IntRange(0, 120), default=120, show_default=True)
@click.option(
    "--baud", type=click.Choice([str(b) for b in BAUD_RATES]), default="9600", show_default=True
)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--stopbits", type=click.Choice(["1", "2"]), default="1", show_default=True)
@click.option("--pty", "use_pty", is_flag=True, help="Create a pseudo-terminal pair (default).")
@click.option("--link", help="With --pty: keep a symlink at this path pointing at the pty.")
@click.option("--port", help="Serve on an existing serial device, e.g. /dev/ttyUSB1.")
@click.option(
    "--tcp", help="Serve RTU over TCP on HOST:PORT (like an RS485-to-Ethernet converter)."
)
@click.option(
    "--mode", type=click.Choice(["float", "discharge"]), default="float", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same run.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=RATE",
    help=f"Fault probability per request; NAME one of {', '.join(f.value for f in Fault)}."
    " Repeatable.",
)
@_duration("--vanish-s", 5.0, 3600, "How long a 'vanish' fault keeps a slave silent.")
@_duration("--late-ms", 250.0, 60_000, "How much later than the wire allows a 'late' fault's "
           "reply leaves.")  # fmt: skip
@_duration("--reply-delay-ms", 0.0, 60_000, "Every reply leaves this much later than the wire "
           "allows (a slow device).")  # fmt: skip
@_duration("--unmeasured-s", 0.0, 3600, "Cells a 'cell_count' fault adds read 0 this long "
           "(not measured yet).")  # fmt: skip
@click.option(
    "--past-count",
    type=click.Choice(["zero", "exception"]),
    default="zero",
    show_default=True,
    help="Registers past the cell count read 0 or answer exception 02.",
)
@click.option("--frozen", is_flag=True, help="No slow dynamics: values stay as generated.")
@click.option(
    "--weak-cells", type=_cells, default=None,
    help="Weak cells (1-based, e.g. 17,58): less capacity, more resistance (default: one drawn).",
)  # fmt: skip
@click.option(
    "--rated-ah", type=click.FloatRange(0.1, 10_000), default=100.0, show_default=True,
    help="Each string's capacity to 1.75 V at the 10-hour rate (discharges run from it).",
)  # fmt: skip
@click.option(
    "--control", type=click.Path(dir_okay=False, path_type=Path),
    help="A UNIX socket for `btms-gateway simulate-control` (strings named by slave id).",
)  # fmt: skip
@overrides_option("Serve the register map of this override file (a firmware that differs).")
@click.option(
    "--duration",
    type=click.FloatRange(0),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
def simulate(
    slaves: str, cells: int, baud: str, parity: str, stopbits: str, use_pty: bool,
    link: str | None, port: str | None, tcp: str | None,
    mode: Literal["float", "discharge"], seed: int,
    faults: tuple[str, ...], vanish_s: float, late_ms: float, reply_delay_ms: float,
    unmeasured_s: float, past_count: Literal["zero", "exception"], frozen: bool,
    weak_cells: list[int] | None, rated_ah: float, control: Path | None,
    overrides: Path | None, duration: float | None,
) -> None:  # fmt: skip
    """Simulate BM-SM string masters speaking Modbus RTU at real wire speed."""
    if sum(bool(x) for x in (use_pty, port, tcp)) > 1:
        raise click.UsageError("choose one of --pty, --port, --tcp")
    try:
        rates = parse_rates(list(faults))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    regmap = map_or_exit(overrides)
    host, tcp_port = "127.0.0.1", 0
    if tcp:
        host, _, p = tcp.rpartition(":")
        if not host or not p.isdigit() or not 0 <= int(p) <= 65535:
            raise click.BadParameter(f"expected HOST:PORT, found {tcp!r}", param_hint="--tcp")
        tcp_port = int(p)
    sim = Simulator(
        _slaves(slaves), cells, baud=int(baud), parity=parity, stopbits=int(stopbits),
        seed=seed, mode=mode, transport="tcp" if tcp else "serial" if port else "pty",
        port=port, link=link, host=host, tcp_port=tcp_port, rates=rates, vanish_s=vanish_s,
        late_s=late_ms / 1000, unmeasured_s=unmeasured_s, reply_delay_s=reply_delay_ms / 1000,
        past_count=past_count, frozen=frozen, regmap=regmap,
        weak_cells=weak_cells, rated_ah=rated_ah,
    )  # fmt: skip
    try:
        sim.start()
    except OSError as exc:
        raise click.ClickException(f"cannot start the simulator: {exc}") from None
    server = None
    if control is not None:
        targets = {str(s): Target(sim, s) for s in _slaves(slaves)}
        try:
            server = ControlServer(control, targets).start()
        except OSError as exc:
            sim.stop()
            raise click.ClickException(f"cannot listen on {control}: {exc}") from None
        click.echo(f"control: btms-gateway simulate-control --socket {control} ... --string 1")
    where = "RTU over TCP on" if tcp else "serial port"
    click.echo(f"BM-SM simulator: slaves {slaves}, {cells} cells, {baud} {parity}{8}{stopbits}")
    if not regmap.is_default:
        click.echo(f"register map: the overrides in {regmap.source}")
    click.echo(f"{where}: {sim.port}")
    click.echo(f"gateway config: port = \"{sim.port}\"" if not tcp else
               f"gateway config: transport = \"rtu-over-tcp\", host = \"{host}\", "
               f"tcp_port = {sim.tcp_address[1]}")  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait(duration)
    finally:
        if server is not None:
            server.stop()
        sim.stop()
        r = sim.responder
        faults_seen = {f.value: n for f, n in r.faults.items() if n}
        click.echo(f"served {r.requests} requests; faults {faults_seen or 'none'}")


def _find_socket(path: Path | None) -> Path:
    """The socket given, $BTMS_SIM_CONTROL, or the one running demo's."""
    if path is not None:
        return path
    env = os.environ.get("BTMS_SIM_CONTROL")
    if env:
        return Path(env)
    found = sorted(Path(tempfile.gettempdir()).glob("btms-demo-*/control.sock"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise click.UsageError("no running demo found: give --socket PATH (the demo prints it)")
    raise click.UsageError(f"{len(found)} demos are running: give --socket PATH")


def _send(ctx: click.Context, req: dict[str, Any]) -> None:
    path = _find_socket(ctx.obj.get("socket"))
    try:
        answer = request(path, req)
    except OSError as exc:
        raise click.ClickException(f"cannot reach the simulator at {path}: {exc}") from None
    if "strings" in answer:
        click.echo(json.dumps(answer["strings"], indent=2))
    else:
        click.echo(answer.get("result") or answer.get("error") or answer)
    if not answer.get("ok"):
        sys.exit(1)


@click.group("simulate-control")
@click.option(
    "--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
    help="The control socket (default: $BTMS_SIM_CONTROL, or the running demo's).",
)  # fmt: skip
@click.pass_context
def simulate_control(ctx: click.Context, socket_path: Path | None) -> None:
    """Drive a running simulator or demo: discharges, forced alarms."""
    ctx.ensure_object(dict)["socket"] = socket_path


@simulate_control.command("status")
@click.pass_context
def control_status(ctx: click.Context) -> None:
    """Each simulated string: voltage, current, weak cells, a discharge running."""
    _send(ctx, {"command": "status"})


@simulate_control.command("discharge")
@click.option("--string", "name", required=True, help="The string (demo name, or slave id).")
@click.option("--current", type=click.FloatRange(0, 1000, min_open=True), required=True,
              help="Discharge current, A.")  # fmt: skip
@click.option("--duration", type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds (default: at the end voltage).")  # fmt: skip
@click.option("--cutoff-v", type=click.FloatRange(1.6, 2.0), default=1.75, show_default=True,
              help="End voltage per cell: stops when the string reaches cells x this.")  # fmt: skip
@click.pass_context
def control_discharge(
    ctx: click.Context, name: str, current: float, duration: float | None, cutoff_v: float
) -> None:
    """Start a lead-acid discharge at a constant current (the mains fail)."""
    req = {"command": "discharge", "string": name, "current_a": current, "cutoff_v": cutoff_v}
    if duration is not None:
        req["duration_s"] = duration
    _send(ctx, req)


@simulate_control.command("stop")
@click.option("--string", "name", required=True)
@click.pass_context
def control_stop(ctx: click.Context, name: str) -> None:
    """End the running discharge (the mains are back)."""
    _send(ctx, {"command": "stop", "string": name})


@simulate_control.command("force-alarm")
@click.argument("alarm", type=click.Choice(sorted(FORCINGS)))
@click.option("--string", "name", required=True)
@click.option("--cell", type=click.IntRange(1, 120), default=1, show_default=True)
@click.option("--clear", is_flag=True, help="Put the values back.")
@click.pass_context
def control_force(ctx: click.Context, alarm: str, name: str, cell: int, clear: bool) -> None:
    """Set the simulated values past the gateway's default limit of ALARM
    (a rule name), or put them back with --clear."""
    _send(ctx, {"command": "force-alarm", "string": name, "alarm": alarm, "cell": cell,
                "clear": clear})  # fmt: skip
