"""Reading history back: the one class every user of history goes through
(the web plugin, the CLI export, reports, analytics, MQTT replay).

Each call opens its own read-only connection, so queries run from any thread
(the web plugin runs them in an executor) while the writer thread commits.
Values come back in SI units as float arrays with NaN where nothing was
measured; times as epoch seconds. A gap (no reading at all) is no row.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import codec
from .config import HistorySection
from .quantities import BY_CODE, RECORDED, RESISTANCE, Recorded, columns_of
from .rollup import rollup_stats
from .store import HOUR, MINUTE, RAW, TIER_BY_NAME, TIERS, TIME, Tier, connect

log = logging.getLogger("btms_gateway.history")

#: the tier "auto" picks by the span asked: raw up to 6 hours, minutes up to 15 days
AUTO_SPAN_S = {"raw": 6 * 3600.0, "minute": 15 * 86400.0}
RESOLUTIONS = ("auto", "raw", "minute", "hour")


class QueryError(ValueError):
    """A request history cannot answer as asked (unknown string, quantity, ...)."""


@dataclass(frozen=True)
class Column:
    quantity: Recorded
    cell: int | None  #: None for a string quantity


@dataclass
class Series:
    """One string's answer: a shared time axis and, per column, its values.

    ``raw`` answers have ``value``; roll-ups (``step_s`` set) have ``min``,
    ``mean``, ``max`` and ``count``. Arrays are (rows, columns) floats."""

    string: str
    resolution: str
    step_s: float | None
    start: float
    end: float
    t: np.ndarray
    columns: list[Column]
    stats: dict[str, np.ndarray]


@dataclass(frozen=True)
class Discharge:
    string: str
    start: float
    end: float


class HistoryQueries:
    """Typed read access to one history file."""

    def __init__(self, path: Path, settings: HistorySection | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or HistorySection()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise QueryError(f"no history at {self.path} (has the gateway recorded yet?)")
        db = connect(self.path, readonly=True)
        try:
            yield db
        finally:
            db.close()

    def strings(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT name FROM strings ORDER BY id")]

    # --- series ---------------------------------------------------------------------------
    def series(
        self,
        string: str,
        quantities: Sequence[str],
        start: float,
        end: float,
        *,
        cells: Sequence[int] | None = None,
        resolution: str = "auto",
        max_points: int | None = None,
    ) -> Series:
        """Readings of ``string`` in [start, end). ``cells`` None = every cell
        recorded; ``resolution`` auto picks the tier from the span (and from
        what the tiers still hold); ``max_points`` merges rows into wider
        buckets (min of mins, max of maxes, exact means) so that at most about
        that many come back."""
        qs = [self._quantity(k) for k in quantities]
        if resolution not in RESOLUTIONS:
            raise QueryError(f"resolution: one of {', '.join(RESOLUTIONS)}, found {resolution!r}")
        if not end > start:
            raise QueryError("to must be after from")
        if cells is not None and any(c < 1 for c in cells):
            raise QueryError("cells are numbered from 1")
        with self._db() as db:
            sid = self._sid(db, string)
            if resolution == "auto":
                tier = self._auto(db, sid, start, end)
            else:
                tier = TIER_BY_NAME[resolution]
            a, b = round(start * 1000), round(end * 1000)
            if tier.step_ms:  # the bucket that holds ``start`` overlaps the range: it counts
                a = a // tier.step_ms * tier.step_ms
            t, parts, width = self._read(db, tier, sid, qs, cells, a, b)
        columns: list[Column] = []
        chosen = list(cells) if cells is not None else list(range(1, width + 1))
        for q in qs:
            columns += [Column(q, None)] if q.level == "string" else [Column(q, c) for c in chosen]
        widths = [1 if q.level == "string" else len(chosen) for q in qs]
        step_ms = tier.step_ms
        rebucket = max_points is not None and len(t) > max_points > 0
        if tier is RAW and not rebucket:  # the common raw answer, without roll-up arrays
            return Series(
                string, tier.name, None, start, end, t / 1000.0, columns,
                {"value": _raw_values(parts, qs, widths, len(t))},
            )  # fmt: skip
        arrays = [_fit(parts[q.code], len(t), w) for q, w in zip(qs, widths, strict=True)]
        stats = np.concatenate(arrays, axis=2) if arrays else np.zeros((4, len(t), 0), np.int64)
        scales = np.array([c.quantity.scale for c in columns], dtype=np.float64)
        if rebucket:
            assert max_points is not None
            step_ms = _bucket_ms((end - start) * 1000 / max_points, max(tier.step_ms, 1000))
            t, stats = rollup_stats(t, stats, step_ms)
        return Series(
            string,
            tier.name,
            step_ms / 1000 if step_ms else None,
            start,
            end,
            t / 1000.0,
            columns,
            _si(stats, scales, raw=step_ms == 0),
        )

    def _quantity(self, key: str) -> Recorded:
        q = RECORDED.get(key)
        if q is None:
            raise QueryError(f"quantities: one of {', '.join(RECORDED)}, found {key!r}")
        return q

    @staticmethod
    def _sid(db: sqlite3.Connection, string: str) -> int:
        row = db.execute("SELECT id FROM strings WHERE name = ?", (string,)).fetchone()
        if row is None:
            raise QueryError(f"no history for string {string!r}")
        return int(row[0])

    def _auto(self, db: sqlite3.Connection, sid: int, start: float, end: float) -> Tier:
        """The finest tier the span allows, unless a coarser one reaches further
        back towards ``start`` (the finer one's retention has passed)."""
        span = end - start
        oldest = {t.name: self._oldest(db, t, sid) for t in TIERS}
        for tier, coarser in ((RAW, MINUTE), (MINUTE, HOUR)):
            if span > AUTO_SPAN_S[tier.name]:
                continue
            mine, theirs = oldest[tier.name], oldest[coarser.name]
            if mine is None and theirs is not None:
                continue
            if mine is None or mine <= start * 1000 + 0.1 * span * 1000:
                return tier
            if theirs is None or theirs >= mine - tier.block_ms:
                return tier
        return HOUR

    @staticmethod
    def _oldest(db: sqlite3.Connection, tier: Tier, sid: int) -> int | None:
        rows = db.execute(
            "SELECT MIN(t0) FROM blocks WHERE tier = ? AND string = ? AND quantity = 0 "
            "UNION ALL SELECT MIN(t0) FROM segments WHERE tier = ? AND string = ?",
            (tier.code, sid, tier.code, sid),
        ).fetchall()
        found = [r[0] for r in rows if r[0] is not None]
        return min(found) if found else None

    def _read(
        self,
        db: sqlite3.Connection,
        tier: Tier,
        sid: int,
        qs: list[Recorded],
        cells: Sequence[int] | None,
        a: int,
        b: int,
    ) -> tuple[np.ndarray, dict[int, list[tuple[np.ndarray, np.ndarray]]], int]:
        """-> (times ms, per quantity code the (stats, rows, k) parts with
        their presence, widest cell count seen)."""
        times: list[np.ndarray] = []
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {q.code: [] for q in qs}
        width = 0
        codes = [TIME, *(q.code for q in qs)]
        marks = ",".join("?" * len(codes))
        rows = db.execute(
            f"SELECT t0, quantity, cols, data FROM blocks WHERE tier = ? AND string = ? "
            f"AND quantity IN ({marks}) AND t1 >= ? AND t0 < ? ORDER BY t0, quantity",
            (tier.code, sid, *codes, a, b),
        ).fetchall()
        by_t0: dict[int, dict[int, tuple[int, bytes]]] = {}
        for t0, code, cols, data in rows:
            by_t0.setdefault(t0, {})[code] = (cols, data)
        for group in by_t0.values():
            if TIME not in group:
                continue
            try:
                t = codec.decode_block(group[TIME][1])[0][0, :, 0]
            except codec.CorruptBlock as exc:  # the whole period is unreadable: a gap
                log.error("history: skipping a damaged %s period of string %d: %s",
                          tier.name, sid, exc)  # fmt: skip
                continue
            sel = (t >= a) & (t < b)
            if not sel.any():
                continue
            times.append(t[sel])
            for q in qs:
                cols, data = group.get(q.code, (0, b""))
                if q.level == "cell":
                    width = max(width, cols)
                wanted = [0] if q.level == "string" else _cell_columns(cells, cols)
                try:
                    values, present = codec.decode_block(data, wanted)
                    if tier is not RAW:
                        values = codec.stats_from_stored(values)
                except codec.CorruptBlock as exc:  # this quantity only: not measured
                    if data:
                        log.error("history: a damaged %s block (string %d, quantity %d): %s",
                                  tier.name, sid, q.code, exc)  # fmt: skip
                    values = np.zeros((tier_stats(tier), len(t), len(wanted)), np.int64)
                    present = np.zeros((len(t), len(wanted)), bool)
                parts[q.code].append((values[:, sel], present[sel]))
        for (data,) in db.execute(
            "SELECT data FROM segments WHERE tier = ? AND string = ? AND t1 >= ? AND t0 < ? "
            "ORDER BY t0",
            (tier.code, sid, a, b),
        ):
            try:
                t, values, seg_cells = codec.decode_segment(data)
            except codec.CorruptBlock as exc:
                log.error("history: skipping a damaged segment of string %d: %s", sid, exc)
                continue
            sel = (t >= a) & (t < b)
            if not sel.any():
                continue
            width = max(width, seg_cells)
            times.append(t[sel])
            stats = tier_stats(tier)
            v = values.reshape(stats, len(t), -1)[:, sel]
            for q in qs:
                span = columns_of(q, seg_cells)
                if q.level == "string":
                    idx = [span.start]
                else:
                    idx = [span.start + c for c in _cell_columns(cells, seg_cells)]
                picked = _take(v, idx, span.start + seg_cells if q.level == "cell" else None)
                present = picked[0] != codec.NULL if stats == 1 else picked[3] > 0
                parts[q.code].append((picked.astype(np.int64), present))
        if not times:
            return np.zeros(0, np.int64), parts, width
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        if (order != np.arange(len(t))).any():
            t = t[order]
            for code, plist in parts.items():
                parts[code] = [_reorder(plist, order)]
        return t, parts, width

    # --- other views -------------------------------------------------------------------------
    def resistance_changes(
        self,
        string: str,
        cells: Sequence[int] | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Every change of each cell's resistance: cell -> (times s, mOhm)."""
        a = -(2**62) if start is None else round(start * 1000)
        b = 2**62 if end is None else round(end * 1000)
        with self._db() as db:
            sid = self._sid(db, string)
            rows = db.execute(
                "SELECT cell, t, value FROM changes WHERE string = ? AND t >= ? AND t < ? "
                "ORDER BY cell, t",
                (sid, a, b),
            ).fetchall()
        out: dict[int, tuple[list[float], list[float]]] = {}
        wanted = set(cells) if cells is not None else None
        for cell, t, value in rows:
            if wanted is None or cell in wanted:
                ts, vs = out.setdefault(cell, ([], []))
                ts.append(t / 1000)
                vs.append(value / RESISTANCE.scale)
        return {c: (np.array(ts), np.array(vs)) for c, (ts, vs) in out.items()}

    def discharges(
        self, string: str | None = None, start: float | None = None, end: float | None = None
    ) -> list[Discharge]:
        """Periods a string's current was below ``discharge_current_a`` (raw kept)."""
        a = -(2**62) if start is None else round(start * 1000)
        b = 2**62 if end is None else round(end * 1000)
        with self._db() as db:
            rows = db.execute(
                "SELECT s.name, d.t0, d.t1 FROM discharges d JOIN strings s ON s.id = d.string "
                "WHERE d.t1 >= ? AND d.t0 < ? AND (? IS NULL OR s.name = ?) ORDER BY d.t0",
                (a, b, string, string),
            ).fetchall()
        return [Discharge(name, t0 / 1000, t1 / 1000) for name, t0, t1 in rows]

    def info(self) -> dict[str, Any]:
        """Tiers (blocks, values, bytes, span), strings, the file's size."""
        size = sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )
        with self._db() as db:
            tiers = []
            for tier in TIERS:
                blocks = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), "
                    "COALESCE(SUM(CASE WHEN quantity > 0 THEN rows * cols END), 0), "
                    "MIN(t0), MAX(t1) FROM blocks WHERE tier = ?",
                    (tier.code,),
                ).fetchone()
                segs = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), MIN(t0), MAX(t1) "
                    "FROM segments WHERE tier = ?",
                    (tier.code,),
                ).fetchone()
                spans = [x for x in (blocks[3], blocks[4], segs[2], segs[3]) if x is not None]
                values = int(blocks[2]) * (1 if tier is RAW else 3)
                tiers.append(
                    {
                        "tier": tier.name,
                        "step_s": tier.step_ms / 1000 or None,
                        "blocks": blocks[0],
                        "block_bytes": blocks[1],
                        "block_values": values,
                        "bytes_per_value": round(blocks[1] / values, 4) if values else None,
                        "segments": segs[0],
                        "segment_bytes": segs[1],
                        "from": min(spans) / 1000 if spans else None,
                        "to": max(spans) / 1000 if spans else None,
                    }
                )
            changes = db.execute("SELECT COUNT(*), MIN(t), MAX(t) FROM changes").fetchone()
            discharges = db.execute("SELECT COUNT(*) FROM discharges").fetchone()[0]
            strings = [r[0] for r in db.execute("SELECT name FROM strings ORDER BY id")]
            page = db.execute("PRAGMA page_size").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0] * page
        return {
            "file": str(self.path),
            "bytes_on_disk": size,
            "bytes_free_in_file": free,
            "strings": strings,
            "tiers": tiers,
            "resistance_changes": {
                "count": changes[0],
                "from": changes[1] / 1000 if changes[1] is not None else None,
                "to": changes[2] / 1000 if changes[2] is not None else None,
            },
            "discharges": discharges,
            "retention": {
                "raw_hours": self.settings.raw_retention_hours,
                "minute_days": self.settings.minute_retention_days,
                "hour_days": self.settings.hour_retention_days,
                "budget_mb": self.settings.budget_mb,
            },
        }


def parse_cells(text: str | None) -> list[int] | None:
    """ "1-4,7" -> [1, 2, 3, 4, 7]; None, "" or "all" -> None (every cell)."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out += range(a, b + 1)
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise QueryError(f'cells: numbers like "1-4,7" or "all", found {text!r}') from None
    if any(c < 1 for c in out):
        raise QueryError("cells: cells are numbered from 1")
    if len(out) > MAX_CELLS_ASKED:
        raise QueryError(f"cells: at most {MAX_CELLS_ASKED} cells")
    return out


MAX_CELLS_ASKED = 1000


def tier_stats(tier: Tier) -> int:
    return 1 if tier is RAW else 4


def _cell_columns(cells: Sequence[int] | None, available: int) -> list[int]:
    """Column numbers (0-based) of the cells asked; beyond ``available`` they
    decode as missing."""
    if cells is None:
        return list(range(available))
    return [c - 1 for c in cells]


def _take(v: np.ndarray, idx: list[int], limit: int | None) -> np.ndarray:
    """Columns ``idx`` of (stats, rows, columns), NULL/0 for any past ``limit``."""
    if limit is None or all(i < limit for i in idx):
        return v[:, :, idx]
    fill = codec.NULL if v.shape[0] == 1 else 0
    out = np.full((v.shape[0], v.shape[1], len(idx)), fill, dtype=v.dtype)
    ok = [k for k, i in enumerate(idx) if i < limit]
    out[:, :, ok] = v[:, :, [idx[k] for k in ok]]
    return out


def _reorder(
    plist: list[tuple[np.ndarray, np.ndarray]], order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    width = max(p[0].shape[2] for p in plist)
    values = np.concatenate([_pad(p[0], width) for p in plist], axis=1)[:, order]
    present = np.concatenate([_pad(p[1][None], width)[0] for p in plist], axis=0)[order]
    return values, present


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[-1] == width:
        return a
    out = np.zeros((*a.shape[:-1], width), dtype=a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def _fit(plist: list[tuple[np.ndarray, np.ndarray]], rows: int, width: int) -> np.ndarray:
    """The parts of one quantity as (4, rows, width) min/max/sum/count."""
    out = np.zeros((4, rows, width), dtype=np.int64)
    r = 0
    for values, present in plist:
        n, k = present.shape
        k = min(k, width)
        if values.shape[0] == 1:
            v = np.where(present[:, :k], values[0, :, :k], 0)
            out[0, r : r + n, :k] = v
            out[1, r : r + n, :k] = v
            out[2, r : r + n, :k] = v
            out[3, r : r + n, :k] = present[:, :k]
        else:
            out[:, r : r + n, :k] = values[:, :, :k]
        r += n
    return out


def _raw_values(
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]],
    qs: list[Recorded],
    widths: list[int],
    rows: int,
) -> np.ndarray:
    """Raw parts as SI floats (rows, columns), NaN where nothing was measured."""
    out = np.full((rows, sum(widths)), np.nan)
    col = 0
    for q, width in zip(qs, widths, strict=True):
        r = 0
        for values, present in parts[q.code]:
            n, k = present.shape
            k = min(k, width)
            block = out[r : r + n, col : col + k]
            np.divide(values[0, :, :k], q.scale, out=block, where=present[:, :k])
            r += n
        col += width
    return out


def _bucket_ms(wanted_ms: float, unit_ms: int) -> int:
    """A bucket width of at least ``wanted_ms``, a whole multiple of ``unit_ms``."""
    return max(unit_ms, math.ceil(wanted_ms / unit_ms) * unit_ms)


def _si(stats: np.ndarray, scales: np.ndarray, raw: bool) -> dict[str, np.ndarray]:
    count = stats[3]
    missing = count == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = stats[2] / np.where(missing, 1, count) / scales
    if raw:
        return {"value": np.where(missing, np.nan, mean)}
    return {
        "min": np.where(missing, np.nan, stats[0] / scales),
        "mean": np.where(missing, np.nan, mean),
        "max": np.where(missing, np.nan, stats[1] / scales),
        "count": count.astype(np.float64),
    }


__all__ = [
    "BY_CODE",
    "Column",
    "Discharge",
    "HistoryQueries",
    "QueryError",
    "Recorded",
    "Series",
    "parse_cells",
]
