"""Backup and restore, with a real gateway: the simulator on a pseudo-terminal,
the alarm engine raising alarms and learning baselines into the event log, and
another SQLite store under data_dir being written while the archive is taken
(as the history store or a plugin's buffer would be). `btms-gateway backup`
runs as its own process beside the running gateway, as an admin would run it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import sqlite3
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from alarm_support import harness, show
from backup_support import cli, snapshot
from btms_gateway.core.alarms import baseline
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.datadir import LOCK_NAME
from btms_gateway.core.gateway import GatewayStartError
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config

RULES = {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}
HIGH = "cell_voltage_high:S1:3"


def config_file(path: Path, data_dir: Path) -> Path:
    path.write_text(f'[gateway]\nname = "backup test"\ndata_dir = "{data_dir}"\n')
    return path


class StoreWriter:
    """Another database under data_dir, written in its own thread all along."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY, payload BLOB)")
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while not self._stop.is_set():
            self.written += 1
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute("INSERT INTO rows VALUES (?, ?)", (self.written, b"x" * 512))
            self._stop.wait(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.db.close()


async def run_cli(*args: str) -> tuple[int, str]:
    """The command as a process of its own: the gateway's loop goes on meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btms_gateway.core", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_backup_while_running_restores_events_alarms_baselines_and_stores(tmp_path):
    live, fresh = tmp_path / "live", tmp_path / "fresh"
    cfg = config_file(tmp_path / "gw.toml", live)
    archive = tmp_path / "site.tar.gz"
    h, rec = harness(live, RULES, baseline_readings=3)
    sim, slave = h.sim_for("S1")
    sim.set_cell(slave, 3, voltage_v=2.45)
    store = StoreWriter(live / "history" / "history.sqlite")
    (live / "notes.txt").write_text("a plain file")
    try:
        async with h:
            await h.wait_quality(Quality.GOOD)
            await h.wait_until(lambda: rec.of(HIGH), what="the alarm")
            log = EventLog(live / "events.sqlite")  # a second connection, as the CLI has
            cells = len(sim.model(slave).cells)  # every cell learns its baseline
            await h.wait_until(lambda: len(baseline.load(log.db, "S1")) == cells, what="baselines")
            await show(h, 3, "voltage_v", 2.45)
            before_store = store.written
            code, out = await run_cli("backup", "-c", str(cfg), "-o", str(archive))
            assert code == 0, out
            assert store.written > before_store  # written during the backup too
            events_then = [(e.seq, e.alarm_id, e.kind) for e in log.events()]
            baselines_then = baseline.load(log.db, "S1")
            log.close()
    finally:
        store.close()
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert names[0] == "manifest.json"
    assert {"data/events.sqlite", "data/history/history.sqlite", "data/notes.txt"} <= set(names)
    assert "config/gw.toml" in names and f"data/{LOCK_NAME}" not in names
    assert not [n for n in names if n.endswith(("-wal", "-shm"))]
    kinds = {f["name"]: f["kind"] for f in manifest["files"]}
    assert kinds["data/history/history.sqlite"] == "sqlite" and kinds["data/notes.txt"] == "file"
    assert manifest["data_dir"] == str(live) and manifest["version"]

    cfg2 = config_file(tmp_path / "gw2.toml", fresh)
    code, out = cli("restore", str(archive), "-c", str(cfg2), "--keep-config")
    assert code == 0, out
    assert "verified" in out and f"restored {fresh / 'events.sqlite'}" in out
    assert (fresh / "notes.txt").read_text() == "a plain file"
    copy = sqlite3.connect(fresh / "history" / "history.sqlite")
    ns = [n for (n,) in copy.execute("SELECT n FROM rows ORDER BY n")]
    copy.close()
    assert ns == list(range(1, len(ns) + 1)) and len(ns) >= before_store  # a consistent prefix

    h2, rec2 = harness(fresh, RULES, baseline_readings=3)
    sim2, slave2 = h2.sim_for("S1")
    sim2.set_cell(slave2, 3, voltage_v=2.45)
    async with h2:
        assert HIGH in {a.alarm_id for a in h2.gateway.alarms.active()}  # restored, not raised
        await h2.wait_quality(Quality.GOOD)
        await show(h2, 3, "voltage_v", 2.45)
        assert rec2.of(HIGH) == []
        log2 = EventLog(fresh / "events.sqlite")
        assert [(e.seq, e.alarm_id, e.kind) for e in log2.events()][: len(events_then)] == (
            events_then
        )
        assert baseline.load(log2.db, "S1") == baselines_then
        log2.close()


@pytest.mark.slow  # ~3 s on a shared 2-core box
async def test_restore_refuses_while_a_gateway_runs_on_the_data_dir(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    EventLog(source / "events.sqlite").close()
    archive = tmp_path / "a.tar.gz"
    assert (
        cli("backup", "-c", str(config_file(tmp_path / "s.toml", source)), "-o", str(archive))[0]
        == 0
    )
    target = tmp_path / "running"
    cfg = config_file(tmp_path / "gw.toml", target)
    # without history: its writer changes its file while the gateway runs, restore or not
    running = plant_config(strings=1, ups=1, data_dir=str(target)) | {"history": {"enabled": False}}
    async with GatewayHarness(running, alarms=True):
        before = snapshot(target)
        code, out = await run_cli("restore", str(archive), "-c", str(cfg), "--keep-config")
        assert code == 1
        assert "in use by gateway pid" in out and "stop the gateway first" in out
        assert snapshot(target) == before
        # and a second gateway on the same data_dir does not start either
        second = GatewayHarness(plant_config(strings=1, ups=1, data_dir=str(target)))
        with pytest.raises(GatewayStartError, match=f"{target} is in use by gateway pid"):
            async with second:
                pass


def test_restore_sets_the_replaced_files_aside_stale_wal_included(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    log = EventLog(source / "events.sqlite")
    log.close()
    archive = tmp_path / "a.tar.gz"
    cfg = config_file(tmp_path / "gw.toml", source)
    assert cli("backup", "-c", str(cfg), "-o", str(archive))[0] == 0
    target.mkdir()
    (target / "events.sqlite").write_bytes(b"old")
    (target / "events.sqlite-wal").write_bytes(b"a stale WAL that must not be replayed")
    (target / "old-only.txt").write_text("not in the archive")
    code, out = cli("restore", str(archive), "-c", str(cfg), "--data-dir", str(target))
    assert code == 0, out
    [aside] = target.glob("restore-backup-*")
    assert sorted(p.name for p in aside.iterdir()) == [
        "events.sqlite",
        "events.sqlite-wal",
        "old-only.txt",
    ]
    assert sorted(p.name for p in target.iterdir() if p != aside) == ["events.sqlite", LOCK_NAME]
    assert EventLog(target / "events.sqlite").events() == []  # a usable, restored log
    # a later backup leaves the set-aside folder out
    assert (
        cli("backup", "-c", str(cfg), "--data-dir", str(target), "-o", str(tmp_path / "b"))[0] == 0
    )
    with tarfile.open(tmp_path / "b") as tar:
        assert not [n for n in tar.getnames() if "restore-backup" in n]


# --- archives that must be refused -------------------------------------------------


def make_archive(path: Path, members: dict[str, bytes], manifest: dict | None = None) -> None:
    """An archive with an honest manifest for ``members`` (or the one given)."""
    files = [
        {
            "name": name,
            "kind": "config" if name.startswith("config/") else "sqlite",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, data in members.items()
    ]
    meta = manifest or {
        "format": 1,
        "product": "btms-gateway",
        "version": "x",
        "data_dir": str(path.parent / "data"),
        "files": files,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"manifest.json": json.dumps(meta).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A real archive, its config (pointing at a populated data_dir) and the members."""
    data = tmp_path / "data"
    log = EventLog(data / "events.sqlite")
    log.close()
    cfg = config_file(tmp_path / "gw.toml", data)
    archive = tmp_path / "good.tar.gz"
    assert cli("backup", "-c", str(cfg), "-o", str(archive))[0] == 0
    with tarfile.open(archive) as tar:
        members = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name != "manifest.json"
        }
    (data / "marker.txt").write_text("present before the restore")
    return archive, cfg, members


def refused(archive: Path, cfg: Path) -> str:
    data = cfg.parent / "data"
    before = snapshot(data)
    config_before = cfg.read_bytes()
    code, out = cli("restore", str(archive), "-c", str(cfg))
    assert code == 1, out
    assert "nothing was restored" in out
    assert snapshot(data) == before and cfg.read_bytes() == config_before
    assert not list(data.glob(".restore-staging-*"))
    return out


def test_a_damaged_gzip_stream_is_refused(good):
    archive, cfg, _ = good
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    out = refused(archive, cfg)
    # inflate fails, or inflates other bytes than were hashed: either way, refused
    assert "not a readable backup archive" in out or "damaged or was altered" in out


def test_a_truncated_archive_is_refused(good):
    archive, cfg, _ = good
    archive.write_bytes(archive.read_bytes()[:-200])
    assert "not a readable backup archive" in refused(archive, cfg)


def test_a_member_altered_after_the_backup_is_refused(good, tmp_path):
    archive, cfg, members = good
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    events = bytearray(members["data/events.sqlite"])
    events[-1] ^= 0x01
    altered = tmp_path / "altered.tar.gz"
    make_archive(altered, {**members, "data/events.sqlite": bytes(events)}, manifest)
    out = refused(altered, cfg)
    assert "data/events.sqlite" in out and "damaged or was altered" in out


def test_a_database_failing_its_integrity_check_is_refused(good, tmp_path):
    _, cfg, members = good
    broken = bytearray(members["data/events.sqlite"])
    broken[4096 : 4096 + 64] = b"\xff" * 64  # page 2: a b-tree page header destroyed
    bad = tmp_path / "bad.tar.gz"
    make_archive(bad, {**members, "data/events.sqlite": bytes(broken)})  # hashes match
    out = refused(bad, cfg)
    assert "data/events.sqlite: the database fails its integrity check" in out


@pytest.mark.parametrize("name", ["../escape.txt", "data/../../escape.txt", "/etc/passwd"])
def test_a_member_outside_the_manifest_or_the_archive_is_refused(good, tmp_path, name):
    _, cfg, members = good
    evil = tmp_path / "evil.tar.gz"
    make_archive(evil, members)
    with tarfile.open(evil) as tar:
        entries = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(evil, "w:gz") as tar:
        for member, data in [*entries, (tarfile.TarInfo(name), b"x")]:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    assert "unexpected member" in refused(evil, cfg)
    assert not (tmp_path / "escape.txt").exists()


def test_not_an_archive_at_all_is_refused(good, tmp_path):
    _, cfg, _ = good
    other = tmp_path / "notes.tar.gz"
    other.write_bytes(gzip.compress(b"just some text"))
    assert "not a readable backup archive" in refused(other, cfg)
