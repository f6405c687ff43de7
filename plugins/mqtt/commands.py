"""``btms-gateway mqtt ...``: look into the store-and-forward buffer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click


@click.group("mqtt")
def mqtt_group() -> None:
    """The MQTT plugin's store-and-forward buffer."""


@mqtt_group.command("buffer")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
def buffer_status(data_dir: Path) -> None:
    """What waits in DATA_DIR/mqtt/buffer.sqlite (the gateway's data_dir), by
    mode and kind; readings dropped past the bound; the last Sparkplug bdSeq."""
    path = data_dir / "mqtt" / "buffer.sqlite"
    if not path.exists():
        raise click.ClickException(f"{path}: no MQTT buffer here")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT sink, kind, COUNT(*), COALESCE(SUM(length(body)), 0), MIN(rid), MAX(rid) "
            "FROM queue GROUP BY sink, kind ORDER BY sink, kind"
        ).fetchall()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    names = {"spb": "sparkplug", "json": "json", "r": "readings", "e": "events"}
    for sink, kind, count, size, first, last in rows:
        click.echo(
            f"{names.get(sink, sink):<10} {names.get(kind, kind):<9} {count:>8} records "
            f"{size / 1024:>10.1f} KiB  rid {first}..{last}"
        )
    if not rows:
        click.echo("empty")
    click.echo(f"dropped readings: {meta.get('dropped_readings', 0)}")
    if "bdseq" in meta:
        click.echo(f"last bdSeq: {meta['bdseq']}")
