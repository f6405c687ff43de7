"""``btms-gateway history``: what the history file holds, and exports of it.

Runs in its own process beside the gateway: reads open the SQLite file
read-only (WAL lets them run while the gateway writes). The file is
``<gateway.data_dir>/history.sqlite`` of ``-c CONFIG``, or ``--db PATH``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .alarms_cli import db_path, iso, parse_time
from .config_load import ConfigError
from .history.config import HistorySection
from .history.export import ExportError, export
from .history.quantities import RECORDED
from .history.query import RESOLUTIONS, HistoryQueries, QueryError, parse_cells
from .history.store import FILE_NAME, connect
from .plugin_manager import create_manager
from .registry import load_settings

#: where the history file is: a config's data_dir, or the file itself
_WHERE = (
    click.option(
        "-c",
        "--config",
        "config",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The gateway's TOML file (its gateway.data_dir holds history.sqlite).",
    ),
    click.option(
        "--db", "db", type=click.Path(dir_okay=False, path_type=Path), help="The history file."
    ),
)


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_WHERE):
        f = option(f)
    return f


def open_queries(config: Path | None, db: Path | None) -> HistoryQueries:
    settings = HistorySection()
    if db is None:
        path = db_path(config, None).with_name(FILE_NAME)
        settings = _settings(config)
    else:
        path = db
    if not path.exists():
        raise click.ClickException(f"no history at {path} (has the gateway recorded yet?)")
    return HistoryQueries(path, settings)


def _settings(config: Path | None) -> HistorySection:
    if config is None:
        return HistorySection()
    try:
        return load_settings(config, create_manager()).gateway.history
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _cells(text: str | None) -> list[int] | None:
    try:
        return parse_cells(text)
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def history() -> None:
    """Inspect and export the history of every string and cell."""


@history.command()
@_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(config: Path | None, db: Path | None, as_json: bool) -> None:
    """Tiers, the time each spans, and bytes on disk."""
    data = open_queries(config, db).info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['file']}: {data['bytes_on_disk'] / 1e6:.1f} MB on disk "
               f"({data['bytes_free_in_file'] / 1e6:.1f} MB free inside)")  # fmt: skip
    click.echo(f"strings: {', '.join(data['strings']) or 'none'}")
    click.echo(f"{'tier':<8}{'blocks':>8}{'MB':>10}{'B/value':>9}{'pending':>9}  span")
    for t in data["tiers"]:
        mb = (t["block_bytes"] + t["segment_bytes"]) / 1e6
        bpv = f"{t['bytes_per_value']:.3f}" if t["bytes_per_value"] is not None else "-"
        span = f"{iso(t['from'])} .. {iso(t['to'])}" if t["from"] is not None else "empty"
        click.echo(f"{t['tier']:<8}{t['blocks']:>8}{mb:>10.2f}{bpv:>9}{t['segments']:>9}  {span}")
    rc = data["resistance_changes"]
    click.echo(f"resistance changes: {rc['count']}; discharge periods: {data['discharges']}")
    r = data["retention"]
    click.echo(
        f"retention: raw {r['raw_hours']:g} h, minutes {r['minute_days']:g} d, hours "
        f"{r['hour_days']:g} d; budget {r['budget_mb']:g} MB"
    )


@history.command("export")
@_options
@click.option("--from", "start", default="24h", show_default=True,
              help="ISO 8601 (UTC), epoch seconds, or an age (2h, 7d).")  # fmt: skip
@click.option("--to", "end", help="Before this time (same forms; default now).")
@click.option("--string", "strings", multiple=True, help="Only these strings (repeatable).")
@click.option(
    "--quantity",
    "quantities",
    multiple=True,
    type=click.Choice(list(RECORDED)),
    help="Quantities (repeatable; default: every one).",
)
@click.option("--cells", help='Cells, e.g. "1-4,7" (default: all).')
@click.option("--resolution", type=click.Choice(RESOLUTIONS), default="auto", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (CSV: stdout)."
)
def export_cmd(
    config: Path | None,
    db: Path | None,
    start: str,
    end: str | None,
    strings: tuple[str, ...],
    quantities: tuple[str, ...],
    cells: str | None,
    resolution: str,
    fmt: str,
    output: Path | None,
) -> None:
    """Write readings as a long table (time, string, quantity, cell, values)."""
    queries = open_queries(config, db)
    a = parse_time(start)
    b = parse_time(end) if end else time.time()
    assert a is not None and b is not None
    names = list(strings) or queries.strings()
    if not names:
        raise click.ClickException("the history holds no string yet")
    try:
        n = export(
            queries,
            output if output is not None else sys.stdout,
            fmt,
            a,
            b,
            names,
            list(quantities) or list(RECORDED),
            _cells(cells),
            resolution,
        )
    except (QueryError, ExportError) as exc:
        raise click.ClickException(str(exc)) from None
    if output is not None:
        click.echo(f"{output}: {n} rows", err=True)


@history.command("delete-discharges")
@_options
@click.option("--before", required=True, help="Discharges that ended before this time.")
@click.option("--string", "strings", multiple=True, help="Only these strings (repeatable).")
def delete_discharges(
    config: Path | None, db: Path | None, before: str, strings: tuple[str, ...]
) -> None:
    """Stop keeping the raw readings of old discharges: they then age out with
    the raw retention like any other (the gateway may be running)."""
    queries = open_queries(config, db)
    t = parse_time(before)
    assert t is not None
    conn = connect(queries.path)
    try:
        with conn:
            names = list(strings) or queries.strings()
            marks = ",".join("?" * len(names))
            n = conn.execute(
                f"DELETE FROM discharges WHERE t1 < ? AND string IN "
                f"(SELECT id FROM strings WHERE name IN ({marks}))",
                (round(t * 1000), *names),
            ).rowcount
    finally:
        conn.close()
    click.echo(f"{n} discharge period(s) before {iso(t)} no longer kept raw")
