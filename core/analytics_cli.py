"""``btms-gateway discharges list|show`` and ``btms-gateway resistance``: the
analytics' records from the command line, read from the files of a
configuration's ``data_dir`` (the gateway may be running: SQLite's WAL lets
a reader in beside the writer)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .alarms_cli import iso
from .analytics.store import FILE_NAME, DischargeStore
from .cli_options import load_or_exit
from .config import GatewayConfig
from .plugin_manager import create_manager


def load_settings(config: Path) -> GatewayConfig:
    """The validated core configuration of ``config`` (exit 2 on a problem)."""
    return load_or_exit(config, create_manager()).gateway


def _store(config: Path) -> DischargeStore:
    path = Path(load_settings(config).gateway.data_dir) / FILE_NAME
    if not path.exists():
        raise click.ClickException(f"no discharges recorded yet ({path} does not exist)")
    return DischargeStore(path, readonly=True)


_config = click.option(
    "-c",
    "--config",
    "config",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The gateway's TOML file (its gateway.data_dir holds the records).",
)


@click.group()
def discharges() -> None:
    """Discharges the gateway captured: when, how long, Ah, Wh, the weakest cells."""


@discharges.command("list")
@_config
@click.option("--string", help="Only this string's.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def discharges_list(config: Path, string: str | None, limit: int, as_json: bool) -> None:
    """Newest first."""
    store = _store(config)
    try:
        rows = store.list(string, limit=limit)
    finally:
        store.close()
    if not rows and not as_json:
        click.echo("no discharges")
    for s in rows:
        if as_json:
            click.echo(json.dumps({k: v for k, v in s.to_json().items() if k != "cells"}))
            continue
        weakest = ",".join(str(c) for c in s.weakest[:5])
        click.echo(
            f"{s.id:>5} {s.string:<10} {iso(s.start)}  {s.duration_s / 60:7.1f} min "
            f"{s.ah:8.2f} Ah {s.wh / 1000:7.2f} kWh  lowest {s.lowest_voltage_v:7.2f} V"
            f"{' CUTOFF' if s.reached_cutoff else '       '}  weakest {weakest}"
        )


@discharges.command("show")
@click.argument("event_id", type=int)
@_config
@click.option("--json", "as_json", is_flag=True)
def discharges_show(event_id: int, config: Path, as_json: bool) -> None:
    """One discharge with every cell, weakest first."""
    store = _store(config)
    try:
        s = store.get(event_id)
    finally:
        store.close()
    if s is None:
        raise click.ClickException(f"no discharge {event_id}")
    if as_json:
        click.echo(json.dumps(s.to_json(), indent=2))
        return
    reached = "reached" if s.reached_cutoff else "not reached"
    click.echo(
        f"discharge {s.id}: string {s.string}, {iso(s.start)} .. {iso(s.end)} "
        f"({s.duration_s / 60:.1f} min)\n"
        f"  {s.ah:.2f} Ah, {s.wh / 1000:.3f} kWh, mean {s.mean_current_a:.1f} A"
        f"{f', depth of discharge {s.dod_pct:.1f} %' if s.dod_pct is not None else ''}\n"
        f"  string {s.start_voltage_v:.2f} V -> lowest {s.lowest_voltage_v:.2f} V "
        f"(end voltage {s.string_cutoff_v:.2f} V: {reached})"
    )
    click.echo(" rank cell  start V  lowest V  end V  drop V/h  to cutoff")
    for c in sorted(s.cells, key=lambda c: c.rank):
        cut = f"{c.cutoff_s / 60:.1f} min" if c.cutoff_s is not None else "-"
        drop = f"{c.drop_v_per_h:.3f}" if c.drop_v_per_h is not None else "-"
        click.echo(
            f" {c.rank:>4} {c.cell:>4}  {c.start_v:7.3f}  {c.lowest_v:8.3f}  {c.end_v:5.3f}"
            f"  {drop:>8}  {cut}"
        )


@click.command("resistance")
@click.argument("string")
@_config
@click.option("--json", "as_json", is_flag=True)
def resistance(string: str, config: Path, as_json: bool) -> None:
    """Each cell of STRING: resistance against its baseline and the string
    median, its trend (mOhm per month) and when it crosses the alarm limit."""
    from .analytics.health import from_files
    from .history import QueryError

    settings = load_settings(config)
    try:
        h = from_files(Path(settings.gateway.data_dir), settings, string)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(h.to_json(), indent=2))
        return
    median = f"{h.median_mohm:.3f} mOhm" if h.median_mohm is not None else "-"
    click.echo(
        f"string {string}: median {median}; limits +{h.warning_pct:g} / +{h.alarm_pct:g} % over "
        f"baseline, +{h.median_warning_pct:g} / +{h.median_alarm_pct:g} % over the median"
    )
    click.echo(" cell     mOhm  baseline  source   vs base  vs median  mOhm/month  crosses  status")
    for c in h.cells:
        click.echo(
            f" {c.cell:>4} {_n(c.mohm, 3):>8} {_n(c.baseline_mohm, 3):>9}  "
            f"{c.baseline_source or '-':<7} {_n(c.vs_baseline_pct, 1, '%'):>8} "
            f"{_n(c.vs_median_pct, 1, '%'):>10} {_n(c.trend_mohm_per_month, 4):>11}  "
            f"{iso(c.crosses_at)[:10] or '-':<8} {c.status}"
        )


def _n(x: float | None, digits: int, unit: str = "") -> str:
    return "-" if x is None else f"{x:+.{digits}f}{unit}" if unit else f"{x:.{digits}f}"


def add_to(cli: click.Group) -> None:
    cli.add_command(discharges)
    cli.add_command(resistance)
