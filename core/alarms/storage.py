"""Is ``gateway.data_dir`` fit to hold the event log? Checked before start.

A data_dir that is a file, read-only, on a full disk or damaged used to pass
``check-config`` and crash ``run`` with a traceback before any protocol came
up. Both now report it like any configuration problem: the file, the key
``gateway.data_dir`` and what was expected. ``check-config`` changes nothing
(the probe file is removed, a missing directory is not created, the event
log is opened read-only, a running gateway may have it open); ``run``
creates the directory as the gateway would, and the gateway checks the
log's pages itself when it opens it (EventLog.verify).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from ..config_base import Problem
from .eventlog import EventLogError, check_readonly

KEY = "gateway.data_dir"
LOG_NAME = "events.sqlite"
#: what the probe writes (and fsyncs): a full disk fails it, an empty file would not
PROBE_BYTES = 64 * 1024

_FOUND = {
    errno.EROFS: "a read-only file system",
    errno.ENOSPC: "a full disk (no space left)",
    errno.EDQUOT: "a full disk quota",
    errno.EACCES: "no permission to write",
    errno.EPERM: "no permission to write",
}


def problems(data_dir: Path, *, create: bool = False) -> list[Problem]:
    """What keeps ``data_dir`` from holding the event log (empty: nothing).
    ``create``: make a missing directory (``run``); otherwise check that it
    could be made (``check-config``)."""
    where = Path(data_dir)
    if where.exists() and not where.is_dir():
        return [Problem(KEY, f"a directory for the event log, found a file: {where}")]
    if not where.exists():
        if create:
            try:
                where.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return [Problem(KEY, f"a directory the gateway can create, found {_why(exc)}")]
        else:
            parent = _existing_ancestor(where)
            if not parent.is_dir():
                return [Problem(KEY, f"a directory the gateway can create, found a file: {parent}")]
            trouble = _probe(parent)
            if trouble is not None:
                return [Problem(KEY, f"a directory the gateway can create, found {trouble}")]
            return []
    trouble = _probe(where)
    if trouble is not None:
        return [Problem(KEY, f"a directory the gateway can write to, found {trouble}")]
    log = where / LOG_NAME
    if not create and log.exists():
        damage = check_readonly(log)
        if damage is not None:
            return [Problem(KEY, f"an event log the gateway can use, found {damage}")]
    return []


def problem_of(exc: OSError | EventLogError) -> Problem:
    """A failure to open the event log at start, said as a config problem."""
    if isinstance(exc, EventLogError):
        return Problem(KEY, f"an event log the gateway can use, found {exc}")
    return Problem(KEY, f"a directory the gateway can write to, found {_why(exc)}")


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def _probe(directory: Path) -> str | None:
    """Write, fsync and remove a probe file; None when that worked."""
    try:
        fd, name = tempfile.mkstemp(prefix=".btms-write-check-", dir=directory)
    except OSError as exc:
        return _why(exc, directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return _why(exc, directory)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return None


def _why(exc: OSError, where: Path | None = None) -> str:
    what = _FOUND.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"{what}: {where if where is not None else exc.filename}"
