"""btms-jsonl-logger: append every string reading and alarm event to a JSON-lines file.

Hooks run in this plugin's own worker thread (the gateway's plugin channel),
so the blocking writes below never delay acquisition or other plugins.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

import click
from btms_gateway.core import hookimpl
from btms_gateway.core.config_base import PluginSection
from btms_gateway.core.serialize import event_dict, string_dict

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
        self.file = settings.path.open("a", encoding="utf-8", buffering=1)
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
        """Count the records of a btms-jsonl-logger FILE per type and string."""
        counts: Counter[str] = Counter()
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            key = record["string"]["name"] if record["type"] == "reading" else "alarm"
            counts[f"{record['type']}:{key}"] += 1
        for key, n in sorted(counts.items()):
            click.echo(f"{key}\t{n}")
