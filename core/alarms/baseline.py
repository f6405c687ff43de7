"""Per-cell internal-resistance baselines: the reference the resistance rules
compare against (IEEE 1188 practice: a VRLA cell's resistance is judged by
its rise over its own value when new, not by an absolute number).

A baseline is set by a command (a value, or "take the current readings") or
learned as the median of a cell's first N good readings; the median ignores
the odd bad measurement. Rows live in the event log's SQLite file so they
survive restarts; a learned value never overwrites one set by a command.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BaselineRow:
    string: str
    cell: int
    mohm: float
    source: str  # "learned" | "set"
    set_at: float


def load(db: sqlite3.Connection, string: str | None = None) -> list[BaselineRow]:
    sql = "SELECT string, cell, mohm, source, set_at FROM baseline"
    args: tuple[str, ...] = ()
    if string is not None:
        sql += " WHERE string = ?"
        args = (string,)
    return [BaselineRow(*r) for r in db.execute(sql + " ORDER BY string, cell", args)]


def save(db: sqlite3.Connection, rows: Iterable[BaselineRow]) -> None:
    """Write rows; learned rows only fill gaps, set rows replace."""
    for r in rows:
        verb = "INSERT OR REPLACE" if r.source == "set" else "INSERT OR IGNORE"
        db.execute(
            f"{verb} INTO baseline (string, cell, mohm, source, set_at) VALUES (?,?,?,?,?)",
            (r.string, r.cell, r.mohm, r.source, r.set_at),
        )


def forget(db: sqlite3.Connection, string: str, cell: int | None = None) -> int:
    """Delete baselines so the cells learn again from their next readings."""
    if cell is None:
        return db.execute("DELETE FROM baseline WHERE string = ?", (string,)).rowcount
    return db.execute("DELETE FROM baseline WHERE string = ? AND cell = ?", (string, cell)).rowcount


class CellBaselines:
    """One string's baselines in memory, plus the samples of cells still learning."""

    def __init__(self, string: str, samples_needed: int) -> None:
        self.string = string
        self.samples_needed = samples_needed
        self.values: dict[int, float] = {}
        self.learning: dict[int, list[float]] = {}

    def replace_all(self, rows: Iterable[BaselineRow]) -> None:
        self.values = {r.cell: r.mohm for r in rows if r.string == self.string}
        self.learning = {c: s for c, s in self.learning.items() if c not in self.values}

    def sample(self, cell: int, mohm: float, now: float) -> BaselineRow | None:
        """Add a good reading of a cell without baseline; returns the learned
        row when the cell has had enough readings."""
        samples = self.learning.setdefault(cell, [])
        samples.append(mohm)
        if len(samples) < self.samples_needed:
            return None
        del self.learning[cell]
        value = round(statistics.median(samples), 6)
        self.values[cell] = value
        return BaselineRow(self.string, cell, value, "learned", now)
