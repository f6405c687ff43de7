"""``btms-gateway export ede`` and ``export bacnet-objects``: documents
printed from the table the device serves (objects.py), for a configured
plant (``-c FILE``) or, without one, a reference plant of one UPS and one
string of 120 cells."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .ede import ede_lines, state_text_lines
from .listing import objects_csv, objects_markdown
from .objects import Layout, Point, TableError
from .service import points_for
from .settings import BacnetSettings

REFERENCE_LAYOUT = Layout(ups=(("UPS1", 1),), strings=(("S1", 1, "UPS1"),))


def plant_points(config: Path | None) -> tuple[BacnetSettings, list[Point]]:
    """Settings and table rows for the plant in ``config`` (or the reference plant)."""
    if config is None:
        settings = BacnetSettings()
        return settings, points_for(settings, REFERENCE_LAYOUT)
    from btms_gateway.core.config_load import ConfigError
    from btms_gateway.core.plugin_manager import create_manager
    from btms_gateway.core.registry import load_config

    try:
        loaded = load_config(config, create_manager())
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    section = loaded.plugin("bacnet")
    settings = section if isinstance(section, BacnetSettings) else BacnetSettings()
    try:
        return settings, points_for(settings, Layout.from_config(loaded.gateway))
    except TableError as exc:
        click.echo(f"{config}: {exc}", err=True)
        sys.exit(2)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")


CONFIG = click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The gateway's TOML file (default: a reference plant, 1 UPS x 1 string x 120 cells).",
)
OUTPUT = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)


@click.command("ede")
@CONFIG
@OUTPUT
@click.option(
    "--state-texts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the companion EDE state-texts file.",
)
@click.option("--project", help="PROJECT_NAME in the header (default: the device name).")
def ede_command(
    config: Path | None, output: Path | None, state_texts: Path | None, project: str | None
) -> None:
    """The BACnet objects as an EDE file (BIG-EU engineering data exchange, layout 2.3)."""
    settings, points = plant_points(config)
    _write("\r\n".join(ede_lines(settings, points, project=project)) + "\r\n", output)
    if state_texts is not None:
        _write("\r\n".join(state_text_lines(points)) + "\r\n", state_texts)


@click.command("bacnet-objects")
@click.option("--format", "fmt", type=click.Choice(["csv", "md"]), default="md", show_default=True)
@CONFIG
@OUTPUT
def bacnet_objects_command(fmt: str, config: Path | None, output: Path | None) -> None:
    """The BACnet object table: md = the table (docs/bacnet-objects.md), csv = every object."""
    if fmt == "md":
        _write(objects_markdown(), output)
        return
    _, points = plant_points(config)
    _write(objects_csv(points), output)
