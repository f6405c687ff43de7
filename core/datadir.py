"""The gateway's data directory (``gateway.data_dir``): who owns it, and where it is.

A running gateway holds an exclusive ``flock`` on ``<data_dir>/gateway.lock``
for as long as it runs, so a second gateway on the same directory refuses to
start (two writers would interleave their alarm decisions in one event log),
and ``btms-gateway restore`` can tell that the files it would replace are in
use. The kernel drops the lock when the process ends, however it ends (kill
-9, a crash), so a lock is never stale; the file itself stays (deleting a lock
file races with the next locker) and holds the pid of the last holder for
the error messages.

The service passes its systemd ``StateDirectory`` with ``run --data-dir``,
which overrides ``gateway.data_dir`` of the file (``with_data_dir``).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import replace
from pathlib import Path
from typing import IO

from .config_load import LoadedConfig

LOCK_NAME = "gateway.lock"


class DataDirBusy(RuntimeError):
    """Another process holds the data directory's lock."""


class DataDirLock:
    """``DataDirLock.acquire(path)`` or fail with DataDirBusy; ``release()`` when done."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, data_dir: Path, purpose: str = "gateway") -> DataDirLock:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DataDirBusy(f"{data_dir} is in use by {holder} (lock {path})") from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{purpose} pid {os.getpid()}\n")
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None


def in_use(data_dir: Path) -> str | None:
    """Who holds ``data_dir``'s lock right now (None: nobody), without creating anything."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "another process"
    except OSError:
        return None
    return None


def with_data_dir(loaded: LoadedConfig, data_dir: Path | None) -> LoadedConfig:
    """The same configuration with ``gateway.data_dir`` replaced (None: unchanged)."""
    if data_dir is None:
        return loaded
    cfg = loaded.gateway
    section = cfg.gateway.model_copy(update={"data_dir": Path(data_dir)})
    return replace(loaded, gateway=cfg.model_copy(update={"gateway": section}))
