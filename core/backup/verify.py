"""Reading a backup archive back, trusting nothing in it until checked.

Every member is unpacked into a staging folder and checked against the
manifest (the same names, each size and sha256), and every database passes
``PRAGMA integrity_check``, before restore touches a single file in place.
Only regular files with the names the manifest lists are accepted: no
links, no absolute paths or ``..``, nothing extra. A referenced file (an
override file, a TLS key) must be named, at the path the manifest records,
by the keys it lists in the archived config itself: an archive cannot
bring a file its config does not use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tarfile
import tomllib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .archive import CHUNK, MANIFEST, READABLE_FORMATS, BackupError, Entry, Origin
from .references import value_at

KINDS = {"config", "referenced", "sqlite", "file"}
AREAS = ("config", "refs", "data")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Verified:
    """A checked archive, unpacked in ``staging``."""

    manifest: dict[str, Any]
    staging: Path
    entries: list[Entry]

    def path(self, entry: Entry) -> Path:
        return self.staging / entry.name

    @property
    def config(self) -> Entry:
        return next(e for e in self.entries if e.kind == "config")

    @property
    def data(self) -> list[Entry]:
        return [e for e in self.entries if e.kind in ("sqlite", "file")]

    @property
    def referenced(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "referenced"]

    def describe(self) -> str:
        m = self.manifest
        return (
            f"btms-gateway {m.get('version')} backup of {m.get('created')} from host "
            f"{m.get('host')}: {len(self.entries)} files"
        )


def safe_name(name: object) -> str | None:
    """The member name if it is a plain relative path under config/, refs/ or data/."""
    if not isinstance(name, str):
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.as_posix() != name:
        return None
    if len(path.parts) < 2 or path.parts[0] not in AREAS:
        return None
    return name


def origin(raw: object) -> Origin | None:
    """A referenced file's ``ref``, None unless whole and well-formed."""
    if not isinstance(raw, dict):
        return None
    path, absolute, keys, mode = (raw.get(k) for k in ("path", "absolute", "keys", "mode"))
    if not (
        isinstance(path, str)
        and path
        and "\0" not in path
        and isinstance(absolute, str)
        and os.path.isabs(absolute)
        and isinstance(keys, list)
        and keys
        and all(isinstance(k, str) and k for k in keys)
        and isinstance(mode, int)
        and 0 <= mode <= 0o7777
    ):
        return None
    return Origin(path, absolute, tuple(keys), mode)


def parse_manifest(raw: bytes) -> tuple[dict[str, Any], list[Entry]]:
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{MANIFEST} is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("product") != "btms-gateway":
        raise BackupError(f"{MANIFEST} is not a btms-gateway backup manifest")
    if meta.get("format") not in READABLE_FORMATS:
        raise BackupError(
            f"{MANIFEST}: format {meta.get('format')!r}, this version reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}"
        )
    if not isinstance(meta.get("data_dir"), str) or not meta["data_dir"]:
        raise BackupError(f"{MANIFEST}: no data_dir (where the data was backed up from)")
    entries = []
    for i, item in enumerate(meta.get("files") or []):
        try:
            ref = origin(item.get("ref"))
            entry = Entry(item["name"], item["kind"], item["size"], item["sha256"], ref)
        except (KeyError, TypeError, AttributeError):
            raise BackupError(f"{MANIFEST}: files[{i}] lacks name, kind, size or sha256") from None
        if (
            safe_name(entry.name) is None
            or entry.kind not in KINDS
            or (entry.kind == "referenced") != (ref is not None)
            or entry.name.startswith("refs/") != (entry.kind == "referenced")
            or not isinstance(entry.size, int)
            or entry.size < 0
            or not isinstance(entry.sha256, str)
            or not _SHA256.match(entry.sha256)
        ):
            raise BackupError(f"{MANIFEST}: files[{i}] is not a valid entry: {item!r}")
        entries.append(entry)
    if len({e.name for e in entries}) != len(entries):
        raise BackupError(f"{MANIFEST}: a file is listed twice")
    if [e.kind for e in entries].count("config") != 1:
        raise BackupError(f"{MANIFEST}: exactly one config file expected")
    return meta, entries


@contextmanager
def _reading(archive: Path) -> Iterator[tarfile.TarFile]:
    """The open archive; any problem reading or checking it becomes one BackupError
    naming the archive."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            yield tar
    except BackupError as exc:
        raise BackupError(f"{archive}: {exc}; nothing was restored") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupError(
            f"{archive}: not a readable backup archive ({exc}); nothing was restored"
        ) from None


def _head(tar: tarfile.TarFile) -> tuple[tarfile.TarInfo, dict[str, Any], list[Entry]]:
    """The manifest, which must be the first member."""
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isreg():
        raise BackupError(f"no {MANIFEST} at its start: not a backup archive")
    handle = tar.extractfile(first)
    assert handle is not None
    return (first, *parse_manifest(handle.read()))


def read_manifest(archive: Path) -> dict[str, Any]:
    """Only the manifest (to learn where the data went), nothing checked beyond it."""
    with _reading(archive) as tar:
        return _head(tar)[1]


def _unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: Entry, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        out = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    except OSError as exc:
        raise BackupError(f"cannot unpack into {target.parent}: {exc}") from None
    with out:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise BackupError(f"cannot unpack into {target.parent}: {exc}") from None
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise BackupError(
            f"{entry.name}: {size} bytes with sha256 {digest.hexdigest()[:12]}..., the "
            f"manifest says {entry.size} bytes with {entry.sha256[:12]}...: the archive is "
            "damaged or was altered"
        )


def integrity_problem(path: Path) -> str | None:
    try:
        db = sqlite3.connect(path)
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == ["ok"] else "; ".join(map(str, rows[:5]))


def verify(archive: Path, staging: Path) -> Verified:
    """Unpack ``archive`` into ``staging`` and check all of it; BackupError names
    the first problem (the caller removes ``staging``)."""
    with _reading(archive) as tar:
        first, meta, entries = _head(tar)
        expected = {e.name: e for e in entries}
        seen: set[str] = set()
        for member in tar:
            if member.offset == first.offset:
                continue  # iterating starts over with the manifest
            entry = expected.get(member.name)
            if entry is None or not member.isreg() or member.name in seen:
                raise BackupError(f"unexpected member {member.name!r} (not in the manifest)")
            seen.add(member.name)
            _unpack(tar, member, entry, staging / entry.name)
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(
            f"{archive}: {', '.join(missing)} listed in the manifest but not in the archive; "
            "nothing was restored"
        )
    for entry in entries:
        if entry.kind == "sqlite":
            problem = integrity_problem(staging / entry.name)
            if problem is not None:
                raise BackupError(
                    f"{archive}: {entry.name}: the database fails its integrity check "
                    f"({problem}); nothing was restored"
                )
    verified = Verified(meta, staging, entries)
    problem = unused_reference(verified)
    if problem is not None:
        raise BackupError(f"{archive}: {problem}; nothing was restored")
    return verified


def unused_reference(verified: Verified) -> str | None:
    """Why a referenced file is not one the archived config names as the
    manifest says (None when each is)."""
    if not verified.referenced:
        return None
    try:
        config = tomllib.loads(verified.path(verified.config).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"{verified.config.name}: not a readable TOML file ({exc})"
    for entry in verified.referenced:
        assert entry.ref is not None
        for key in entry.ref.keys:
            if value_at(config, key) != entry.ref.path:
                return (
                    f"{entry.name}: the manifest says {key} = {entry.ref.path!r}, the archived "
                    "config does not: the archive was altered"
                )
    return None
