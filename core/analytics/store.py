"""Discharge summaries on disk: ``<data_dir>/discharges.sqlite``, beside the
history file that keeps every raw reading of each discharge.

A summary is small (a few kB for 120 cells) and written once, when its
discharge ends, so one SQLite file in WAL mode with ``synchronous = FULL``
is enough: a summary survives a crash or a power cut once written. Rows are
never deleted by the gateway (``btms-gateway discharges delete``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from .capture import DischargeSummary

FILE_NAME = "discharges.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS discharges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    string TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS discharges_start ON discharges(start);
"""


class DischargeStore:
    """Safe from any thread (one connection behind a lock)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10.0)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add(self, summary: DischargeSummary) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO discharges (string, start, end, summary) VALUES (?,?,?,?)",
                (summary.string, summary.start, summary.end, json.dumps(summary.to_json())),
            )
            return int(cur.lastrowid or 0)

    def list(
        self, string: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[DischargeSummary]:
        """Newest first."""
        sql = "SELECT id, summary FROM discharges WHERE (? IS NULL OR string = ?)"
        args: list[object] = [string, string]
        if since is not None:
            sql += " AND end >= ?"
            args.append(since)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_summary(i, text) for i, text in rows]

    def get(self, event_id: int) -> DischargeSummary | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, summary FROM discharges WHERE id = ?", (event_id,)
            ).fetchone()
        return None if row is None else _summary(*row)

    def delete(self, event_id: int) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM discharges WHERE id = ?", (event_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _summary(event_id: int, text: str) -> DischargeSummary:
    data = json.loads(text)
    data["id"] = event_id
    return DischargeSummary.from_json(data)
