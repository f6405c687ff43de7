"""Backup and restore of the files a configuration names besides itself:
register-override files (relative to the config's folder, or absolute) and
TLS certificates and keys named by plugin sections. Restored where the
restored config looks for them; outside its folder only when asked; each
checked like every member (sha256, and named by the archived config at the
path the manifest says). `check-config`, the real command, judges the
restored configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from backup_support import cli, snapshot
from bmsm_support import SHIFTED
from btms_gateway.core.backup.references import installed_sections, named_files, value_at

#: a second firmware: its ambient temperature reads 0x7FFF without a sensor
FW_ABS = "[string.ambient_temperature_c]\nno_sensor = 0x7FFF\n"

CONFIG = """
[gateway]
data_dir = "{var}"
[[buses]]
name = "a"
port = "{tmp}/ttyA"
wait_for_port = true
[[strings]]
name = "S1"
bus = "a"
slave_id = 1
register_overrides = "fw/fw2.toml"
[[strings]]
name = "S2"
bus = "a"
slave_id = 2
register_overrides = "{fw_abs}"
[[strings]]
name = "S3"
bus = "a"
slave_id = 3
register_overrides = "fw/fw2.toml"
[plugins.web]
port = 0
tls_certfile = "{site}/tls/server.crt"
tls_keyfile = "{site}/tls/server.key"
"""


def site(tmp: Path) -> dict[str, Path]:
    """A site's config in site/, a relative override file below it, an
    absolute one elsewhere, and the web plugin's certificate and key (absolute
    paths inside the config's folder, the key private)."""
    paths = {
        "config": tmp / "site" / "gw.toml",
        "var": tmp / "var",
        "fw_rel": tmp / "site" / "fw" / "fw2.toml",
        "fw_abs": tmp / "elsewhere" / "fw-abs.toml",
        "crt": tmp / "site" / "tls" / "server.crt",
        "key": tmp / "site" / "tls" / "server.key",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    paths["var"].mkdir()
    paths["fw_rel"].write_text(SHIFTED)
    paths["fw_abs"].write_text(FW_ABS)
    paths["crt"].write_text("-----BEGIN CERTIFICATE-----\n(a certificate)\n")
    paths["key"].write_text("-----BEGIN PRIVATE KEY-----\n(a key)\n")
    paths["key"].chmod(0o600)
    paths["config"].write_text(
        CONFIG.format(var=paths["var"], tmp=tmp, fw_abs=paths["fw_abs"], site=tmp / "site")
    )
    return paths


def manifest_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]


def check_config(config: Path) -> tuple[int, str]:
    return cli("check-config", str(config))


def test_backup_restore_the_override_files_and_tls_files_the_config_names(tmp_path):
    paths = site(tmp_path)
    code, out = check_config(paths["config"])
    assert code == 0, out
    archive = tmp_path / "site.tar.gz"
    code, out = cli("backup", "-c", str(paths["config"]), "-o", str(archive))
    assert code == 0, out
    assert "warning" not in out
    refs = {f["ref"]["path"]: f for f in manifest_of(archive)["files"] if f["kind"] == "referenced"}
    assert set(refs) == {"fw/fw2.toml", str(paths["fw_abs"]), str(paths["crt"]), str(paths["key"])}
    relative = refs["fw/fw2.toml"]
    assert relative["ref"]["keys"] == [
        "strings[0].register_overrides",
        "strings[2].register_overrides",
    ]
    assert relative["ref"]["absolute"] == str(paths["fw_rel"])
    assert relative["sha256"] == hashlib.sha256(SHIFTED.encode()).hexdigest()
    assert refs[str(paths["key"])]["ref"]["mode"] == 0o600
    assert refs[str(paths["key"])]["ref"]["keys"] == ["plugins.web.tls_keyfile"]
    with tarfile.open(archive) as tar:
        assert tar.extractfile(relative["name"]).read() == SHIFTED.encode()  # type: ignore[union-attr]

    # a fresh folder on a machine that lost the absolute override file
    paths["fw_abs"].unlink()
    fresh = tmp_path / "new" / "gw.toml"
    args = ["restore", str(archive), "-c", str(fresh), "--data-dir", str(tmp_path / "var2")]
    code, out = cli(*args)
    assert code == 0, out
    assert (tmp_path / "new" / "fw" / "fw2.toml").read_text() == SHIFTED  # next to the config
    assert f"restored {tmp_path / 'new' / 'fw' / 'fw2.toml'}" in out
    assert f"{paths['key']} unchanged (the same as the archived one)" in out
    assert (
        f"not restored, outside {tmp_path / 'new'}: strings[1].register_overrides = "
        f"'{paths['fw_abs']}' is missing; --force-paths puts the archived one there"
    ) in out
    assert not paths["fw_abs"].exists()
    code, out = check_config(fresh)
    assert code == 2 and "strings[1].register_overrides" in out and "does not exist" in out

    code, out = cli(*args, "--force-paths")
    assert code == 0, out
    assert f"restored {paths['fw_abs']}" in out
    assert paths["fw_abs"].read_text() == FW_ABS
    code, out = check_config(fresh)
    assert code == 0, out


def test_restored_in_place_a_changed_key_comes_back_and_the_changed_one_is_kept(tmp_path):
    """The service's layout: absolute paths inside the config's folder
    (/etc/btms-gateway/...) are restored with the config, no flag needed."""
    paths = site(tmp_path)
    archive = tmp_path / "site.tar.gz"
    assert cli("backup", "-c", str(paths["config"]), "-o", str(archive))[0] == 0
    paths["key"].write_text("a key overwritten by mistake")
    paths["key"].chmod(0o640)  # given to the service's key group since (docs/deployment.md)
    group = 1 if os.geteuid() == 0 else os.getgid()
    os.chown(paths["key"], -1, group)
    code, out = cli("restore", str(archive), "-c", str(paths["config"]))
    assert code == 0, out
    assert paths["key"].read_text() == "-----BEGIN PRIVATE KEY-----\n(a key)\n"
    assert paths["key"].stat().st_mode & 0o777 == 0o640  # mode and group kept
    assert paths["key"].stat().st_gid == group
    [aside] = paths["var"].glob("restore-backup-*")
    [kept] = aside.glob("refs/*/server.key")
    assert kept.read_text() == "a key overwritten by mistake"
    assert f"{paths['fw_rel']} unchanged" in out
    assert check_config(paths["config"])[0] == 0


def test_with_keep_config_the_existing_files_are_kept(tmp_path):
    paths = site(tmp_path)
    archive = tmp_path / "site.tar.gz"
    assert cli("backup", "-c", str(paths["config"]), "-o", str(archive))[0] == 0
    paths["fw_rel"].write_text(SHIFTED + "# edited on site\n")
    code, out = cli("restore", str(archive), "-c", str(paths["config"]), "--keep-config")
    assert code == 0, out
    assert paths["fw_rel"].read_text().endswith("# edited on site\n")
    assert "not restored (--keep-config): strings[0].register_overrides" in out


def rewritten(archive: Path, target: Path, member: str, data: bytes, **ref: Any) -> None:
    """``archive`` with ``member`` replaced by ``data``; with ``ref`` fields,
    the manifest rewritten to match (hash, size and those fields), as an
    attacker who knows the format would."""
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    meta = json.loads(members.pop("manifest.json"))
    members[member] = data
    if ref:
        entry = next(f for f in meta["files"] if f["name"] == member)
        entry |= {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        entry["ref"] |= ref
    with tarfile.open(target, "w:gz") as tar:
        for name, body in {"manifest.json": json.dumps(meta).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def test_a_tampered_override_member_is_refused_and_nothing_is_restored(tmp_path):
    paths = site(tmp_path)
    archive = tmp_path / "site.tar.gz"
    assert cli("backup", "-c", str(paths["config"]), "-o", str(archive))[0] == 0
    member = next(
        f["name"]
        for f in manifest_of(archive)["files"]
        if f.get("ref", {}).get("path") == "fw/fw2.toml"
    )
    fresh = tmp_path / "new"
    fresh.mkdir()

    def refused(bad: Path) -> str:
        before = snapshot(tmp_path)
        code, out = cli("restore", str(bad), "-c", str(fresh / "gw.toml"), "--force-paths")
        assert code == 1, out
        assert "nothing was restored" in out
        assert snapshot(tmp_path) == before  # not a file changed, the archive's folder included
        return out

    altered = tmp_path / "altered.tar.gz"
    rewritten(archive, altered, member, b"[cell.voltage_v]\nbase = 1100\n")
    out = refused(altered)
    assert f"{member}: " in out and "damaged or was altered" in out
    # a consistent manifest that sends the file somewhere the config does not name
    escaping = tmp_path / "escaping.tar.gz"
    rewritten(archive, escaping, member, b"x", path="../../escape.toml")
    out = refused(escaping)
    assert (
        f"{member}: the manifest says strings[0].register_overrides = '../../escape.toml', "
        "the archived config does not: the archive was altered"
    ) in out
    assert not (tmp_path / "escape.toml").exists()


def test_files_the_backup_cannot_know_are_reported_not_archived(tmp_path):
    """A plugin's path relative to the working directory, a missing override
    file, and a plugin's own output (the example logger's path, unmarked)."""
    (tmp_path / "var").mkdir()
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\ndata_dir = "{tmp_path / "var"}"\n'
        '[[buses]]\nname = "a"\nport = "/dev/ttyUSB0"\n'
        '[[strings]]\nname = "S1"\nbus = "a"\nslave_id = 1\nregister_overrides = "gone.toml"\n'
        '[plugins.web]\ntls_certfile = "server.crt"\ntls_keyfile = "/etc/btms-none/server.key"\n'
        f'[plugins.jsonl]\npath = "{tmp_path / "log.jsonl"}"\n'
    )
    (tmp_path / "log.jsonl").write_text("{}\n")
    archive = tmp_path / "a.tar.gz"
    code, out = cli("backup", "-c", str(config), "-o", str(archive))
    assert code == 0, out
    meta = manifest_of(archive)
    assert [(s["key"], s["path"]) for s in meta["not_archived"]] == [
        ("strings[0].register_overrides", "gone.toml"),
        ("plugins.web.tls_certfile", "server.crt"),
        ("plugins.web.tls_keyfile", "/etc/btms-none/server.key"),
    ]
    assert "relative to the gateway's working directory" in meta["not_archived"][1]["why"]
    assert (
        f"warning: {config}: plugins.web.tls_certfile = 'server.crt' not archived: relative "
        "to the gateway's working directory, which a backup cannot know: give it as an "
        "absolute path"
    ) in out
    assert not [f for f in meta["files"] if f["kind"] == "referenced"]
    code, out = cli("restore", str(archive), "-c", str(config), "--keep-config")
    assert code == 0 and "note: strings[0].register_overrides = 'gone.toml' was not in" in out


def test_named_files_walks_nested_plugin_tables_by_their_marks() -> None:
    data = {
        "gateway": {"data_dir": "/var/lib/x"},
        "strings": [{"name": "S1"}, {"name": "S2", "register_overrides": "../fw.toml"}],
        "plugins": {
            "modbus_tcp": {"tls": {"enabled": True, "certfile": "/e/m.crt", "cafile": "ca"}},
            "mqtt": {"tls": {"ca_file": "/e/ca.pem"}},
            "jsonl": {"path": "/var/log/x.jsonl"},
            "unknown": {"file": "/x"},
        },
    }
    found = named_files(Path("/srv/site/gw.toml"), data, installed_sections())
    assert [(r.key, r.path) for r in found] == [
        ("strings[1].register_overrides", Path("/srv/fw.toml")),
        ("plugins.modbus_tcp.tls.certfile", Path("/e/m.crt")),
        ("plugins.modbus_tcp.tls.cafile", None),  # relative: the working directory's
        ("plugins.mqtt.tls.ca_file", Path("/e/ca.pem")),
    ]
    assert [value_at(data, r.key) for r in found] == ["../fw.toml", "/e/m.crt", "ca", "/e/ca.pem"]
    assert value_at(data, "strings[5].register_overrides") is None
