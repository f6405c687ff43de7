"""One file per bench run under bench/results/: what ran, where, and what it measured.

docs/performance.md and docs/reliability.md keep only the latest figures of
each bench; the runs before them live here, one JSON file a run, so a figure
can be compared with its history without reading prose. A bench records a run
by wrapping its ``main``::

    if __name__ == "__main__":
        sys.exit(run_record.recorded("bench_poll", main))

and may hand over its figures in structured form while it runs
(``run_record.add(cpu_core=0.083)``). The file then holds the bench's name,
the UTC time it started, the machine (host, CPU model, cores, kernel, Python,
load), its command line, its exit code, those figures and everything it
printed, so the printed table is kept even where no figure was handed over.

A bench started as a child of itself (``--serve``, its worker mode), a run
with ``--no-record`` (where the bench takes it) and a run with
``BTMS_BENCH_NO_RECORD=1`` in its environment record nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

RESULTS = Path(__file__).resolve().parent / "results"
SKIP_FLAGS = ("--serve", "--inprocess-json", "--no-record")  # worker modes, and asked not to
NO_RECORD = "BTMS_BENCH_NO_RECORD"

_figures: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    """What a figure depends on besides the code: the same bench moves by tens
    of percent between machines and with other load on them."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    load: list[float] = []
    with contextlib.suppress(OSError):
        load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return {"host": platform.node(), "cpu": model, "cores": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg": load}  # fmt: skip


def stamp(at: datetime.datetime) -> str:
    """The run's time as it appears in its file name (UTC, sorts as text)."""
    return at.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def add(figures: dict[str, Any] | None = None, **more: Any) -> None:
    """Figures of the run in progress, kept in structured form beside its output."""
    _figures.update(figures or {}, **more)


def plain(value: Any) -> Any:
    """JSON without surprises: NaN and infinity become null (strict parsers
    refuse them), dataclasses dicts, anything else unknown its text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def write(
    bench: str,
    record: dict[str, Any],
    *,
    at: datetime.datetime | None = None,
    directory: Path = RESULTS,
) -> Path:
    """Write one run's record as ``<bench>-<UTC time>.json``; returns the path."""
    at = at or datetime.datetime.now(datetime.UTC)
    entry = {"bench": bench, "date": at.astimezone(datetime.UTC).isoformat(timespec="seconds"),
             **record}  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{bench}-{stamp(at)}.json"
    path.write_text(json.dumps(plain(entry), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


class _Tee(io.TextIOBase):
    """stdout that is also kept: the bench's printed tables go into its record."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def recorded(
    bench: str,
    main: Callable[[], int],
    *,
    argv: list[str] | None = None,
    directory: Path = RESULTS,
) -> int:
    """Run a bench's ``main`` and record the run (see the module's docstring);
    returns ``main``'s exit code. A run that raises is not recorded."""
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get(NO_RECORD) or any(flag in argv for flag in SKIP_FLAGS):
        return main()
    at, box = datetime.datetime.now(datetime.UTC), machine()
    _figures.clear()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        code = main()
    record = {"machine": box, "argv": argv, "exit_code": code, "ok": code == 0,
              "figures": dict(_figures), "output": tee.kept.getvalue().splitlines()}  # fmt: skip
    print(f"recorded: {write(bench, record, at=at, directory=directory)}")
    return code
