"""Export history as a long table: one row per time, string, quantity and
cell that has a measured value (a gap or an unmeasured value is no row).

CSV is written with the standard library; Parquet needs pyarrow (the
``parquet`` extra), imported only here and only when asked for.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .query import HistoryQueries, Series

RAW_COLUMNS = ("t", "string", "quantity", "cell", "unit", "value")
ROLLUP_COLUMNS = ("t", "string", "quantity", "cell", "unit", "min", "mean", "max", "count")
#: seconds of data read per query while exporting (bounded memory)
WINDOW_S = {"raw": 3600.0, "minute": 7 * 86400.0, "hour": 366 * 86400.0}


class ExportError(Exception):
    pass


def rows(series: Series) -> Iterator[dict[str, np.ndarray]]:
    """Column arrays of the long table for one answer, one column at a time."""
    raw = "value" in series.stats
    for j, col in enumerate(series.columns):
        key = "value" if raw else "count"
        values = series.stats[key][:, j]
        keep = ~np.isnan(values) if raw else values > 0
        if not keep.any():
            continue
        n = int(keep.sum())
        out: dict[str, Any] = {
            "t": series.t[keep],
            "string": np.full(n, series.string, dtype=object),
            "quantity": np.full(n, col.quantity.key, dtype=object),
            "cell": np.full(n, col.cell if col.cell is not None else -1, dtype=np.int64),
            "unit": np.full(n, col.quantity.unit, dtype=object),
        }
        for stat in ("value",) if raw else ("min", "mean", "max", "count"):
            out[stat] = series.stats[stat][keep, j]
        if not raw:
            out["count"] = out["count"].astype(np.int64)
        yield out


def windows(start: float, end: float, resolution: str) -> Iterator[tuple[float, float]]:
    step = WINDOW_S.get(resolution, WINDOW_S["raw"])
    a = start
    while a < end:
        yield a, min(end, a + step)
        a += step


def export(
    queries: HistoryQueries,
    out: Path | IO[str],
    fmt: str,
    start: float,
    end: float,
    strings: Sequence[str],
    quantities: Sequence[str],
    cells: Sequence[int] | None,
    resolution: str,
) -> int:
    """Write the table to ``out``; -> rows written."""
    if resolution == "auto":
        probe = queries.series(strings[0], quantities[:1], start, end, cells=[1])
        resolution = probe.resolution
    columns = RAW_COLUMNS if resolution == "raw" else ROLLUP_COLUMNS
    chunks = (
        part
        for a, b in windows(start, end, resolution)
        for name in strings
        for part in rows(queries.series(name, quantities, a, b, cells=cells, resolution=resolution))
    )
    if fmt == "csv":
        return _csv(out, columns, chunks)
    if fmt == "parquet":
        if not isinstance(out, Path):
            raise ExportError("Parquet goes to a file: give --output FILE")
        return _parquet(out, columns, chunks)
    raise ExportError(f"format: csv or parquet, found {fmt!r}")


def _csv(out: Path | IO[str], columns: Sequence[str], chunks: Iterator[dict[str, Any]]) -> int:
    handle: IO[str] = open(out, "w", newline="") if isinstance(out, Path) else out  # noqa: SIM115
    try:
        w = csv.writer(handle)
        w.writerow(columns)
        n = 0
        for c in chunks:
            cell = [("" if x < 0 else int(x)) for x in c["cell"]]
            cols = [np.round(c["t"], 3).tolist(), c["string"], c["quantity"], cell, c["unit"]]
            cols += [_plain(c[k]) for k in columns[5:]]
            w.writerows(zip(*cols, strict=True))
            n += len(cell)
        return n
    finally:
        if isinstance(out, Path):
            handle.close()


def _plain(a: np.ndarray) -> list[Any]:
    """repr-exact floats (the shortest text that reads back equal)."""
    values: list[Any] = a.tolist()
    return values


def _parquet(out: Path, columns: Sequence[str], chunks: Iterator[dict[str, Any]]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(
            "Parquet export needs pyarrow: pip install 'btms-gateway[parquet]'"
        ) from None
    types = {
        "t": pa.float64(),
        "string": pa.string(),
        "quantity": pa.string(),
        "cell": pa.int32(),
        "unit": pa.string(),
        "value": pa.float64(),
        "min": pa.float64(),
        "mean": pa.float64(),
        "max": pa.float64(),
        "count": pa.int64(),
    }
    schema = pa.schema([(c, types[c]) for c in columns])
    n = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for c in chunks:
            cell = np.where(c["cell"] < 0, None, c["cell"])
            data = {**c, "cell": cell}
            arrays = [pa.array(_arrow(data[k]), type=types[k]) for k in columns]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            n += len(cell)
    return n


def _arrow(a: np.ndarray) -> Any:
    return a.tolist() if a.dtype == object else a
