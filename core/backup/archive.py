"""Writing a backup archive: the config file, the files it names, and
everything under data_dir.

One ``.tar.gz`` whose first member is ``manifest.json`` (format, version,
time, and each file's size and sha256), then ``config/<name>``,
``refs/<n>/<name>`` (the files the config names that the gateway reads to
run: register-override files, TLS certificates and keys, see
references.py; the manifest records the path as the config gives it, where
it was read from, the keys naming it and its mode) and ``data/<path under
data_dir>``. SQLite databases (found by their header,
whatever their name: the event log with the learned baselines, and any
other store a plugin keeps there) are copied through SQLite's online backup
API, which reads one consistent snapshot while the gateway goes on writing
(WAL lets it); their ``-wal``/``-shm``/``-journal`` files are never copied,
the snapshot already holds what they held. Other regular files are copied
as they are. The lock file and earlier restores' set-aside folders are left
out. A named file that cannot be archived (missing, or relative to the
gateway's working directory) is listed in the manifest's ``not_archived``
with why, and the backup goes on: it is what the site has.

The archive holds the config and so its secrets (SNMP keys, TLS private
keys): it is created readable by its owner only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import socket
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..datadir import LOCK_NAME
from ..version import __version__
from .references import Reference

#: 2: referenced files (``refs/``, kind "referenced"); format 1 archives are read too
FORMAT = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
SQLITE_MAGIC = b"SQLite format 3\x00"
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
#: folders restore creates under data_dir, never part of a backup
ASIDE_PREFIX = "restore-backup-"
STAGING_PREFIX = ".restore-staging-"
CHUNK = 1 << 20


class BackupError(Exception):
    """Backup or restore cannot go on; ``str()`` says why."""


@dataclass(frozen=True)
class Origin:
    """Where a referenced file came from, as its manifest entry's ``ref``."""

    path: str  # as the config names it: relative to the config's folder, or absolute
    absolute: str  # the file it was read from
    keys: tuple[str, ...]  # the config's keys naming it ("strings[1].register_overrides")
    mode: int  # its permission bits (a private key's 0600, 0640 for a group)


@dataclass(frozen=True)
class Entry:
    name: str  # the member's name in the archive: config/..., refs/..., data/...
    kind: str  # "config", "referenced", "sqlite" or "file"
    size: int
    sha256: str
    ref: Origin | None = None  # kind "referenced" only

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {k: getattr(self, k) for k in ("name", "kind", "size", "sha256")}
        if self.ref is not None:
            out["ref"] = {**asdict(self.ref), "keys": list(self.ref.keys)}
        return out


def is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def data_files(data_dir: Path) -> list[Path]:
    """The files under data_dir a backup holds, relative to it, sorted."""
    out = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if rel.parts[0].startswith((ASIDE_PREFIX, STAGING_PREFIX)):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if rel == Path(LOCK_NAME) or path.name.endswith(SIDE_FILE_SUFFIXES):
            continue
        out.append(rel)
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live database. The source is opened read-write on
    purpose: a read-only connection leaves -wal/-shm files behind, owned by
    whoever ran the backup (root), which the gateway's own user could then not
    open; a read-write one removes them again when it is the last to close."""
    src = sqlite3.connect(source, timeout=30.0)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def referenced(references: Sequence[Reference]) -> tuple[list[Origin], list[dict[str, str]]]:
    """The files to archive (one per path as written, with every key naming
    it), and the ones that cannot be, each with why."""
    keys: dict[tuple[str, Path], list[str]] = {}
    skipped = []
    for ref in references:
        if ref.path is None:
            why = (
                "relative to the gateway's working directory, which a backup cannot know: "
                "give it as an absolute path"
            )
        elif not ref.path.exists():
            why = f"{ref.path} does not exist"
        elif not ref.path.is_file():
            why = f"{ref.path} is not a regular file"
        else:
            keys.setdefault((ref.given, ref.path), []).append(ref.key)
            continue
        skipped.append({"key": ref.key, "path": ref.given, "why": why})
    origins = [
        Origin(given, str(path), tuple(names), path.stat().st_mode & 0o7777)
        for (given, path), names in keys.items()
    ]
    return origins, skipped


def collect(
    config: Path, data_dir: Path, staging: Path, origins: list[Origin]
) -> list[tuple[Entry, Path]]:
    """Copy what the archive will hold into ``staging``; (entry, staged file) each."""
    staged: list[tuple[Entry, Path]] = []

    def add(name: str, kind: str, path: Path, ref: Origin | None = None) -> None:
        staged.append((Entry(name, kind, path.stat().st_size, sha256_of(path), ref), path))

    config_copy = staging / "config" / config.name
    config_copy.parent.mkdir(parents=True)
    config_copy.write_bytes(config.read_bytes())
    add(f"config/{config.name}", "config", config_copy)
    for n, origin in enumerate(origins, start=1):
        source = Path(origin.absolute)
        name = f"refs/{n}/{source.name}"
        (staging / name).parent.mkdir(parents=True)
        try:
            (staging / name).write_bytes(source.read_bytes())
        except OSError as exc:
            raise BackupError(f"{source} ({', '.join(origin.keys)}): cannot copy ({exc})") from exc
        add(name, "referenced", staging / name, origin)
    for rel in data_files(data_dir) if data_dir.is_dir() else []:
        source, target = data_dir / rel, staging / "data" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if is_sqlite(source):
                copy_sqlite(source, target)
                kind = "sqlite"
            else:
                target.write_bytes(source.read_bytes())
                kind = "file"
        except (OSError, sqlite3.Error) as exc:
            raise BackupError(f"{source}: cannot copy ({exc})") from exc
        add(f"data/{rel.as_posix()}", kind, target)
    return staged


def manifest(
    config: Path, data_dir: Path, entries: list[Entry], not_archived: list[dict[str, str]]
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "format": FORMAT,
        "product": "btms-gateway",
        "version": __version__,
        "created": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "config": os.path.abspath(config),
        "data_dir": os.path.abspath(data_dir),
        "files": [e.to_json() for e in entries],
        "not_archived": not_archived,
    }


def write_archive(
    config: Path, data_dir: Path, output: Path, references: Sequence[Reference] = ()
) -> dict[str, Any]:
    """Write the archive to ``output`` (atomically: a partial file never has
    the final name); return its manifest. ``references``: the files the
    config names (references.named_files)."""
    if not config.is_file():
        raise BackupError(f"{config}: no such config file")
    output.parent.mkdir(parents=True, exist_ok=True)
    origins, not_archived = referenced(references)
    with tempfile.TemporaryDirectory(prefix="btms-backup-") as tmp:
        staged = collect(config, data_dir, Path(tmp), origins)
        meta = manifest(config, data_dir, [e for e, _ in staged], not_archived)
        partial = output.with_name(output.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                    text = json.dumps(meta, indent=2).encode()
                    info = tarfile.TarInfo(MANIFEST)
                    info.size, info.mode, info.mtime = len(text), 0o600, int(time.time())
                    tar.addfile(info, io.BytesIO(text))
                    for entry, path in staged:
                        tar.add(path, arcname=entry.name, recursive=False)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, output)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return meta
