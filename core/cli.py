"""The ``btms-gateway`` command line. Plugins add commands through
``register_commands(cli)``; documentation exporters go under ``export``."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .config_load import ConfigError
from .plugin_manager import LOAD_FAILURES, FailureLog, call_each, create_manager, plugin_infos
from .registry import load_config
from .version import __version__

if TYPE_CHECKING:
    from .gateway import Gateway

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXIT_CONFIG = 2


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="btms-gateway")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging threshold (to stderr).",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """BTMS battery monitoring gateway: BM-SM string masters (Modbus RTU) in;
    Modbus TCP, SNMP, BACnet/IP and more out."""
    setup_logging(log_level)
    ctx.ensure_object(dict)


@cli.group()
def export() -> None:
    """Print maps, MIBs and object lists generated from the tables the servers use."""


@cli.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config(file: Path) -> None:
    """Validate FILE; print every problem as `FILE: key.path: expected, found` (exit 2)."""
    try:
        loaded = load_config(file, create_manager())
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    g = loaded.gateway
    click.echo(
        f"{file}: OK: {len(g.buses)} bus(es), {len(g.ups)} UPS, {len(g.strings)} "
        f"string(s), plugins {sorted(loaded.enabled_plugins()) or 'none'}"
    )


@cli.command()
@click.option(
    "-c",
    "--config",
    "file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's TOML file.",
)
def run(file: Path) -> None:
    """Run the gateway with the configuration in FILE."""
    pm = create_manager()
    try:
        loaded = load_config(file, pm)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    from .gateway import Gateway

    sys.exit(run_until_signalled(Gateway(loaded, pm)))


def freeze_startup_objects() -> None:
    """Move everything built at start-up (imports, configuration, the plugins'
    object tables: 23,000 BACnet objects, the SNMP index, register images) out
    of the cyclic garbage collector's sight. They live as long as the process,
    yet every full collection walked them all: 110 ms measured at full scale,
    a stall of the event loop that stretched bus cycles and so the age of the
    served data. Objects made later are collected as usual; refcounting still
    frees frozen objects that are dropped."""
    gc.collect()
    gc.freeze()


def run_until_signalled(gateway: Gateway, stop_after: float | None = None) -> int:
    """Run a gateway until SIGINT/SIGTERM (or ``stop_after`` seconds); 0 on a
    clean stop, 1 if it could not start."""
    from .affinity import pin_process
    from .gateway import GatewayStartError

    pin_process(gateway.settings.gateway.cpu)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, gateway.request_stop)
        if stop_after is not None:
            loop.call_later(stop_after, gateway.request_stop)
        running = asyncio.create_task(gateway.run(), name="gateway")
        ready = asyncio.create_task(gateway.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            freeze_startup_objects()
        else:
            ready.cancel()
        await running

    try:
        asyncio.run(main())
    except GatewayStartError as exc:
        logging.getLogger("btms_gateway").error("%s", exc)
        return 1
    return 0


@cli.command()
def plugins() -> None:
    """List the installed plugins, their versions and the hooks they implement."""
    for info in plugin_infos(create_manager()):
        dist = f"{info.distribution} {info.version}" if info.distribution else "-"
        click.echo(f"{info.name:<16} {dist:<28} {', '.join(info.hooks)}")
    for name, why in sorted(LOAD_FAILURES.items()):
        click.echo(f"{name:<16} {'NOT LOADED':<28} {why}")


def build_cli() -> click.Group:
    """The root group with every plugin's commands added (a failing plugin is
    logged and skipped, so one broken plugin cannot take the CLI down)."""
    from .alarms.cli import add_to as add_alarm_commands
    from .demo import demo
    from .history.cli import history

    add_alarm_commands(cli)
    cli.add_command(history)
    cli.add_command(demo)
    call_each(create_manager(), "register_commands", FailureLog(), cli=cli)
    return cli


def main() -> None:
    build_cli()(prog_name="btms-gateway")
