"""``btms-gateway export ede`` and ``export bacnet-objects``: documents
printed from the table the device serves (objects.py), for a configured
plant (``-c FILE``), the demo's (``--demo``) or, with neither, a reference
plant of one UPS and one string (core/exported_plant.py). Cell objects follow
the plant's ``cells`` and ``cells_per_string`` settings, as the device does."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from btms_gateway.core.api import ExportedPlant, exported_plant, plant_options

from .ede import ede_lines, state_text_lines
from .listing import objects_csv, objects_markdown
from .objects import Layout, Point, TableError
from .service import points_for
from .settings import BacnetSettings


def plant_points(config: Path | None, demo: bool = False) -> tuple[BacnetSettings, list[Point]]:
    """Settings and table rows for the plant of ``-c FILE`` or ``--demo`` (or the reference)."""
    return points_of(exported_plant(config, demo))


def points_of(plant: ExportedPlant) -> tuple[BacnetSettings, list[Point]]:
    settings = plant.settings("bacnet", BacnetSettings)
    try:
        return settings, points_for(settings, Layout(plant.ups, plant.strings), plant)
    except TableError as exc:
        click.echo(f"{plant.source}: {exc}", err=True)
        sys.exit(2)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")


OUTPUT = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)


@click.command("ede")
@plant_options
@OUTPUT
@click.option(
    "--state-texts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the companion EDE state-texts file.",
)
@click.option("--project", help="PROJECT_NAME in the header (default: the device name).")
def ede_command(
    config: Path | None,
    demo: bool,
    output: Path | None,
    state_texts: Path | None,
    project: str | None,
) -> None:
    """The BACnet objects of a plant as an EDE file (BIG-EU engineering data
    exchange, layout 2.3)."""
    settings, points = plant_points(config, demo)
    _write("\r\n".join(ede_lines(settings, points, project=project)) + "\r\n", output)
    if state_texts is not None:
        _write("\r\n".join(state_text_lines(points)) + "\r\n", state_texts)


@click.command("bacnet-objects")
@click.option("--format", "fmt", type=click.Choice(["csv", "md"]), default="md", show_default=True)
@plant_options
@OUTPUT
def bacnet_objects_command(fmt: str, config: Path | None, demo: bool, output: Path | None) -> None:
    """The BACnet object table: md = the table for any plant (docs/bacnet-objects.md),
    csv = every object of one plant."""
    if fmt == "md":
        if config is not None or demo:
            raise click.UsageError("--format md is the table for any plant: use csv for one plant")
        _write(objects_markdown(), output)
        return
    _, points = plant_points(config, demo)
    _write(objects_csv(points), output)
