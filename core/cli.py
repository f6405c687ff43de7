"""The ``btms-gateway`` command line. Plugins add commands through
``register_commands(cli)``; documentation exporters go under ``export``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pluggy

from .alarms import storage
from .alarms.eventlog import EventLogError
from .alarms_cli import add_to as add_alarm_commands
from .analytics_cli import add_to as add_analytics_commands
from .backup.cli import add_to as add_backup_commands
from .cli_options import EXIT_CONFIG, load_or_exit
from .config_load import ConfigError, LoadedConfig
from .datadir import with_data_dir
from .deploy.commands import add_to as add_service_commands
from .deploy.journal import stderr_handler
from .gateway import Gateway
from .history_cli import history
from .plugin_manager import LOAD_FAILURES, FailureLog, call_each, create_manager, plugin_infos
from .registry import load_config
from .runner import ConfigSource, run_until_signalled
from .version import __version__

__all__ = ["build_cli", "cli", "main"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[stderr_handler()])


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


def config_file_arguments(f: Callable[..., Any]) -> Callable[..., Any]:
    """The gateway's TOML file, as ``FILE`` or as ``-c FILE``: every command
    that takes it accepts both forms (see :func:`config_file`)."""
    path = click.Path(dir_okay=False, path_type=Path)
    f = click.argument("file", required=False, type=path)(f)
    return click.option(
        "-c", "--config", "config", type=path, help="The gateway's TOML file (or give it as FILE)."
    )(f)


def config_file(file: Path | None, config: Path | None) -> Path:
    """The one file given, in either form; a usage error (exit 2) for none or two."""
    if file is not None and config is not None and file != config:
        raise click.UsageError(f"two configuration files given ({config} and {file}): give one")
    if file is not None:
        return file
    if config is not None:
        return config
    raise click.UsageError("give the gateway's TOML file, as FILE or -c FILE")


@cli.command("check-config")
@config_file_arguments
def check_config(file: Path | None, config: Path | None) -> None:
    """Validate FILE (or -c FILE); print every problem as
    `FILE: key.path: expected, found` (exit 2)."""
    file = config_file(file, config)
    loaded = load_or_exit(file, create_manager())
    try:
        check_storage(file, loaded)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    g = loaded.gateway
    click.echo(
        f"{file}: OK: {len(g.buses)} bus(es), {len(g.ups)} UPS, {len(g.strings)} "
        f"string(s), plugins {sorted(loaded.enabled_plugins()) or 'none'}"
    )


@cli.command()
@config_file_arguments
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use this directory instead of gateway.data_dir (the service passes its StateDirectory).",
)
def run(file: Path | None, config: Path | None, data_dir: Path | None) -> None:
    """Run the gateway with the configuration in FILE (or -c FILE) until
    SIGINT/SIGTERM; SIGHUP reloads FILE (a bad file is logged and the running
    configuration kept)."""
    file = config_file(file, config)
    pm = create_manager()
    source = ConfigSource(
        file,
        lambda: with_data_dir(load_config(file, pm), data_dir),
        lambda loaded: open_gateway(file, loaded, pm),
    )
    try:
        gateway = source.build(source.load())
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    sys.exit(run_until_signalled(gateway, source=source))


def check_storage(file: Path, loaded: LoadedConfig) -> None:
    """check-config's look at data_dir: writable (nothing left behind) and
    its event log intact (opened read-only). Raises ConfigError."""

    found = storage.problems(loaded.gateway.gateway.data_dir)
    if found:
        raise ConfigError(str(file), found)


def open_gateway(file: Path, loaded: LoadedConfig, pm: pluggy.PluginManager) -> Gateway:
    """The gateway of a valid config, or ConfigError naming gateway.data_dir
    when it cannot hold the event log (a file, read-only, full, damaged):
    said like any config problem, never a traceback."""

    found = storage.problems(loaded.gateway.gateway.data_dir, create=True)
    if found:
        raise ConfigError(str(file), found)
    try:
        return Gateway(loaded, pm)
    except (OSError, EventLogError) as exc:
        raise ConfigError(str(file), [storage.problem_of(exc)]) from None


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

    add_alarm_commands(cli)
    add_analytics_commands(cli)
    add_backup_commands(cli)
    add_service_commands(cli)
    cli.add_command(history)
    call_each(create_manager(), "register_commands", FailureLog(), cli=cli)
    return cli


def main() -> None:
    build_cli()(prog_name="btms-gateway")
