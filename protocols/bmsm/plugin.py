"""Registers the BM-SM device profile, the ``simulate`` and ``probe``
commands and the register-table exporter through the same hooks a
third-party plugin uses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from btms_gateway.core.api import ConfigError, DeviceProfile, Problem, exported_plant, hookimpl

from .cli_options import EXIT_USAGE, map_or_exit, overrides_option
from .profile import BmsmProfile, map_for
from .regmap import RegisterMap


@hookimpl
def register_device_profiles(register: Callable[[DeviceProfile], None]) -> None:
    register(BmsmProfile())


@click.command("bmsm-registers")
@click.option(
    "-c", "--config", type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's TOML file: print the effective map of each of its BM-SM strings.",
)  # fmt: skip
@overrides_option("Print the effective map of this override file.")
def export_registers(config: Path | None, overrides: Path | None) -> None:
    """Print the BM-SM register table (markdown, as docs/bmsm-registers.md);
    with -c or --register-overrides, the effective map, overridden rows marked."""
    if config is not None and overrides is not None:
        raise click.UsageError("give -c CONFIG or --register-overrides FILE, not both")
    if config is None:
        click.echo(map_or_exit(overrides).render_markdown(), nl=False)
        return
    try:
        click.echo(_config_maps(config), nl=False)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)


def _config_maps(config: Path) -> str:
    """Each distinct register map of the file's BM-SM strings, once, with
    the strings it is used by (the default table too, when some use it)."""
    loaded = exported_plant(config, demo=False).loaded
    assert loaded is not None  # a file's plant always has its configuration
    groups: dict[int, tuple[RegisterMap, list[str]]] = {}
    for s in loaded.gateway.strings:
        if s.profile != BmsmProfile.name:
            continue
        regmap = map_for(s)
        groups.setdefault(id(regmap), (regmap, []))[1].append(s.name)
    if not groups:
        found = Problem("strings", 'at least one string with profile = "bmsm", found none')
        raise ConfigError(str(config), [found])
    out = []
    for regmap, names in groups.values():
        text = regmap.render_markdown(names)
        if regmap.is_default and len(groups) > 1:
            text = text.replace("\n", f"\n\nUsed by string(s) {', '.join(names)}.\n", 1)
        out.append(text)
    return "\n".join(out)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .probe_cli import probe_command
    from .simulator.cli import simulate, simulate_control

    cli.add_command(simulate)
    cli.add_command(simulate_control)
    cli.add_command(probe_command, "probe")
    export = cli.commands.get("export")
    if isinstance(export, click.Group):
        export.add_command(export_registers)
