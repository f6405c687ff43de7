"""The event log: an append-only SQLite file in WAL mode that survives kill -9.

Every alarm transition is one row of ``events``; ``seq`` is an AUTOINCREMENT
rowid, so sequence numbers only ever grow, even after retention deleted the
newest-but-one rows, and a consumer can tell it missed events. The same
transaction that appends an event also updates ``active`` (the alarms raised
and not cleared), so after a crash the two always agree: a restart restores
exactly the alarms whose RAISED event was committed, and never raises them
again.

Durability: WAL with ``synchronous=FULL`` by default, i.e. the WAL is fsynced
at every commit, so a committed event survives a power cut as well as a
process crash. Alarm traffic is small and the engine commits one transaction
per evaluated string (not per event), so the fsync is affordable (see
docs/performance.md). ``synchronous=NORMAL`` in WAL mode is still safe
against kill -9 (the WAL is in the OS page cache; SQLite never corrupts) and
only loses the last commits on a power cut; it is offered as a setting.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..alarm_types import ActiveAlarm, AlarmEvent, EventKind, ObjectPath, Severity

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    ups TEXT, string TEXT, cell INTEGER,
    value REAL, lim REAL, unit TEXT NOT NULL, message TEXT NOT NULL, by TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE INDEX IF NOT EXISTS events_alarm ON events(alarm_id, seq);
CREATE TABLE IF NOT EXISTS active (
    alarm_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL, severity INTEGER NOT NULL,
    ups TEXT, string TEXT, cell INTEGER,
    value REAL, lim REAL, unit TEXT NOT NULL, message TEXT NOT NULL,
    raised_at REAL NOT NULL, ack_by TEXT, ack_at REAL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, args TEXT NOT NULL, created_at REAL NOT NULL,
    done_at REAL, ok INTEGER, result TEXT
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests(id) WHERE done_at IS NULL;
CREATE TABLE IF NOT EXISTS baseline (
    string TEXT NOT NULL, cell INTEGER NOT NULL, mohm REAL NOT NULL,
    source TEXT NOT NULL, set_at REAL NOT NULL, PRIMARY KEY (string, cell)
);
"""
EVENT_COLS = (
    "seq, at, kind, alarm_id, rule, severity, ups, string, cell, value, lim, unit, message, by"
)
ACTIVE_COLS = (
    "alarm_id, rule, severity, ups, string, cell, value, lim, unit, message, raised_at, "
    "ack_by, ack_at"
)


class EventLogError(RuntimeError):
    """The file is not an event log this version can use."""


class EventLog:
    """One connection, serialized by a lock: the engine (event loop thread)
    and plugins acknowledging from their worker threads share it."""

    def __init__(self, path: str | Path, *, synchronous: str = "full") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            self._open(synchronous)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise EventLogError(f"{self.path}: not a usable event log ({exc})") from exc
        except BaseException:
            self._db.close()
            raise

    def _open(self, synchronous: str) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 10000")
        # only takes effect on a new, empty file: must come before WAL creates it
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise EventLogError(f"{self.path}: cannot switch the event log to WAL mode")
        db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise EventLogError(f"{self.path}: schema version {version} is newer than this gateway")
        if version == 0:
            with self.transaction():
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- plumbing ---------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``with log.transaction() as db:`` one IMMEDIATE transaction, or none."""
        return _Transaction(self)

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    self._db.close()
                    self._db = None  # type: ignore[assignment]  # closed: a use after close is a bug, and fails loudly

    # --- writing ----------------------------------------------------------------
    def commit(
        self,
        events: Sequence[AlarmEvent] = (),
        *,
        upsert: Iterable[ActiveAlarm] = (),
        delete: Iterable[str] = (),
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[AlarmEvent]:
        """Append events (their ``seq`` is assigned here) and apply the matching
        changes to the active table in one transaction; returns the events
        with their sequence numbers once they are durable."""
        with self.transaction() as db:
            out = _append(db, events)
            _upsert(db, upsert)
            for alarm_id in delete:
                db.execute("DELETE FROM active WHERE alarm_id = ?", (alarm_id,))
            if extra is not None:
                extra(db)
        return out

    def rewrite(
        self,
        events: Sequence[AlarmEvent],
        active: Iterable[ActiveAlarm],
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[AlarmEvent]:
        """Append events and replace the whole active table, in one
        transaction: how the engine catches the log up after it could not be
        written (the events in order, with their own times; ``active`` is
        what the engine holds now). Returns the events with their seq."""
        with self.transaction() as db:
            out = _append(db, events)
            db.execute("DELETE FROM active")
            _upsert(db, active)
            if extra is not None:
                extra(db)
        return out

    def retain(self, max_age_s: float, max_bytes: float, now: float | None = None) -> int:
        """Delete the oldest events past the age limit, then past the size
        limit; freed pages are returned to the file system. Returns rows deleted."""
        now = time.time() if now is None else now
        deleted = 0
        with self.transaction() as db:
            deleted += db.execute("DELETE FROM events WHERE at < ?", (now - max_age_s,)).rowcount
        for _ in range(50):  # bounded: each round removes a tenth of what is left
            if self.used_bytes() <= max_bytes:
                break
            with self.transaction() as db:
                n = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                if n == 0:
                    break
                cut = max(1, n // 10)
                deleted += db.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)",
                    (cut,),
                ).rowcount
        with self.transaction() as db:  # answered CLI requests are kept for a day
            db.execute("DELETE FROM requests WHERE done_at < ?", (now - 86_400,))
        if deleted:
            with self._lock:
                # the pragma frees one page per step; executescript steps it to the end
                self._db.executescript("PRAGMA incremental_vacuum;")
        return deleted

    def used_bytes(self) -> int:
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    # --- reading ----------------------------------------------------------------
    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Sequence[str] = (),
        severities: Sequence[int] = (),
        string: str | None = None,
        alarm_id: str | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AlarmEvent]:
        where, args = _filters(
            since, until, kinds, severities, string, alarm_id, after_seq, before_seq
        )
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {EVENT_COLS} FROM events{where} ORDER BY seq {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_event(r) for r in rows]

    def read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def active(self) -> list[ActiveAlarm]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ACTIVE_COLS} FROM active ORDER BY raised_at"
            ).fetchall()
        return [_active(r) for r in rows]

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def verify(self) -> None:
        """Raise EventLogError naming the file if its pages are damaged."""
        with self._lock:
            problem = _quick_check(self._db)
        if problem is not None:
            raise EventLogError(corrupt_message(self.path, problem))


class _Transaction:
    def __init__(self, log: EventLog) -> None:
        self._log = log

    def __enter__(self) -> sqlite3.Connection:
        self._log._lock.acquire()
        try:
            self._log._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._log._lock.release()
            raise
        return self._log._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Commit, or roll back; a COMMIT that fails (disk full) is rolled
        back too, so the connection never stays inside a dead transaction,
        and a rollback SQLite already did itself is not an error."""
        db = self._log._db
        try:
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
            else:
                _rollback(db)
        finally:
            self._log._lock.release()


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _append(db: sqlite3.Connection, events: Sequence[AlarmEvent]) -> list[AlarmEvent]:
    out: list[AlarmEvent] = []
    for e in events:
        cur = db.execute(
            f"INSERT INTO events ({EVENT_COLS}) VALUES (NULL,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                e.at, e.kind.value, e.alarm_id, e.rule, int(e.severity), e.path.ups,
                e.path.string, e.path.cell, e.value, e.limit, e.unit, e.message, e.by,
            ),
        )  # fmt: skip
        out.append(replace(e, seq=int(cur.lastrowid or 0), persisted=True))
    return out


def _upsert(db: sqlite3.Connection, alarms: Iterable[ActiveAlarm]) -> None:
    for a in alarms:
        db.execute(
            f"INSERT OR REPLACE INTO active ({ACTIVE_COLS}) VALUES ({_marks(13)})",
            (
                a.alarm_id, a.rule, int(a.severity), a.path.ups, a.path.string,
                a.path.cell, a.value, a.limit, a.unit, a.message, a.raised_at,
                a.acknowledged_by, a.acknowledged_at,
            ),
        )  # fmt: skip


def _quick_check(db: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` finds the file sound, else its first
    findings. quick_check walks every page and b-tree (what a damaged page
    breaks) but skips matching index entries against rows, which makes it
    several times faster than integrity_check at the size limit
    (docs/alarms.md)."""
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    findings = [str(r[0]) for r in rows]
    return None if findings == ["ok"] else "; ".join(findings)


def corrupt_message(path: Path, problem: str) -> str:
    return (
        f"{path}: the event log is damaged ({problem}); stop the gateway, move the file "
        f"aside (keep it for recovery: `sqlite3 {path.name} .recover`) and start again "
        "with a new, empty log"
    )


def check_readonly(path: Path) -> str | None:
    """Open an existing event log read-only (never creating or changing
    anything, a running gateway may have it open) and check its pages; None
    when it is sound, else what is wrong with it.

    Even a read-only connection to a WAL database creates its -wal and -shm
    files when they are missing. They are missing exactly when no connection
    has the log open (the last one to close checkpoints and removes them):
    then the file alone is the whole log and ``immutable`` reads it without
    them, leaving nothing behind."""
    idle = not any(Path(f"{path}{tail}").exists() for tail in ("-wal", "-shm"))
    uri = f"file:{quote(str(path.resolve()))}?mode=ro{'&immutable=1' if idle else ''}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        return f"{path}: cannot be opened read-only ({exc})"
    try:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return f"{path}: not a usable event log ({exc})"
        if version > SCHEMA_VERSION:
            return f"{path}: schema version {version} is newer than this gateway"
        problem = _quick_check(db)
        return None if problem is None else corrupt_message(path, problem)
    finally:
        db.close()


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _filters(
    since: float | None,
    until: float | None,
    kinds: Sequence[str],
    severities: Sequence[int],
    string: str | None,
    alarm_id: str | None,
    after_seq: int | None,
    before_seq: int | None = None,
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("at >= ?", since),
        ("at < ?", until),
        ("string = ?", string),
        ("alarm_id = ?", alarm_id),
        ("seq > ?", after_seq),
        ("seq < ?", before_seq),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    for column, values in (("kind", list(kinds)), ("severity", list(severities))):
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _event(r: tuple[Any, ...]) -> AlarmEvent:
    return AlarmEvent(
        seq=r[0], at=r[1], kind=EventKind(r[2]), alarm_id=r[3], rule=r[4],
        severity=Severity(r[5]), path=ObjectPath(r[6], r[7], r[8]), value=r[9],
        limit=r[10], unit=r[11], message=r[12], by=r[13],
    )  # fmt: skip


def _active(r: tuple[Any, ...]) -> ActiveAlarm:
    return ActiveAlarm(
        alarm_id=r[0], rule=r[1], severity=Severity(r[2]), path=ObjectPath(r[3], r[4], r[5]),
        value=r[6], limit=r[7], unit=r[8], message=r[9], raised_at=r[10],
        acknowledged=r[11] is not None, acknowledged_by=r[11], acknowledged_at=r[12],
    )  # fmt: skip
