"""Which embedded engine keeps the history: three measured side by side.

- ``sqlite-blocks``: the gateway's own store (core/history): SQLite in WAL mode
  holding column blocks compressed per (string, quantity, period), written by
  its writer thread every 2 s;
- ``duckdb``: one long table (t, string, quantity, cell, value) in a DuckDB
  file, appended every 2 s from Arrow batches (its own columnar compression);
- ``parquet``: one zstd Parquet file per string and 10-minute period, wide
  (a column per string quantity and per cell quantity), written when the
  period ends (a Parquet file cannot be appended to).

Every engine gets the same StringReading objects and turns them into the same
integer rows (core.history.codec), so the comparison is of the storage. The
data is the BM-SM simulator's own (protocols/bmsm/simulator/model.py), float
charge and discharge, 120 cells. Measured: write CPU (fraction of one core
at full scale: 32 strings x 120 cells at 1 s, in simulated time), bytes per
stored value, two queries, and what kill -9 leaves.

    python bench/history_engines.py                 # about 2 minutes
    python bench/history_engines.py --minutes 2     # a shorter full-scale run

Needs the ``bench`` extra (duckdb, pyarrow). Writes bench/results/history_engines-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from btms_gateway.core.history import HistorySection, HistoryService
from btms_gateway.core.history.codec import NULL, reading_row, to_int32
from btms_gateway.core.history.quantities import QUANTITIES
from btms_gateway.core.model import StringReading
from btms_gateway.protocols.bmsm.simulator.model import StringModel

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
T0 = 1_767_225_600.0
CELLS = 120
COMMIT_S = 2.0
PERIOD_S = 600
F3 = "{:.3f}"
COLUMN_NAMES = [
    f"{q.key}" if q.level == "string" else f"{q.key}_{c}"
    for q in QUANTITIES
    for c in ([None] if q.level == "string" else range(1, CELLS + 1))
]


def simulated(mode: str, seconds: int, seed: int = 1, start: float = T0) -> list[StringReading]:
    """The simulator's readings of one 120-cell string, one a second."""
    m = StringModel.create(1, CELLS, seed, mode)  # type: ignore[arg-type]
    out = []
    for i in range(seconds):
        m.step(1.0)
        out.append(m.expected_reading(read_at=start + i))
    return out


class Engine(Protocol):
    name: str

    def write(self, name: str, r: StringReading) -> None: ...
    def finish(self) -> None: ...
    def size(self) -> int: ...
    def query_cells(self, name: str, key: str, a: float, b: float) -> int: ...
    def query_cell(self, name: str, key: str, cell: int, a: float, b: float) -> int: ...


class SqliteBlocks:
    name = "sqlite-blocks"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.svc = HistoryService(HistorySection(commit_interval_s=COMMIT_S), path).start()

    def write(self, name: str, r: StringReading) -> None:
        self.svc.write(name, r)
        self.last = r

    def finish(self) -> None:
        """Everything into blocks: a reading of another string a day later moves
        the store's clock (the data) past every open period."""
        from dataclasses import replace

        self.svc.write("~clock", replace(self.last, read_at=self.last.read_at + 86400))
        assert self.svc.sync(600)

    def size(self) -> int:
        return self.svc.store.used_bytes()

    def raw_bytes_per_value(self) -> float:
        raw = self.svc.queries.info()["tiers"][0]
        return raw["block_bytes"] / raw["block_values"]

    def query_cells(self, name: str, key: str, a: float, b: float) -> int:
        s = self.svc.queries.series(name, [key], a, b, resolution="raw")
        return int(np.count_nonzero(~np.isnan(s.stats["value"])))

    def query_cell(self, name: str, key: str, cell: int, a: float, b: float) -> int:
        s = self.svc.queries.series(name, [key], a, b, cells=[cell], resolution="raw")
        return int(np.count_nonzero(~np.isnan(s.stats["value"])))

    def close(self) -> None:
        self.svc.close()


class Batcher:
    """Rows per string, handed on every COMMIT_S of data time (as the store commits)."""

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple[float, np.ndarray]]] = {}
        self.next_commit = 0.0

    def add(self, name: str, r: StringReading) -> bool:
        self.pending.setdefault(name, []).append((r.read_at, reading_row(r)))
        if r.read_at >= self.next_commit:
            self.next_commit = r.read_at + COMMIT_S
            return True
        return False

    def take(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for name, rows in self.pending.items():
            if rows:
                t = np.array([round(x[0] * 1000) for x in rows], dtype=np.int64)
                yield name, t, to_int32(np.array([x[1] for x in rows]))
        self.pending = {}


class DuckLong:
    name = "duckdb"

    def __init__(self, path: Path) -> None:
        import duckdb

        self.file = path / "history.duckdb"
        self.db = duckdb.connect(str(self.file))
        self.db.execute("SET threads = 1")  # the gateway runs on one CPU
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS readings(t BIGINT, string VARCHAR, quantity VARCHAR, "
            "cell SMALLINT, value INTEGER)"
        )
        self.batch = Batcher()
        qcol = [q.key for q in QUANTITIES for _ in range(1 if q.level == "string" else CELLS)]
        ccol = [
            c for q in QUANTITIES for c in ([0] if q.level == "string" else range(1, CELLS + 1))
        ]
        self.qcol, self.ccol = np.array(qcol, dtype=object), np.array(ccol, dtype=np.int16)

    def write(self, name: str, r: StringReading) -> None:
        if self.batch.add(name, r):
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        for name, t, values in self.batch.take():
            n, k = values.shape
            keep = (values != NULL).ravel()
            table = pa.table(
                {
                    "t": np.repeat(t, k)[keep],
                    "string": np.full(keep.sum(), name, dtype=object),
                    "quantity": np.tile(self.qcol, n)[keep],
                    "cell": np.tile(self.ccol, n)[keep],
                    "value": values.ravel()[keep],
                }
            )
            self.db.register("batch", table)
            self.db.execute("INSERT INTO readings SELECT * FROM batch")
            self.db.unregister("batch")

    def finish(self) -> None:
        self._flush()
        self.db.execute("CHECKPOINT")

    def size(self) -> int:
        wal = self.file.with_name(self.file.name + ".wal")
        return self.file.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def query_cells(self, name: str, key: str, a: float, b: float) -> int:
        rows = self.db.execute(
            "SELECT t, cell, value FROM readings WHERE string = ? AND quantity = ? AND t >= ? "
            "AND t < ? ORDER BY t, cell",
            [name, key, round(a * 1000), round(b * 1000)],
        ).fetchnumpy()
        return len(rows["value"])

    def query_cell(self, name: str, key: str, cell: int, a: float, b: float) -> int:
        rows = self.db.execute(
            "SELECT t, value FROM readings WHERE string = ? AND quantity = ? AND cell = ? "
            "AND t >= ? AND t < ? ORDER BY t",
            [name, key, cell, round(a * 1000), round(b * 1000)],
        ).fetchnumpy()
        return len(rows["value"])

    def close(self) -> None:
        self.db.close()


class ParquetFiles:
    name = "parquet"

    def __init__(self, path: Path) -> None:
        self.dir = path
        self.open: dict[str, tuple[int, list[tuple[float, np.ndarray]]]] = {}

    def write(self, name: str, r: StringReading) -> None:
        period = int(r.read_at // PERIOD_S)
        current = self.open.get(name)
        if current is not None and current[0] != period:
            self._write_file(name, *current)
            current = None
        if current is None:
            current = self.open[name] = (period, [])
        current[1].append((r.read_at, reading_row(r)))

    def _write_file(self, name: str, period: int, rows: list[tuple[float, np.ndarray]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = np.array([round(x[0] * 1000) for x in rows], dtype=np.int64)
        values = to_int32(np.array([x[1] for x in rows]))
        cols = {"t": t}
        for j, col in enumerate(COLUMN_NAMES):
            v = values[:, j]
            cols[col] = pa.array(v, mask=v == NULL)
        pq.write_table(pa.table(cols), self.dir / f"{name}-{period}.parquet", compression="zstd")

    def finish(self) -> None:
        for name, (period, rows) in self.open.items():
            self._write_file(name, period, rows)
        self.open = {}

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.parquet"))

    def _files(self, name: str, a: float, b: float) -> list[Path]:
        return [
            self.dir / f"{name}-{p}.parquet"
            for p in range(int(a // PERIOD_S), int(b // PERIOD_S) + 1)
            if (self.dir / f"{name}-{p}.parquet").exists()
        ]

    def query_cells(self, name: str, key: str, a: float, b: float) -> int:
        import pyarrow.parquet as pq

        q = next(q for q in QUANTITIES if q.key == key)
        cols = ["t"] + [f"{key}_{c}" for c in range(1, CELLS + 1)] if q.level == "cell" else [key]
        return sum(pq.read_table(f, columns=cols).num_rows * (len(cols) - 1)
                   for f in self._files(name, a, b))  # fmt: skip

    def query_cell(self, name: str, key: str, cell: int, a: float, b: float) -> int:
        import pyarrow.parquet as pq

        return sum(
            pq.read_table(f, columns=["t", f"{key}_{cell}"]).num_rows
            for f in self._files(name, a, b)
        )

    def close(self) -> None:
        pass


ENGINES: dict[str, type] = {
    "sqlite-blocks": SqliteBlocks,
    "duckdb": DuckLong,
    "parquet": ParquetFiles,
}


def timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def full_scale_cpu(engine_cls: type, minutes: float, base: list[list[StringReading]]) -> dict:
    """Write CPU of 32 strings x 120 cells at 1 s for ``minutes`` of simulated time."""
    from dataclasses import replace

    work = Path(tempfile.mkdtemp(prefix="btms-engines-"))
    e = engine_cls(work)
    seconds = int(minutes * 60)
    readings = [
        [replace(base[s % len(base)][i % len(base[0])], read_at=T0 + i) for s in range(32)]
        for i in range(seconds)
    ]
    c0 = time.process_time()
    for i in range(seconds):
        for s in range(32):
            e.write(f"S{s + 1}", readings[i][s])
    e.finish()
    cpu = time.process_time() - c0
    size = e.size()
    e.close()
    shutil.rmtree(work, ignore_errors=True)
    values = seconds * 32 * len(COLUMN_NAMES)
    return {"cpu_core": cpu / seconds, "bytes_per_value_file": size / values}


def density_and_queries(engine_cls: type, data: list[StringReading]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="btms-engines-"))
    e = engine_cls(work)
    for r in data:
        e.write("S1", r)
    e.finish()
    a, b = data[0].read_at, data[-1].read_at + 1
    out = {
        "bytes_per_value_file": e.size() / (len(data) * len(COLUMN_NAMES)),
        "query_all_cells_ms": 1000 * timed(lambda: e.query_cells("S1", "cell_voltage_v", a, b)),
        "query_one_cell_ms": 1000
        * timed(lambda: e.query_cell("S1", "cell_resistance_mohm", 7, a, b)),
    }
    if isinstance(e, SqliteBlocks):
        out["bytes_per_value_raw_blocks"] = e.raw_bytes_per_value()
    e.close()
    shutil.rmtree(work, ignore_errors=True)
    return out


def child(engine: str, directory: str) -> None:
    """Write one string in real time (20 readings a second) until killed."""
    e = ENGINES[engine](Path(directory))
    data = simulated("float", 60)
    i = 0
    while True:
        from dataclasses import replace

        r = replace(data[i % len(data)], read_at=T0 + i * 0.05)  # data time = wall time
        e.write("S1", r)
        print(i, time.monotonic(), flush=True)
        i += 1
        time.sleep(0.05)


def kill9(engine: str, seconds: float = 4.7) -> dict:  # not a whole number of commits
    work = Path(tempfile.mkdtemp(prefix="btms-kill-"))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", engine, str(work)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    time.sleep(seconds)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = [first, *proc.stdout]
    written = len([x for x in lines if x.strip()])
    try:
        e = ENGINES[engine](work)
        recovered = e.query_cell("S1", "cell_voltage_v", 1, T0, T0 + 10**6)
        opened, error = True, ""
        if hasattr(e, "close"):
            e.close()
    except Exception as exc:  # what a crash left could not be opened
        opened, recovered, error = False, 0, str(exc)[:120]
    shutil.rmtree(work, ignore_errors=True)
    return {"opened": opened, "written": written, "recovered": recovered,
            "lost_s": (written - recovered) * 0.05, "error": error}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="simulated full-scale minutes")
    ap.add_argument("--hour-s", type=int, default=3600, help="seconds of data for density")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return 0
    names = a.engines.split(",")
    print("simulating the data ...", flush=True)
    base = [simulated("float", 600, seed=s) for s in (1, 2, 3, 4)]
    sets = {m: simulated(m, a.hour_s, seed=7) for m in ("float", "discharge")}
    results: dict[str, Any] = {}
    for name in names:
        cls = ENGINES[name]
        print(f"{name}: full scale ...", flush=True)
        r: dict[str, Any] = {"full_scale": full_scale_cpu(cls, a.minutes, base)}
        for mode, data in sets.items():
            r[mode] = density_and_queries(cls, data)
        r["kill9"] = kill9(name)
        results[name] = r
    print(f"\nhistory engines, {a.minutes:g} simulated minutes at full scale (32 x 120 at 1 s); "
          f"density and queries on {a.hour_s} s of one string")  # fmt: skip
    head = f"{'figure':<44}" + "".join(f"{n:>16}" for n in names)
    print(head)
    rows = [
        ("write CPU, full scale (core)", lambda r: r["full_scale"]["cpu_core"], "{:.4f}"),
        ("bytes/value, file, full scale", lambda r: r["full_scale"]["bytes_per_value_file"], F3),
        ("bytes/value, file, float 1 string", lambda r: r["float"]["bytes_per_value_file"], F3),
        ("bytes/value, file, discharge", lambda r: r["discharge"]["bytes_per_value_file"], F3),
        ("query: all cells, 1 quantity (ms)", lambda r: r["float"]["query_all_cells_ms"], "{:.1f}"),
        ("query: one cell, 1 quantity (ms)", lambda r: r["float"]["query_one_cell_ms"], "{:.1f}"),
        ("kill -9: file opens", lambda r: r["kill9"]["opened"], "{}"),
        ("kill -9: seconds lost (20 readings/s)", lambda r: r["kill9"]["lost_s"], "{:.2f}"),
    ]
    for label, get, fmt in rows:
        print(f"{label:<44}" + "".join(f"{fmt.format(get(results[n])):>16}" for n in names))
    if "sqlite-blocks" in results:
        s = results["sqlite-blocks"]
        fl, dis = (s[m]["bytes_per_value_raw_blocks"] for m in ("float", "discharge"))
        print(f"sqlite-blocks raw blocks alone: float {fl:.3f}, discharge {dis:.3f} bytes/value")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"history_engines-{stamp}.json"
    record = {
        "bench": "history_engines",
        "at": stamp,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "minutes": a.minutes,
        "density_seconds": a.hour_s,
        "results": results,
    }
    out.write_text(json.dumps(record, indent=2))
    load = Path("/proc/loadavg").read_text().strip()
    print(f"\nwritten to {out.relative_to(HERE.parent)}; load {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
