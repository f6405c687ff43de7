"""The store-and-forward buffer: records waiting for the broker, on disk.

SQLite in WAL mode under ``data_dir/mqtt/``: a committed row survives a
restart and a kill -9 of the gateway (synchronous=NORMAL: only a power cut
can take the last commits back). One row per record and sink (a record is
kept once for Sparkplug and once for JSON when both are on and only one of
them is waiting), ordered by ``rid``, the record's creation number, so a
replay keeps the order readings and events were made in.

Bounded: past ``max_bytes`` of queued bodies the oldest *readings* are
deleted and counted (the count is kept here too, across restarts); alarm
events are never deleted except after the broker acknowledged them.
The file also keeps the Sparkplug bdSeq, which must go on counting across
restarts.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("btms_gateway.mqtt")

READING, EVENT = "r", "e"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rid INTEGER NOT NULL,
    sink TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_sink_rid ON queue (sink, rid);
CREATE INDEX IF NOT EXISTS queue_kind_rid ON queue (kind, rid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    rid: int
    sink: str
    kind: str
    body: str


class DiskBuffer:
    """Used by one thread at a time (the plugin's session thread)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT COALESCE(SUM(length(body)), 0), MAX(rid) FROM queue")
        self.bytes, top = row.fetchone()
        self._next_rid = (top or 0) + 1
        self.dropped = self._meta("dropped_readings")
        self._warned_over = False

    def close(self) -> None:
        self._db.close()

    # -- numbering ------------------------------------------------------------
    def next_rid(self) -> int:
        """The next record number: above everything buffered, also after a restart."""
        rid = self._next_rid
        self._next_rid += 1
        return rid

    def next_bdseq(self) -> int:
        """The bdSeq for a new MQTT session (0..255, one more than the last one
        used, also across restarts), committed before the session is opened."""
        value = (self._meta("bdseq", -1) + 1) % 256
        self._set_meta("bdseq", value)
        return value

    # -- the queue --------------------------------------------------------------
    def put(self, rows: list[tuple[int, str, str, str]]) -> list[int]:
        """Append (rid, sink, kind, body) rows in one transaction; their ids."""
        ids = []
        with self._db:
            self._db.execute("BEGIN")
            for rid, sink, kind, body in rows:
                cur = self._db.execute(
                    "INSERT INTO queue (rid, sink, kind, body) VALUES (?, ?, ?, ?)",
                    (rid, sink, kind, body),
                )
                ids.append(int(cur.lastrowid or 0))
                self.bytes += len(body)
        if self.bytes > self.max_bytes:
            self._trim()
        return ids

    def head(self, sink: str, limit: int, after_rid: int = 0) -> list[Row]:
        """The oldest rows of ``sink`` with rid above ``after_rid``."""
        cur = self._db.execute(
            "SELECT id, rid, sink, kind, body FROM queue WHERE sink = ? AND rid > ? "
            "ORDER BY rid LIMIT ?",
            (sink, after_rid, limit),
        )
        return [Row(*r) for r in cur.fetchall()]

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._db:
            self._db.execute("BEGIN")
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                size = self._db.execute(
                    f"SELECT COALESCE(SUM(length(body)), 0) FROM queue WHERE id IN ({marks})",
                    chunk,
                ).fetchone()[0]
                self._db.execute(f"DELETE FROM queue WHERE id IN ({marks})", chunk)
                self.bytes -= size

    def pending(self, sink: str | None = None, kind: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM queue WHERE 1", list[str]()
        if sink is not None:
            sql, args = sql + " AND sink = ?", [*args, sink]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        return int(self._db.execute(sql, args).fetchone()[0])

    # -- the bound --------------------------------------------------------------
    def _trim(self) -> None:
        """Drop the oldest readings until the queue fits (events are kept)."""
        dropped = 0
        while self.bytes > self.max_bytes:
            rows = self._db.execute(
                "SELECT id, length(body) FROM queue WHERE kind = ? ORDER BY rid LIMIT 200",
                (READING,),
            ).fetchall()
            if not rows:
                if not self._warned_over:
                    self._warned_over = True
                    log.warning(
                        "MQTT buffer holds %d bytes of alarm events, over its bound of %d; "
                        "events are never dropped",
                        self.bytes,
                        self.max_bytes,
                    )
                break
            take = []
            for row_id, size in rows:
                if self.bytes <= self.max_bytes:
                    break
                take.append(row_id)
                self.bytes -= size
            with self._db:
                self._db.execute("BEGIN")
                marks = ",".join("?" * len(take))
                self._db.execute(f"DELETE FROM queue WHERE id IN ({marks})", take)
            dropped += len(take)
        if dropped:
            if self.dropped == 0:
                log.warning(
                    "MQTT buffer full (%d bytes): dropping the oldest readings", self.max_bytes
                )
            self.dropped += dropped
            self._set_meta("dropped_readings", self.dropped)

    # -- meta ---------------------------------------------------------------------
    def _meta(self, key: str, default: int = 0) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
