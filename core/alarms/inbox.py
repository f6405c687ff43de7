"""Requests from the command line to the running gateway, through the db.

The CLI is another process, so it cannot call the engine. It inserts a row in
``requests``; the running engine applies pending rows in ``tick()`` (about
once a second), writes the outcome back, and the CLI waits for that outcome
with a deadline. A request older than ``request_ttl_s`` is marked expired
instead of applied: an acknowledge typed while the gateway was down must not
take effect hours later by surprise. No gateway process, no sockets, no
polling of a PID file: the SQLite file both sides already use is the channel.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .eventlog import EventLog

ACK = "ack"
BASELINE_RELOAD = "baseline_reload"
BASELINE_CAPTURE = "baseline_capture"


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    kind: str
    args: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    done: bool
    ok: bool
    result: str


def submit(log: EventLog, kind: str, **args: Any) -> int:
    with log.transaction() as db:
        cur = db.execute(
            "INSERT INTO requests (kind, args, created_at) VALUES (?,?,?)",
            (kind, json.dumps(args), time.time()),
        )
        return int(cur.lastrowid or 0)


def pending(log: EventLog) -> list[Request]:
    rows = log.read(
        "SELECT id, kind, args, created_at FROM requests WHERE done_at IS NULL ORDER BY id"
    )
    return [Request(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]


def finish(log: EventLog, request_id: int, ok: bool, result: str) -> None:
    with log.transaction() as db:
        db.execute(
            "UPDATE requests SET done_at = ?, ok = ?, result = ? WHERE id = ?",
            (time.time(), int(ok), result, request_id),
        )


def outcome(log: EventLog, request_id: int) -> Outcome:
    rows = log.read("SELECT done_at, ok, result FROM requests WHERE id = ?", (request_id,))
    row = rows[0] if rows else None
    if row is None or row[0] is None:
        return Outcome(False, False, "")
    return Outcome(True, bool(row[1]), row[2] or "")


def wait(log: EventLog, request_id: int, timeout_s: float) -> Outcome:
    """Poll the request's row until the gateway answers or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = outcome(log, request_id)
        if got.done or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)
