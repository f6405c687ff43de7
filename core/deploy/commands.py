"""``btms-gateway service install | uninstall | show``."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import click

from ..cli_options import EXIT_CONFIG, folder_option
from ..config_load import ConfigError, LoadedConfig
from ..plugin_manager import create_manager
from ..registry import load_config, validate_config
from .install import (
    DEFAULT_CONFIG,
    DEFAULT_UNIT_DIR,
    InstallError,
    Report,
    default_executable,
    install,
    sample_config,
    uninstall,
)
from .unit import render

config_option = click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The site's config file (as the target system sees it).",
)
root_option = folder_option(
    "--root", help="Write under this directory instead of / (an image being built, a test)."
)
unit_dir_option = folder_option(
    "--unit-dir", default=DEFAULT_UNIT_DIR, help="Where the unit goes (inside --root if given)."
)
exec_option = click.option(
    "--exec",
    "executable",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The btms-gateway command the unit starts [default: the one running this].",
)


def load(path: Path) -> LoadedConfig:
    return load_config(path, create_manager())


def load_sample() -> LoadedConfig:
    return validate_config(tomllib.loads(sample_config()), "<sample>", create_manager())


def echo_report(report: Report) -> None:
    for line in report.done + report.notes:
        click.echo(line)
    if report.next_steps:
        click.echo("next:")
        for step in report.next_steps:
            click.echo(f"  {step}")


def cannot_write(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror} (run as root, or give --root DIR)"


@click.group()
def service() -> None:
    """Run the gateway as a systemd service (docs/deployment.md)."""


@service.command("install")
@config_option
@root_option
@unit_dir_option
@exec_option
@click.option("--force", is_flag=True, help="Replace a unit file not written by btms-gateway.")
def install_command(
    config: Path, root: Path | None, unit_dir: Path, executable: Path | None, force: bool
) -> None:
    """Write the unit (and a sample CONFIG if there is none); print the next steps.

    The unit's capabilities and device rules follow CONFIG's ports and serial
    buses: run this again after changing them."""
    try:
        report = install(
            load, config=config, unit_dir=unit_dir, root=root, executable=executable, force=force
        )
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    except InstallError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(cannot_write(exc)) from None
    echo_report(report)


@service.command("uninstall")
@root_option
@unit_dir_option
@click.option("--force", is_flag=True, help="Remove even if enabled or not ours.")
def uninstall_command(root: Path | None, unit_dir: Path, force: bool) -> None:
    """Remove the unit; the config and the data stay."""
    try:
        echo_report(uninstall(unit_dir=unit_dir, root=root, force=force))
    except InstallError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(cannot_write(exc)) from None


@service.command("show")
@config_option
@exec_option
def show_command(config: Path, executable: Path | None) -> None:
    """Print the unit that `install` would write for CONFIG (for the sample
    config if CONFIG does not exist yet)."""
    try:
        if config.exists():
            loaded = load(config)
        else:
            click.echo(f"# {config} does not exist: the unit for the sample config", err=True)
            loaded = load_sample()
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    unit = render(loaded, config_path=config, executable=executable or default_executable())
    click.echo(unit.text, nl=False)
    for note in unit.notes:
        click.echo(f"# note: {note}", err=True)


def add_to(cli: click.Group) -> None:
    cli.add_command(service)
