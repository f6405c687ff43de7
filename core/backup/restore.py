"""Putting a checked archive back in place.

Order of work, so that a bad archive or a running gateway changes nothing:
take the data directory's lock (core/datadir.py; a running gateway holds it,
so restore refuses unless forced, and no gateway can start while a restore
runs), unpack and check everything into a staging folder inside data_dir
(the same file system, so the final moves are renames), and only then move
the current contents aside into ``restore-backup-<time>/`` and the restored
files in. The data directory ends up holding exactly the archive's files:
a stale ``-wal`` next to a restored database would otherwise be replayed
into it. Run as root (a service's files belong to its own user), restored
files are given the data directory's owner.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..datadir import LOCK_NAME, DataDirBusy, DataDirLock
from .archive import ASIDE_PREFIX, STAGING_PREFIX, BackupError
from .verify import Verified, verify


@dataclass
class Restored:
    verified: Verified
    data_dir: Path
    files: list[Path] = field(default_factory=list)
    config: str = ""
    aside: Path | None = None


def _own_like(paths: list[Path], data_dir: Path) -> None:
    """Give restored files (and folders made for them) the data directory's owner."""
    if os.geteuid() != 0:
        return
    owner = data_dir.stat()
    for path in paths:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _place_data(verified: Verified, data_dir: Path, aside: Path) -> tuple[list[Path], list[str]]:
    """Move the current contents aside and the staged files in; undo both on failure."""
    current = [
        p
        for p in sorted(data_dir.iterdir())
        if p.name != LOCK_NAME and not p.name.startswith((ASIDE_PREFIX, STAGING_PREFIX))
    ]
    moved: list[str] = []
    placed: list[Path] = []
    made: list[Path] = []
    try:
        for path in current:
            aside.mkdir(exist_ok=True)
            os.replace(path, aside / path.name)
            moved.append(path.name)
        for entry in verified.data:
            target = data_dir / entry.name.removeprefix("data/")
            for parent in reversed(target.relative_to(data_dir).parents[:-1]):
                if not (data_dir / parent).exists():
                    (data_dir / parent).mkdir()
                    made.append(data_dir / parent)
            os.replace(verified.path(entry), target)
            placed.append(target)
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        for name in moved:
            os.replace(aside / name, data_dir / name)
        raise BackupError(f"restore into {data_dir} failed and was undone: {exc}") from exc
    return made + placed, moved


def _place_config(verified: Verified, config: Path, aside: Path) -> str:
    archived = verified.path(verified.config).read_bytes()
    if config.exists() and config.read_bytes() == archived:
        return f"{config} unchanged (the same as the archived one)"
    mode = config.stat().st_mode & 0o777 if config.exists() else 0o600
    kept = ""
    if config.exists():
        (aside / "config").mkdir(parents=True, exist_ok=True)
        shutil.copy2(config, aside / "config" / config.name)
        kept = f" (the previous one is in {aside / 'config'})"
    config.parent.mkdir(parents=True, exist_ok=True)
    partial = config.with_name(config.name + ".restoring")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(archived)
    os.chmod(partial, mode)
    os.replace(partial, config)
    return f"restored {config}{kept}"


def restore(
    archive: Path,
    *,
    data_dir: Path,
    config: Path | None,
    force: bool = False,
) -> Restored:
    """Restore ``archive`` into ``data_dir`` (and its config to ``config`` unless None)."""
    lock: DataDirLock | None = None
    try:
        lock = DataDirLock.acquire(data_dir, purpose="restore")
    except DataDirBusy as exc:
        if not force:
            raise BackupError(
                f"{exc}: stop the gateway first (systemctl stop btms-gateway), or give --force"
            ) from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    staging = data_dir / f"{STAGING_PREFIX}{stamp}"
    aside = data_dir / f"{ASIDE_PREFIX}{stamp}"
    try:
        staging.mkdir()
        verified = verify(archive, staging)
        placed, moved = _place_data(verified, data_dir, aside)
        result = Restored(verified, data_dir, placed, aside=aside if moved else None)
        if config is not None:
            aside.mkdir(exist_ok=True)
            result.config = _place_config(verified, config, aside)
            result.aside = aside
            if not any(aside.iterdir()):
                aside.rmdir()
                result.aside = None
        _own_like(placed, data_dir)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            lock.release()
