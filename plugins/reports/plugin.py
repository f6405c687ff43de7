"""The reports plugin: registers its two reports (``register_reports``) and
the ``btms-gateway report`` commands (``register_commands``), through the
same hooks a third party uses. matplotlib (the ``reports`` extra) is
imported only when a report is made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from btms_gateway.core.api import ReportError, ReportSource, hookimpl

from .discharge import discharge_report
from .health import health_report

KINDS: dict[str, Callable[..., Any]] = {"discharge": discharge_report, "health": health_report}


@hookimpl
def register_reports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    for kind, generator in KINDS.items():
        register(kind, generator)


def _write(kind: str, subject: str, config: Path, output: Path, formats: tuple[str, ...]) -> None:
    source = ReportSource.from_config_file(config)
    output.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        try:
            report = KINDS[kind](source, subject, fmt)
        except ReportError as exc:
            raise click.ClickException(str(exc)) from None
        path = output / report.filename
        path.write_bytes(report.data)
        click.echo(f"{path} ({len(report.data) // 1024} kB)")


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--format", "formats", multiple=True, type=click.Choice(["html", "pdf"]),
        default=("html", "pdf"), show_default=True, help="Repeatable; both by default.",
    )(f)  # fmt: skip
    f = click.option(
        "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
        show_default=True, help="The folder the files go to.",
    )(f)  # fmt: skip
    return click.option(
        "-c", "--config", "config", required=True,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The gateway's TOML file (its data_dir holds history and discharges).",
    )(f)  # fmt: skip


@click.group("report")
def report_group() -> None:
    """Reports an engineer signs: an HTML page and a PDF with plots and tables."""


@report_group.command("discharge")
@click.argument("event_id")
@_options
def report_discharge(event_id: str, config: Path, output: Path, formats: tuple[str, ...]) -> None:
    """The discharge EVENT_ID (see `btms-gateway discharges list`): every
    cell's curve, end voltages against the cutoff, every cell ranked."""
    _write("discharge", event_id, config, output, formats)


@report_group.command("health")
@click.option("--string", "name", required=True, help="The string.")
@_options
def report_health(name: str, config: Path, output: Path, formats: tuple[str, ...]) -> None:
    """The resistance health of a string: against baseline and median, trends."""
    _write("health", name, config, output, formats)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(report_group)
