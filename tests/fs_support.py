"""File systems that fail for real, for the event log and data_dir tests (no
tests here): a small tmpfs that a filler file makes full, and a read-only
bind mount. The tests run as root (CI too), where chmod does not stop a
write; a mount is what does. A machine where mounting is not allowed fails
these tests with the reason rather than skipping them."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (these tests need root): {r.stderr.strip()}")


def _umount(path: Path) -> None:
    r = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:  # still busy (a test that failed half-way): detach it
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a directory) bind-mounted read-only onto itself for the block:
    even root gets EROFS."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield path
    finally:
        _umount(path)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write ``directory/name`` until its file system has no byte left."""
    filler = directory / name
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return filler


def fill_but(directory: Path, leave: int, name: str = "filler") -> Path:
    """Write ``directory/name`` until about ``leave`` bytes of its file system
    are left free (a disk nearly full, rather than full to the last byte)."""
    filler = directory / name
    free = shutil.disk_usage(directory).free - leave
    with open(filler, "wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            f.write(b"\0" * chunk)
            free -= chunk
    return filler
