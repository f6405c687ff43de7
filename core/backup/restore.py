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

The files the config names (override files, TLS certificates and keys) go
where the restored config will look for them: a relative path from the
config's new folder, an absolute one where it says. Those inside the
config's folder are put back with the config; one outside it (``/etc/ssl``,
``../shared``) is written only when asked (``force_paths``), otherwise
reported with whether it is there, the same or different. A file replaced
is kept in the set-aside folder, like the config.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..datadir import LOCK_NAME, DataDirBusy, DataDirLock
from .archive import ASIDE_PREFIX, STAGING_PREFIX, BackupError, Entry, Origin, sha256_of
from .references import normalized
from .verify import Verified, verify


@dataclass
class Restored:
    verified: Verified
    data_dir: Path
    files: list[Path] = field(default_factory=list)
    config: str = ""
    #: what became of each file the config names, one line each
    referenced: list[str] = field(default_factory=list)
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


def _write(target: Path, data: bytes, mode: int, like: os.stat_result | None = None) -> None:
    """Replace ``target`` with ``data`` at once (a partial file never has its
    name), with ``mode``, and the owner and group of ``like`` (the file it
    replaces) when run as root."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(partial, mode)
    if like is not None and os.geteuid() == 0:
        os.chown(partial, like.st_uid, like.st_gid)
    os.replace(partial, target)


def _place_config(verified: Verified, config: Path, aside: Path) -> str:
    archived = verified.path(verified.config).read_bytes()
    if config.exists() and config.read_bytes() == archived:
        return f"{config} unchanged (the same as the archived one)"
    like = config.stat() if config.exists() else None
    mode = like.st_mode & 0o777 if like is not None else 0o600
    kept = ""
    if config.exists():
        (aside / "config").mkdir(parents=True, exist_ok=True)
        shutil.copy2(config, aside / "config" / config.name)
        kept = f" (the previous one is in {aside / 'config'})"
    _write(config, archived, mode, like)
    return f"restored {config}{kept}"


def target_of(ref: Origin, config: Path) -> Path:
    """Where the restored ``config`` looks for a file it names."""
    path = Path(ref.path)
    return normalized(path if path.is_absolute() else config.absolute().parent / path)


def is_inside(target: Path, folder: Path) -> bool:
    """Whether ``target`` lies in ``folder`` or below, links followed (a
    link in the folder to elsewhere is elsewhere)."""
    real_folder = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(target.parent))
    return real == real_folder or real_folder in real.parents


def _place_referenced(
    verified: Verified, entry: Entry, config: Path, aside: Path, force_paths: bool
) -> str:
    assert entry.ref is not None
    target = target_of(entry.ref, config)
    named = f"{', '.join(entry.ref.keys)} = {entry.ref.path!r}"
    if target == config.absolute():
        return f"not restored: {named} is the config file itself"
    if target.is_dir():
        return f"not restored: {named} is a folder here, {target}"
    if target.is_file() and sha256_of(target) == entry.sha256:
        return f"{target} unchanged (the same as the archived one)"
    if not force_paths and not is_inside(target, config.parent):
        where = "" if Path(entry.ref.path).is_absolute() else f" ({target})"
        state = "differs from the archived one, kept" if target.exists() else "is missing"
        return (
            f"not restored, outside {config.parent}: {named}{where} {state}; "
            "--force-paths puts the archived one there"
        )
    kept = ""
    mode, like = entry.ref.mode, None
    if target.exists():
        like = target.stat()  # a key given to a group stays so
        mode = like.st_mode & 0o7777
        keep = aside / entry.name
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, keep)
        kept = f" (the previous one is in {keep.parent})"
    try:
        _write(target, verified.path(entry).read_bytes(), mode, like)
    except OSError as exc:
        raise BackupError(
            f"cannot restore {target} ({named}): {exc}; the data and the config were restored"
        ) from None
    return f"restored {target}{kept}"


def restore(
    archive: Path,
    *,
    data_dir: Path,
    config: Path | None,
    force: bool = False,
    force_paths: bool = False,
) -> Restored:
    """Restore ``archive`` into ``data_dir``, and its config to ``config`` with
    the files it names (unless None: those are left as they are);
    ``force_paths``: also those outside the config's folder."""
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
        if config is None:
            result.referenced = [
                f"not restored (--keep-config): {', '.join(e.ref.keys)} = {e.ref.path!r}"
                for e in verified.referenced
                if e.ref is not None
            ]
        if config is not None:
            aside.mkdir(exist_ok=True)
            result.config = _place_config(verified, config, aside)
            result.referenced = [
                _place_referenced(verified, entry, config, aside, force_paths)
                for entry in verified.referenced
            ]
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
