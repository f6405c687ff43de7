"""btms-jsonl-logger: append every string reading and alarm event to a JSON-lines file.

Hooks run in this plugin's own worker thread (the gateway's plugin channel),
so the blocking writes below never delay acquisition or other plugins.

A power cut can leave the file's last line half written. The summary skips
such lines and says how many; the writer starts on a fresh line when the file
it appends to ends mid-line, so the first record after a restart is not
glued to the torn one.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

import click
from btms_gateway.core.api import PluginSection, event_dict, hookimpl, string_dict

NAME = "jsonl"


class JsonlSettings(PluginSection):
    """``[plugins.jsonl]``: where to write, and whether to include every cell."""

    path: Path
    cells: bool = False


class _Writer:
    def __init__(self) -> None:
        self.file: IO[str] | None = None
        self.cells = False
        self.lock = threading.Lock()

    def open(self, settings: JsonlSettings) -> None:
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        torn = ends_mid_line(settings.path)
        self.file = settings.path.open("a", encoding="utf-8", buffering=1)
        if torn:
            self.file.write("\n")
        self.cells = settings.cells

    def write(self, record: dict[str, Any]) -> None:
        with self.lock:
            if self.file is not None:
                self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None


def ends_mid_line(path: Path) -> bool:
    """True when the file exists and its last byte is not a newline."""
    try:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # absent, or empty (cannot seek before the start)
        return False


_writer = _Writer()


@hookimpl
def register_config_sections(register):
    register(NAME, JsonlSettings)


@hookimpl
def startup(gateway):
    _writer.open(gateway.plugin_config(NAME))


@hookimpl
def shutdown(gateway):
    _writer.close()


@hookimpl
def string_reading(string, plant):
    _writer.write({"type": "reading", "string": string_dict(string, cells=_writer.cells)})


@hookimpl
def alarm_event(event):
    _writer.write({"type": "alarm", "event": event_dict(event)})


@hookimpl
def register_commands(cli):
    @cli.command("jsonl-summary")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def jsonl_summary(file: Path) -> None:
        """Count the records of a btms-jsonl-logger FILE per type and string;
        unreadable lines (a torn last line after a power cut) are skipped and
        counted on stderr."""
        counts, skipped = summarize(file)
        for key, n in sorted(counts.items()):
            click.echo(f"{key}\t{n}")
        if skipped:
            where = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            click.echo(
                f"warning: {file}: skipped {len(skipped)} unreadable line(s) (line {where}): "
                "not a whole record, e.g. the last line cut by a power loss",
                err=True,
            )


def summarize(file: Path) -> tuple[Counter[str], list[int]]:
    """Records per ``type:string`` (``alarm:alarm`` for alarms), and the numbers
    of the lines that are not a whole record."""
    counts: Counter[str] = Counter()
    skipped: list[int] = []
    with file.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                kind = record["type"]
                key = record["string"]["name"] if kind == "reading" else "alarm"
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                skipped.append(number)
                continue
            counts[f"{kind}:{key}"] += 1
    return counts, skipped
