"""The history file: one SQLite database under ``gateway.data_dir``, written
by one thread (the writer), read by any number of query connections.

Layout (docs/history.md has the picture):

- ``segments``: what each commit wrote, one row per string and commit (every
  quantity, every cell, a few seconds), and the roll-up rows waiting for
  their block; small and short-lived;
- ``blocks``: one row per (tier, string, quantity, period) once a period has
  closed: raw 10 minutes, minutes 3 hours, hours 10 days; quantity 0 is the
  time column of the period;
- ``changes``: every change of a cell's resistance, kept for the battery's life;
- ``discharges``: the periods the string current was below the threshold;
  raw blocks that overlap one are kept until deleted.

SQLite in WAL mode with ``synchronous=NORMAL``: a commit is atomic, and one
that returned survives the process being killed (not necessarily a power
cut, which can take the last commits: never a corruption).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import codec, rollup
from .config import HistorySection
from .quantities import CURRENT, QUANTITIES, RESISTANCE, columns_of

log = logging.getLogger("btms_gateway.history")

FILE_NAME = "history.sqlite"
FORMAT = "1"
TIME = 0  #: quantity code of a block's time column
MS_H = 3_600_000
MS_D = 24 * MS_H


class Tier(NamedTuple):
    code: int
    name: str
    step_ms: int  #: bucket width (0: raw, one row per reading)
    block_ms: int  #: period of one block


RAW = Tier(0, "raw", 0, 600_000)
MINUTE = Tier(1, "minute", 60_000, 3 * MS_H)
HOUR = Tier(2, "hour", MS_H, 30 * MS_D)
TIERS = (RAW, MINUTE, HOUR)
TIER_BY_NAME = {t.name: t for t in TIERS}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strings(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS segments(
    tier INTEGER NOT NULL, string INTEGER NOT NULL, t0 INTEGER NOT NULL,
    t1 INTEGER NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS segments_key ON segments(tier, string, t0);
CREATE TABLE IF NOT EXISTS blocks(
    tier INTEGER NOT NULL, string INTEGER NOT NULL, quantity INTEGER NOT NULL,
    t0 INTEGER NOT NULL, t1 INTEGER NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_key ON blocks(tier, string, quantity, t0);
CREATE INDEX IF NOT EXISTS blocks_age ON blocks(tier, t1);
CREATE TABLE IF NOT EXISTS changes(
    string INTEGER NOT NULL, cell INTEGER NOT NULL, t INTEGER NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY(string, cell, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS discharges(
    string INTEGER NOT NULL, t0 INTEGER NOT NULL, t1 INTEGER NOT NULL,
    PRIMARY KEY(string, t0)) WITHOUT ROWID;
"""


class StoreDamaged(Exception):
    """The file failed its integrity check or is not a history file."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    )


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=10
        )
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    return db


@dataclass
class Compacted:
    """What closing one period produced (for counters and logs)."""

    rows: int = 0
    changes: int = 0
    discharges: int = 0


class HistoryStore:
    """The writer's side of the file. Not thread-safe: one thread owns it."""

    def __init__(self, path: Path, settings: HistorySection) -> None:
        self.path = path
        self.settings = settings
        self.db: sqlite3.Connection | None = None
        self.ids: dict[str, int] = {}
        self._resistance: dict[int, np.ndarray] = {}
        self._depth = 0  #: nesting of tx()

    # --- opening -------------------------------------------------------------------------
    def open(self) -> None:
        """Create the file or open and check it; StoreDamaged if it fails."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        try:
            db = connect(self.path)
        except sqlite3.Error as exc:
            raise StoreDamaged(f"{self.path}: cannot open: {exc}") from exc
        try:
            if new:
                db.execute("PRAGMA page_size = 8192")
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA journal_size_limit = 16777216")
            problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreDamaged(f"{self.path}: integrity check failed: {'; '.join(problems)}")
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            elif row[0] != FORMAT:
                raise StoreDamaged(f"{self.path}: history format {row[0]}, expected {FORMAT}")
            self.ids = {name: i for i, name in db.execute("SELECT id, name FROM strings")}
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreDamaged(f"{self.path}: {exc}") from exc
        except StoreDamaged:
            db.close()
            raise
        self.db = db

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA optimize")
            self.db.close()
            self.db = None

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed at the end or rolled back on any error
        (a COMMIT that fails, as on a full disk, included); a ``tx`` inside
        another joins it (a batch of periods closed in one commit)."""
        db = self.db
        assert db is not None
        if self._depth:
            self._depth += 1
            try:
                yield db
            finally:
                self._depth -= 1
            return
        if db.in_transaction:  # left open by a failure outside tx(): start clean
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def string_id(self, name: str) -> int:
        sid = self.ids.get(name)
        if sid is None:
            assert self.db is not None
            with self.tx() as db:
                db.execute("INSERT OR IGNORE INTO strings(name) VALUES (?)", (name,))
                (sid,) = db.execute("SELECT id FROM strings WHERE name = ?", (name,)).fetchone()
            self.ids[name] = sid
        return sid

    def resume_points(self) -> dict[int, tuple[int, int]]:
        """Per string id: (newest raw time written, end of the last closed raw
        period), so a restart neither rewrites nor reorders what is there."""
        assert self.db is not None
        out: dict[int, tuple[int, int]] = {}
        for sid, t1 in self.db.execute(
            "SELECT string, MAX(t1) FROM segments WHERE tier = 0 GROUP BY string"
        ):
            out[sid] = (t1, 0)
        for sid, t1, t0 in self.db.execute(
            "SELECT string, MAX(t1), MAX(t0) FROM blocks WHERE tier = 0 AND quantity = 0 "
            "GROUP BY string"
        ):
            last = max(out.get(sid, (t1, 0))[0], t1)
            out[sid] = (last, (t0 // RAW.block_ms + 1) * RAW.block_ms)
        return out

    # --- writing -------------------------------------------------------------------------
    def add_segments(self, items: list[tuple[int, np.ndarray, np.ndarray, int]]) -> None:
        """Raw rows, one segment per (string id, times, int32 values, cells), one commit."""
        with self.tx() as db:
            db.executemany(
                "INSERT INTO segments(tier, string, t0, t1, rows, data) VALUES (0, ?, ?, ?, ?, ?)",
                [
                    (sid, int(t[0]), int(t[-1]), len(t), codec.encode_segment(t, v, cells))
                    for sid, t, v, cells in items
                ],
            )

    def due_periods(self, tier: Tier, sid: int, before_ms: int) -> list[int]:
        """Starts of the periods of ``tier`` with segments waiting, ending by ``before_ms``."""
        assert self.db is not None
        b = tier.block_ms
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT t0 / ? * ? FROM segments WHERE tier = ? AND string = ? "
                "AND t0 < ? ORDER BY 1",
                (b, b, tier.code, sid, before_ms // b * b),
            )
        ]

    def _segments(
        self, tier: Tier, sid: int, start: int
    ) -> tuple[list[int], list[tuple[Any, ...]]]:
        assert self.db is not None
        rowids, parts = [], []
        for rowid, data in self.db.execute(
            "SELECT rowid, data FROM segments WHERE tier = ? AND string = ? AND t0 >= ? "
            "AND t0 < ? ORDER BY t0",
            (tier.code, sid, start, start + tier.block_ms),
        ):
            rowids.append(rowid)
            try:
                parts.append(codec.decode_segment(data))
            except codec.CorruptBlock as exc:
                log.error("history: dropping a damaged %s segment of string %d: %s", tier.name,
                          sid, exc)  # fmt: skip
        return rowids, parts

    def _gathered(
        self, tier: Tier, sid: int, start: int
    ) -> tuple[list[int], list[tuple[Any, ...]], int, np.ndarray] | None:
        """The segments of one period: (row ids, parts, widest cell count,
        times), or None (and the unreadable ones deleted) when none is left."""
        rowids, parts = self._segments(tier, sid, start)
        if not parts:
            self._delete(rowids)
            return None
        return rowids, parts, max(p[2] for p in parts), np.concatenate([p[0] for p in parts])

    def close_raw(self, sid: int, start: int) -> Compacted:
        """Turn the raw segments of one 10-minute period into blocks, and derive
        the minute roll-up, resistance changes and discharge runs from them."""
        done = Compacted()
        found_parts = self._gathered(RAW, sid, start)
        if found_parts is None:
            return done
        rowids, parts, cells, t = found_parts
        values = np.concatenate([codec.widen(p[1], p[2], cells, codec.NULL) for p in parts])
        minute_t, minute = rollup.rollup_raw(t, values, MINUTE.step_ms)
        res = values[:, columns_of(RESISTANCE, cells)]
        before = self._last_resistance(sid)
        found, self._resistance[sid] = rollup.changes(t, res, before)
        limit = round(self.settings.discharge_current_a * CURRENT.scale)
        runs = rollup.runs_below(t, values[:, columns_of(CURRENT, cells)][:, 0], limit)
        blocks = [(TIME, 1, codec.encode_block(t[:, None]))]
        for q in QUANTITIES:
            part = values[:, columns_of(q, cells)]
            data = codec.encode_block(part.astype(np.int64), part != codec.NULL)
            blocks.append((q.code, part.shape[1], data))
        with self.tx() as db:
            _insert_blocks(db, RAW, sid, t, blocks)
            self._add_segment(db, MINUTE, sid, minute_t, minute, cells)
            db.executemany(
                "INSERT OR REPLACE INTO changes(string, cell, t, value) VALUES (?, ?, ?, ?)",
                [(sid, c + 1, tt, v) for c, tt, v in found],
            )
            for a, b in runs:
                self._add_discharge(db, sid, a, b)
            self._delete(rowids, db)
        done.rows, done.changes, done.discharges = len(t), len(found), len(runs)
        return done

    def close_rollup(self, tier: Tier, sid: int, start: int) -> Compacted:
        """Turn the roll-up segments of one period of ``tier`` into blocks (and,
        for minutes, the hour roll-up of them)."""
        done = Compacted()
        found_parts = self._gathered(tier, sid, start)
        if found_parts is None:
            return done
        rowids, parts, cells, t = found_parts
        stats = np.concatenate(
            [codec.widen(p[1], p[2], cells, 0).reshape(4, len(p[0]), -1) for p in parts], axis=1
        )
        blocks = [(TIME, 1, codec.encode_block(t[:, None]))]
        for q in QUANTITIES:
            part = codec.stats_to_stored(stats[:, :, columns_of(q, cells)])
            data = codec.encode_block(part.reshape(-1, part.shape[2]), stats=4)
            blocks.append((q.code, part.shape[2], data))
        with self.tx() as db:
            _insert_blocks(db, tier, sid, t, blocks)
            if tier is MINUTE:
                hour_t, hour = rollup.rollup_stats(t, stats, HOUR.step_ms)
                self._add_segment(db, HOUR, sid, hour_t, hour, cells)
            self._delete(rowids, db)
        done.rows = len(t)
        return done

    @staticmethod
    def _add_segment(
        db: sqlite3.Connection, tier: Tier, sid: int, t: np.ndarray, stats: np.ndarray, cells: int
    ) -> None:
        data = codec.encode_segment(t, stats.reshape(-1, stats.shape[2]), cells, stats=4)
        db.execute(
            "INSERT INTO segments(tier, string, t0, t1, rows, data) VALUES (?, ?, ?, ?, ?, ?)",
            (tier.code, sid, int(t[0]), int(t[-1]), len(t), data),
        )

    def load_rollups(
        self, tier: Tier, sid: int, t_ms: np.ndarray, stats: np.ndarray, cells: int
    ) -> None:
        """Bulk-load roll-up rows (4, n, columns) of a tier as if they had been
        rolled up from readings: benches fill ten years of hours this way."""
        with self.tx() as db:
            self._add_segment(db, tier, sid, t_ms, stats, cells)

    def _add_discharge(self, db: sqlite3.Connection, sid: int, a: int, b: int) -> None:
        """A run below the threshold; one that continues the last period (less
        than a minute apart) extends it."""
        last = db.execute(
            "SELECT t0, t1 FROM discharges WHERE string = ? ORDER BY t0 DESC LIMIT 1", (sid,)
        ).fetchone()
        if last is not None and a - last[1] <= 60_000:
            db.execute(
                "UPDATE discharges SET t1 = MAX(t1, ?) WHERE string = ? AND t0 = ?",
                (b, sid, last[0]),
            )
        else:
            db.execute("INSERT OR REPLACE INTO discharges VALUES (?, ?, ?)", (sid, a, b))

    def _last_resistance(self, sid: int) -> np.ndarray:
        if sid not in self._resistance:
            assert self.db is not None
            rows = self.db.execute(
                "SELECT cell, value FROM changes c WHERE string = ? AND t = "
                "(SELECT MAX(t) FROM changes WHERE string = c.string AND cell = c.cell)",
                (sid,),
            ).fetchall()
            last = np.full(max((c for c, _ in rows), default=0), codec.NULL, dtype=np.int64)
            for cell, value in rows:
                last[cell - 1] = value
            self._resistance[sid] = last
        return self._resistance[sid]

    def _delete(self, rowids: list[int], db: sqlite3.Connection | None = None) -> None:
        if not rowids:
            return
        if db is None:
            with self.tx() as db2:
                self._delete(rowids, db2)
            return
        db.executemany("DELETE FROM segments WHERE rowid = ?", [(r,) for r in rowids])

    # --- retention and the budget ----------------------------------------------------------
    def apply_retention(self, now_ms: int) -> int:
        """Delete what is older than each tier keeps; raw blocks inside a
        discharge period stay. -> blocks deleted."""
        s = self.settings
        raw_h = now_ms - int(s.raw_retention_hours * MS_H)
        minute_h = now_ms - int(s.minute_retention_days * MS_D)
        hour_h = now_ms - int(s.hour_retention_days * MS_D)
        with self.tx() as db:
            n = db.execute(
                "DELETE FROM blocks WHERE tier = 0 AND t1 < ? AND NOT EXISTS (SELECT 1 FROM "
                "discharges d WHERE d.string = blocks.string AND d.t0 <= blocks.t1 "
                "AND d.t1 >= blocks.t0)",
                (raw_h,),
            ).rowcount
            for tier, horizon in ((MINUTE, minute_h), (HOUR, hour_h)):
                n += db.execute(
                    "DELETE FROM blocks WHERE tier = ? AND t1 < ?", (tier.code, horizon)
                ).rowcount
                db.execute("DELETE FROM segments WHERE tier = ? AND t1 < ?", (tier.code, horizon))
        return n

    def used_bytes(self) -> int:
        """Bytes of the file in use (free pages excluded). The WAL beside it
        is not counted: checkpoints keep it under ``journal_size_limit``."""
        assert self.db is not None
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def enforce_budget(self) -> list[str]:
        """Delete the oldest day of the least valuable data until the file fits
        its budget: raw outside discharges, then minutes, then discharge raw,
        then hours, then resistance changes. -> what was deleted."""
        budget = int(self.settings.budget_mb * 1_000_000)
        deleted: list[str] = []
        order = ("raw", "minute", "discharge", "hour", "changes")
        for what in order:
            while self.used_bytes() > budget:
                span = self._delete_oldest_day(what)
                if span is None:
                    break
                deleted.append(f"{what} {span}")
        if deleted:
            self.vacuum()
        return deleted

    def _delete_oldest_day(self, what: str) -> str | None:
        assert self.db is not None
        discharge = (
            "EXISTS (SELECT 1 FROM discharges d WHERE d.string = blocks.string "
            "AND d.t0 <= blocks.t1 AND d.t1 >= blocks.t0)"
        )
        if what == "changes":
            table, where, args = "changes", "1", ()
            col = "t"
        else:
            table, col = "blocks", "t0"
            tier = {"raw": 0, "discharge": 0, "minute": 1, "hour": 2}[what]
            where = f"tier = {tier}"
            if what == "raw":
                where += f" AND NOT {discharge}"
            elif what == "discharge":
                where += f" AND {discharge}"
            args = ()
        oldest = self.db.execute(f"SELECT MIN({col}) FROM {table} WHERE {where}", args).fetchone()
        if oldest is None or oldest[0] is None:
            return None
        until = oldest[0] + MS_D
        with self.tx() as db:
            db.execute(f"DELETE FROM {table} WHERE {where} AND {col} < ?", (*args, until))
            if what == "discharge":
                db.execute("DELETE FROM discharges WHERE t1 < ?", (until,))
        return f"before {until}"

    def vacuum(self) -> None:
        """Give free pages back to the file system (auto_vacuum = INCREMENTAL)."""
        assert self.db is not None
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA incremental_vacuum")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def free_disk_mb(self) -> float:
        return shutil.disk_usage(self.path.parent).free / 1e6

    def probe(self) -> None:
        """A small write: raises if the disk is still full."""
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '1')")


def _insert_blocks(
    db: sqlite3.Connection,
    tier: Tier,
    sid: int,
    t: np.ndarray,
    blocks: list[tuple[int, int, bytes]],
) -> None:
    """One period's blocks: (quantity code, columns, bytes) each."""
    db.executemany(
        "INSERT INTO blocks(tier, string, quantity, t0, t1, rows, cols, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(tier.code, sid, code, int(t[0]), int(t[-1]), len(t), k, d) for code, k, d in blocks],
    )
