"""What a full-scale bench waits for and aims its clients at, shared by
bench/scale.py (everything at once) and bench/scale_clients.py (one client
at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from .procs import get_json


async def wait_all_good(web: int, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            plant = await asyncio.to_thread(get_json, f"http://127.0.0.1:{web}/api/plant")
            if sum(s["quality"] == "good" for s in plant["strings"]) == count:
                return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"not all {count} strings GOOD within {timeout} s")


def probes_of(
    plant: list[tuple[str, str, int]], spec: list[dict[str, Any]]
) -> list[tuple[str, str, int]]:
    """The age probe's strings: the first of each bus (name, bus, slave)."""
    return [next(p for p in plant if p[1] == b["name"]) for b in spec]


def bacnet_targets(
    config_path: Path, probe_names: list[str], cells_of: list[str], strings: int
) -> tuple[list[tuple[str, int]], dict[tuple[str, int], str]]:
    """The objects the COV client subscribes to: each probe string's current,
    every string's voltage, and every cell voltage of ``cells_of``."""
    from btms_gateway.plugins.bacnet.export import plant_points

    _settings, points = plant_points(config_path)
    by_name = {p.name: p for p in points}
    wanted = [f"{n}.current" for n in probe_names]
    wanted += [f"S{i}.voltage" for i in range(1, strings + 1)]
    wanted += [
        p.name
        for p in points
        if p.string in cells_of and p.name.endswith(".voltage") and p.cell is not None
    ]
    oids = [by_name[n].oid for n in dict.fromkeys(wanted) if n in by_name]
    return [(str(k), i) for k, i in oids], {
        (str(k), i): n for n in wanted if n in by_name for k, i in [by_name[n].oid]
    }
