"""``btms-gateway events`` and ``btms-gateway alarms``: the event log and active
alarms from the command line.

These run in their own process beside the gateway: reads go straight to the
SQLite file (WAL lets them run while the gateway writes); acknowledging and
capturing a baseline are requests the running gateway applies on its next
tick (see inbox.py), and the command waits for the answer. The db is
``<gateway.data_dir>/events.sqlite`` of ``-c CONFIG``, or ``--db PATH``.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import json
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import click

from .alarm_types import AlarmEvent, EventKind, Severity
from .alarms import baseline, inbox
from .alarms.eventlog import EventLog, EventLogError
from .config_load import ConfigError
from .plugin_manager import create_manager
from .registry import load_settings
from .serialize import event_dict

DB_NAME = "events.sqlite"
EXIT_NOT_APPLIED = 1
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def db_path(config: Path | None, db: Path | None) -> Path:
    """The event log of a config's data_dir, or the file given with --db."""
    if db is not None:
        return db
    if config is None:
        raise click.UsageError("give -c CONFIG (to find gateway.data_dir) or --db PATH")
    try:  # only data_dir is needed: device profiles are not checked here
        loaded = load_settings(config, create_manager())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return Path(loaded.gateway.gateway.data_dir) / DB_NAME


@contextmanager
def open_log(
    config: Path | None, db: Path | None, *, must_exist: bool = True
) -> Iterator[EventLog]:
    """The event log for one command, closed after it. A file that is no usable
    event log (not SQLite at all, or a damaged page met while reading) is one
    error line naming the file, exit 1, never a traceback."""
    path = db_path(config, db)
    if must_exist and not path.exists():
        raise click.ClickException(f"no event log at {path} (has the gateway run yet?)")
    try:
        log = EventLog(path)
    except EventLogError as exc:  # its message names the file
        raise click.ClickException(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"{path}: cannot open the event log ({exc})") from None
    try:
        yield log
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path}: cannot use the event log ({exc})") from None
    finally:
        with suppress(sqlite3.Error):  # closing checkpoints, which a damaged file refuses
            log.close()


def parse_time(text: str | None) -> float | None:
    """ISO 8601 (naive = UTC), seconds since the epoch, or an age like 10m, 2h, 7d."""
    if text is None:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"an ISO time (2026-11-25T06:00), epoch seconds or an age (30m, 2h, 7d); found {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def iso(t: float | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _db_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--db", "db", type=click.Path(dir_okay=False, path_type=Path), help="The event log file."
    )(f)
    return click.option(
        "-c",
        "--config",
        "config",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The gateway's TOML file (its gateway.data_dir holds events.sqlite).",
    )(f)


def _filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--since", help="From this time: ISO 8601 (UTC), epoch, or age (2h)."),
        click.option("--until", help="Before this time (same forms as --since)."),
        click.option(
            "--kind",
            "kinds",
            multiple=True,
            type=click.Choice([k.value for k in EventKind]),
            help="Only these kinds (repeatable).",
        ),
        click.option(
            "--severity",
            "severities",
            multiple=True,
            type=click.Choice([s.name.lower() for s in Severity]),
            help="Only these severities (repeatable).",
        ),
        click.option("--string", help="Only events of this string."),
        click.option("--alarm", "alarm_id", help="Only events of this alarm id."),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many (newest)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return _db_options(f)


def _query(log: EventLog, a: dict[str, Any]) -> list[AlarmEvent]:
    events = log.events(
        since=parse_time(a["since"]),
        until=parse_time(a["until"]),
        kinds=a["kinds"],
        severities=[int(Severity[s.upper()]) for s in a["severities"]],
        string=a["string"],
        alarm_id=a["alarm_id"],
        limit=a["limit"],
        newest_first=True,
    )
    return list(reversed(events))  # the newest N, printed oldest first


CSV_FIELDS = ["seq", "at", "time", "kind", "severity", "alarm_id", "rule", "ups", "string"]
CSV_FIELDS += ["cell", "value", "limit", "unit", "by", "message"]


def write_events(events: list[AlarmEvent], fmt: str, out: Any) -> None:
    if fmt == "jsonl":
        for e in events:
            out.write(json.dumps(event_dict(e), separators=(",", ":")) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for e in events:
            w.writerow(
                [
                    e.seq, e.at, iso(e.at), e.kind.value, e.severity.name.lower(), e.alarm_id,
                    e.rule, e.path.ups or "", e.path.string or "",
                    "" if e.path.cell is None else e.path.cell, _num(e.value), _num(e.limit),
                    e.unit, e.by or "", e.message,
                ]
            )  # fmt: skip
    else:
        for e in events:
            out.write(
                f"{e.seq:>7} {iso(e.at)} {e.kind.value:<12} {e.severity.name.lower():<8} "
                f"{e.alarm_id:<36} {e.message}\n"
            )


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


@click.group()
def events() -> None:
    """The event log: every alarm raised, cleared and acknowledged."""


@events.command("list")
@_filter_options
def events_list(**a: Any) -> None:
    """Print events as a table (oldest first; --limit keeps the newest N)."""
    with open_log(a["config"], a["db"]) as log:
        write_events(_query(log, a), "table", sys.stdout)


@events.command("export")
@_filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "table"]),
    default="jsonl",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File (default: stdout).",
)
def events_export(fmt: str, output: Any, **a: Any) -> None:
    """Write events as CSV or JSON lines (one object per event) for other tools."""
    with open_log(a["config"], a["db"]) as log:
        write_events(_query(log, a), fmt, output)


@click.group(invoke_without_command=True)
@_db_options
@click.pass_context
def alarms(ctx: click.Context, config: Path | None, db: Path | None) -> None:
    """Active alarms (as the running gateway last committed them)."""
    ctx.ensure_object(dict).update(alarms_config=config, alarms_db=db)  # for subcommands
    if ctx.invoked_subcommand is None:
        _print_active(config, db)


@alarms.command("list")
@_db_options
@click.pass_context
def alarms_list(ctx: click.Context, config: Path | None, db: Path | None) -> None:
    """List the active alarms."""
    _print_active(*_where(ctx, config, db))


def _where(ctx: click.Context, config: Path | None, db: Path | None) -> tuple[Path | None, ...]:
    shared = ctx.find_object(dict) or {}
    return config or shared.get("alarms_config"), db or shared.get("alarms_db")


def _print_active(config: Path | None, db: Path | None) -> None:
    with open_log(config, db) as log:
        rows = log.active()
    if not rows:
        click.echo("no active alarms")
    for a in rows:
        ack = f"ack by {a.acknowledged_by}" if a.acknowledged else "unacknowledged"
        sev = a.severity.name.lower()
        click.echo(f"{iso(a.raised_at)} {sev:<8} {a.alarm_id:<36} {ack:<20} {a.message}")


def _request(log: EventLog, kind: str, timeout: float, **args: Any) -> None:
    rid = inbox.submit(log, kind, **args)
    got = inbox.wait(log, rid, timeout)
    if not got.done:
        raise click.ClickException(
            f"request #{rid} not picked up within {timeout:g} s: is the gateway running? "
            "(it expires unapplied after [alarms] request_ttl_s)"
        )
    click.echo(got.result)
    if not got.ok:
        sys.exit(EXIT_NOT_APPLIED)


@alarms.command("ack")
@click.argument("alarm_id")
@click.option("--by", required=True, help="Who acknowledges (recorded in the event log).")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@_db_options
@click.pass_context
def alarms_ack(ctx: click.Context, /, alarm_id: str, by: str, timeout: float, **a: Any) -> None:
    """Acknowledge ALARM_ID in the running gateway (exit 1: no such active alarm)."""
    with open_log(*_where(ctx, a["config"], a["db"])) as log:
        _request(log, inbox.ACK, timeout, alarm_id=alarm_id, by=by)


@alarms.group("baseline")
def baseline_group() -> None:
    """Per-cell internal-resistance baselines the resistance rules compare against."""


@baseline_group.command("show")
@click.argument("string", required=False)
@_db_options
@click.pass_context
def baseline_show(ctx: click.Context, /, string: str | None, **a: Any) -> None:
    """Print the baselines (of STRING, or all) with their source: learned or set."""
    with open_log(*_where(ctx, a["config"], a["db"])) as log:
        rows = baseline.load(log.db, string)
    if not rows:
        click.echo("no baselines (cells learn theirs from their first good readings)")
    for r in rows:
        click.echo(
            f"{r.string:<16} {r.cell:>4} {r.mohm:>10.3f} mOhm  {r.source:<8} {iso(r.set_at)}"
        )


@baseline_group.command("set")
@click.argument("string")
@click.option("--cell", type=click.IntRange(1, 120), help="Only this cell (1-based).")
@click.option("--mohm", type=click.FloatRange(min=0, min_open=True), help="The baseline value.")
@click.option(
    "--by", default=None, help="Who re-takes it (recorded in the event log; default: your login)."
)
@click.option("--timeout", type=float, default=10.0, show_default=True)
@_db_options
@click.pass_context
def baseline_set(
    ctx: click.Context,
    /,
    string: str,
    cell: int | None,
    mohm: float | None,
    by: str | None,
    timeout: float,
    **a: Any,
) -> None:
    """Set baselines: with --mohm (and --cell) to a value, written at once and
    picked up by a running gateway; without --mohm re-taken from the string's
    current readings (after a cell is replaced), which needs the running
    gateway and is recorded in the event log with who did it (--by)."""
    with open_log(*_where(ctx, a["config"], a["db"]), must_exist=mohm is None) as log:
        if mohm is None:
            who = by or f"cli:{getpass.getuser()}"
            _request(log, inbox.BASELINE_CAPTURE, timeout, string=string, cell=cell, by=who)
            return
        if cell is None:
            raise click.UsageError("--mohm needs --cell (baselines are per cell)")
        with log.transaction() as db:
            baseline.save(db, [baseline.BaselineRow(string, cell, mohm, "set", time.time())])
        inbox.submit(log, inbox.BASELINE_RELOAD, string=string)
        click.echo(f"baseline of {string} cell {cell} set to {mohm:g} mOhm")


@baseline_group.command("learn")
@click.argument("string")
@click.option("--cell", type=click.IntRange(1, 120), help="Only this cell (1-based).")
@_db_options
@click.pass_context
def baseline_learn(ctx: click.Context, /, string: str, cell: int | None, **a: Any) -> None:
    """Forget baselines so the cells learn them again from their next good readings
    (after replacing blocks)."""
    with open_log(*_where(ctx, a["config"], a["db"]), must_exist=False) as log:
        with log.transaction() as db:
            n = baseline.forget(db, string, cell)
        inbox.submit(log, inbox.BASELINE_RELOAD, string=string)
        click.echo(f"{n} baseline(s) of {string} forgotten; they are learned again")


def add_to(cli: click.Group) -> None:
    """Attach ``events`` and ``alarms`` to the root command group."""
    cli.add_command(events)
    cli.add_command(alarms)
