"""The systemd service: the unit `service install` writes (checked by systemd's
own `systemd-analyze verify` and `security`), what it grants from the config,
the install/uninstall rules, and the gateway's side of the service protocol:
READY/WATCHDOG/STATUS/STOPPING datagrams on a real NOTIFY_SOCKET, log lines
with journald priorities, all while the kernel refuses writable executable
memory as MemoryDenyWriteExecute= does (PR_SET_MDWE)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.core.cli import build_cli
from btms_gateway.core.deploy import journal
from btms_gateway.core.deploy.install import sample_config
from btms_gateway.core.deploy.notify import ServiceNotifier
from btms_gateway.core.deploy.unit import listening_ports, render, serial_device_classes
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import validate_config
from btms_gateway.kit.ports import free_tcp_port, free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from click.testing import CliRunner
from conftest import require_tool, wait_for
from snmp_support import AUTH_KEY, PRIV_KEY, USER, USERS

EXEC = Path(sys.executable).parent / "btms-gateway"  # the installed console script
UNIT = "etc/systemd/system/btms-gateway.service"
CONFIG = "etc/btms-gateway/gateway.toml"


def loaded(data: dict[str, Any]) -> Any:
    return validate_config(data, "<test>", create_manager())


def site(plugins: dict[str, Any], port: str = "/dev/ttyUSB0") -> dict[str, Any]:
    return {
        "gateway": {"data_dir": "/var/lib/btms-gateway"},
        "buses": [{"name": "b", "port": port, "wait_for_port": True}],
        "strings": [{"name": "A1", "bus": "b", "slave_id": 1}],
        "plugins": plugins,
    }


def install(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        build_cli(), ["service", "install", "--root", str(tmp_path), "--exec", str(EXEC), *args]
    )


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = require_tool("systemd-analyze", "systemd")
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def exposure(unit: Path) -> float:
    analyze = require_tool("systemd-analyze", "systemd")
    out = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert found, out.stdout[-2000:] + out.stderr[-2000:]
    return float(found[1])


# --- the unit ------------------------------------------------------------------


@pytest.mark.peer
def test_installed_unit_passes_systemd_analyze_verify_and_scores_low_exposure(tmp_path):
    result = install(tmp_path)
    assert result.exit_code == 0, result.output
    unit = tmp_path / UNIT
    checked = verify(unit)
    # verify exits 0 even for unknown keys or bad values: it must also say nothing
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    score = exposure(unit)
    print(f"\nsystemd-analyze security --offline: {score} (CAP_NET_BIND_SERVICE for port 502)")
    assert score <= 2.0


@pytest.mark.peer
def test_unit_without_privileged_ports_keeps_no_capability_and_scores_lower(tmp_path):
    cfg = tmp_path / CONFIG
    cfg.parent.mkdir(parents=True)
    cfg.write_text(sample_config().replace("port = 502", "port = 1502"))
    assert install(tmp_path).exit_code == 0
    text = (tmp_path / UNIT).read_text()
    assert "\nCapabilityBoundingSet=\n" in text and "\nAmbientCapabilities=\n" in text
    assert verify(tmp_path / UNIT).returncode == 0
    score = exposure(tmp_path / UNIT)
    print(f"\nsystemd-analyze security --offline: {score} (no capability)")
    assert score <= 2.0


def test_unit_has_the_least_privilege_settings():
    text = render(loaded(site({})), config_path=Path("/etc/x.toml"), executable=EXEC).text
    lines = set(text.splitlines())
    for setting in (
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=btms-gateway",
        "SupplementaryGroups=dialout",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "PrivateDevices=no",
        "DevicePolicy=closed",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "UMask=0077",
        "LoadCredential=gateway.toml:/etc/x.toml",
        "CapabilityBoundingSet=",
    ):
        assert setting in lines, setting
    assert re.search(r"^WatchdogSec=\d+s$", text, flags=re.M)
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        f"ExecStart={EXEC} run -c ${{CREDENTIALS_DIRECTORY}}/gateway.toml "
        "--data-dir ${STATE_DIRECTORY}"
    )


def test_privileged_ports_are_found_in_every_listening_setting_and_only_there():
    cfg = loaded(
        site(
            {
                "modbus_tcp": {"port": 502, "tls": {"enabled": False}},  # TLS off: 802 unused
                "snmp": {"port": 1161, "receivers": [{"name": "noc", "port": 162}]},
                "web": {"port": 8080},
                "bacnet": {"address": "127.0.0.1/8:47808"},
            }
        )
    )
    ports = dict((k, p) for p, k in listening_ports(cfg))
    assert ports == {
        "plugins.modbus_tcp.port": 502,
        "plugins.snmp.port": 1161,
        "plugins.web.port": 8080,
        "plugins.bacnet.address": 47808,
    }
    unit = render(cfg, config_path=Path("/etc/x.toml"), executable=EXEC)
    assert unit.privileged_ports == [(502, "plugins.modbus_tcp.port")]
    assert "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit.text
    snmp_161 = loaded(site({"snmp": {"port": 161}, "modbus_tcp": {"enabled": False, "port": 502}}))
    assert render(snmp_161, config_path=Path("/x"), executable=EXEC).privileged_ports == [
        (161, "plugins.snmp.port")
    ]


def test_serial_ports_become_device_classes(tmp_path):
    link = tmp_path / "by-id-adapter"
    link.symlink_to("/dev/ttyS0")

    def classes(port: str) -> tuple[list[str], list[str]]:
        return serial_device_classes(loaded(site({}, port=port)))

    assert classes("/dev/ttyUSB3") == (["ttyUSB"], [])
    assert classes("/dev/ttyAMA0") == (["ttyAMA"], [])
    assert classes(str(link)) == (["ttyS"], [])  # a present link: its target's kind
    found, notes = classes("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0")  # not plugged in
    assert found == ["ttyUSB", "ttyACM"] and "cannot tell the kind" in notes[0]
    tcp = {
        "gateway": {},
        "buses": [
            {"name": "t", "transport": "rtu-over-tcp", "host": "127.0.0.1", "tcp_port": 4001}
        ],
        "strings": [{"name": "A1", "bus": "t", "slave_id": 1}],
    }
    text = render(loaded(tcp), config_path=Path("/x"), executable=EXEC).text
    assert "DeviceAllow=" not in text and "DevicePolicy=closed" in text


# --- install, uninstall, show ----------------------------------------------------


def test_install_writes_a_private_sample_config_and_prints_the_next_steps(tmp_path):
    result = install(tmp_path)
    assert result.exit_code == 0, result.output
    cfg = tmp_path / CONFIG
    assert cfg.read_text() == sample_config()
    assert cfg.stat().st_mode & 0o777 == 0o600
    assert "systemctl daemon-reload && systemctl enable --now btms-gateway" in result.output
    assert "CAP_NET_BIND_SERVICE granted for 502 (plugins.modbus_tcp.port)" in result.output
    assert tomllib.loads(cfg.read_text())["gateway"]["data_dir"] == "/var/lib/btms-gateway"


def test_install_never_overwrites_a_config_and_follows_its_ports(tmp_path):
    cfg = tmp_path / CONFIG
    cfg.parent.mkdir(parents=True)
    mine = sample_config().replace('name = "Battery room 1"', 'name = "Room 7"')
    cfg.write_text(mine.replace("port = 502", "port = 5020"))
    result = install(tmp_path)
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and cfg.read_text() == mine.replace("port = 502", "port = 5020")
    assert "\nCapabilityBoundingSet=\n" in (tmp_path / UNIT).read_text()
    assert "no capability granted" in result.output


def test_install_refuses_an_invalid_config_and_writes_no_unit(tmp_path):
    cfg = tmp_path / CONFIG
    cfg.parent.mkdir(parents=True)
    cfg.write_text(sample_config().replace("baudrate = 9600", "baudrate = 9601"))
    result = install(tmp_path)
    assert result.exit_code == 2
    assert f"{cfg}: buses[0].baudrate: " in result.output and "9601" in result.output
    assert not (tmp_path / UNIT).exists()


def test_install_replaces_only_its_own_unit_and_uninstall_refuses_while_enabled(tmp_path):
    unit = tmp_path / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/something-else\n")
    refused = install(tmp_path)
    assert refused.exit_code == 1 and "not written by btms-gateway" in refused.output
    assert "something-else" in unit.read_text()
    assert install(tmp_path, "--force").exit_code == 0
    assert install(tmp_path).exit_code == 0  # our own unit: replaced without --force
    wants = unit.parent / "multi-user.target.wants"
    wants.mkdir()
    (wants / "btms-gateway.service").symlink_to(unit)
    args = ["service", "uninstall", "--root", str(tmp_path)]
    enabled = CliRunner().invoke(build_cli(), args)
    assert enabled.exit_code == 1 and "systemctl disable --now btms-gateway" in enabled.output
    (wants / "btms-gateway.service").unlink()
    removed = CliRunner().invoke(build_cli(), args)
    assert removed.exit_code == 0, removed.output
    assert not unit.exists() and (tmp_path / CONFIG).exists()
    assert "systemctl daemon-reload" in removed.output


def test_install_needs_the_command_it_points_at(tmp_path):
    result = install(tmp_path, "--exec", str(tmp_path / "nowhere/btms-gateway"))
    assert result.exit_code == 1 and "is not there" in result.output


def test_show_prints_the_unit_for_a_config(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(sample_config().replace("port = 502", "port = 5020"))
    out = CliRunner().invoke(build_cli(), ["service", "show", "-c", str(cfg), "--exec", "/x/b"])
    assert out.exit_code == 0, out.output
    assert f"LoadCredential=gateway.toml:{cfg}\n" in out.output
    assert "ExecStart=/x/b run -c" in out.output and "\nCapabilityBoundingSet=\n" in out.output


# --- logging for the journal -----------------------------------------------------


def test_journal_format_has_priorities_on_every_line_and_no_timestamp(tmp_path):
    stream = open(tmp_path / "stderr", "w+")  # noqa: SIM115
    st = os.fstat(stream.fileno())
    other = open(tmp_path / "other", "w+")  # noqa: SIM115
    try:
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            assert journal.stream_is_journal(stream)
            assert not journal.stream_is_journal(other)
            handler = journal.stderr_handler(stream)
        log = logging.getLogger("btms_gateway.test_journal")
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("port %s vanished", "/dev/ttyUSB0")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("poll failed")
        finally:
            log.removeHandler(handler)
        stream.seek(0)
        lines = stream.read().splitlines()
    finally:
        stream.close()
        other.close()
    assert lines[0] == "<4>btms_gateway.test_journal: port /dev/ttyUSB0 vanished"
    assert lines[1] == "<3>btms_gateway.test_journal: poll failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines[1:])
    assert lines[-1] == "<3>ValueError: boom"


# --- the service protocol, end to end --------------------------------------------

MDWE_LAUNCHER = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(f"PR_SET_MDWE failed (errno {ctypes.get_errno()}): needs Linux 6.3+")
os.execv(sys.argv[1], sys.argv[1:])
"""


class NotifySocket:
    """systemd's end of sd_notify: a datagram socket collecting (time, fields)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self) -> list[str]:
        return [m for _, m in self.messages]

    def mark(self, text: str) -> None:
        """Queue ``text`` behind whatever was sent before it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(text.encode(), str(self.path))

    def after(self, first: str, field: str) -> list[str]:
        """Messages starting with ``field`` that arrived after ``first`` (none yet: [])."""
        fields = self.fields()
        if first not in fields:
            return []
        return [m for m in fields[fields.index(first) + 1 :] if m.startswith(field)]

    def between(self, first: str, last: str) -> list[str]:
        fields = self.fields()
        return fields[fields.index(first) + 1 : fields.index(last)]

    def times(self, field: str) -> list[float]:
        return [t for t, m in self.messages if m.startswith(field)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.slow  # ~3 s on a shared 2-core box
@pytest.mark.peer
def test_gateway_under_mdwe_notifies_ready_watchdog_status_and_stopping(tmp_path):
    from btms_gateway.protocols.bmsm.simulator import Simulator

    snmpget = require_tool("snmpget", "snmp")
    # 12 cells: 27 V, a string the device measures (20..800 V); 8 cells (18 V) fail every poll
    sim = Simulator([1], {1: 12}, baud=115200, link=str(tmp_path / "tty-b")).start()
    notify = NotifySocket(tmp_path / "notify")
    snmp_port, web_port = free_udp_port(), free_tcp_port()
    users = "".join(
        f'[[plugins.snmp.users]]\nname = "{u["name"]}"\nauth_key = "{u["auth_key"]}"\n'
        f'priv_key = "{u["priv_key"]}"\n'
        for u in USERS[:1]
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
poll_interval_s = 0.3
data_dir = "{tmp_path / "not-used"}"
[[buses]]
name = "b"
port = "{sim.port}"
baudrate = 115200
timeout_s = 0.3
[[strings]]
name = "A1"
bus = "b"
slave_id = 1
[plugins.snmp]
port = {snmp_port}
v2c = false
{users}
[plugins.web]
port = {web_port}
""")
    stderr = open(tmp_path / "stderr", "w+")  # noqa: SIM115
    st = os.fstat(stderr.fileno())
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
    }
    state = tmp_path / "state"
    cmd = [str(EXEC), "run", "-c", str(cfg), "--data-dir", str(state)]
    proc = subprocess.Popen(
        [sys.executable, "-c", MDWE_LAUNCHER, *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: "READY=1" in notify.fields() or proc.poll() is not None, 60, "READY=1")
        assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
        assert (state / "gateway.lock").exists() and (state / "events.sqlite").exists()
        assert not (tmp_path / "not-used").exists()  # --data-dir replaced gateway.data_dir
        wait_for(lambda: len(notify.times("WATCHDOG=1")) >= 5, 30, "five watchdog pings")
        # SNMPv3 authPriv runs through cryptography inside the MDWE process
        creds = ["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA-256", "-A", AUTH_KEY]
        creds += ["-x", "AES", "-X", PRIV_KEY]
        r = subprocess.run(
            [snmpget, *creds, f"127.0.0.1:{snmp_port}", "1.3.6.1.2.1.1.1.0"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 0 and "btms-gateway" in r.stdout, r.stdout + r.stderr
        wait_for(
            lambda: any(m.startswith("STATUS=1 strings (1 GOOD)") for m in notify.fields()),
            30,
            "a STATUS line with the string GOOD",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
        sim.stop()
    fields = notify.fields()
    assert fields.index("READY=1") < fields.index("STOPPING=1")
    assert "STATUS=stopping" in fields
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line]
    stderr.close()
    assert lines, "the gateway logged nothing"
    assert all(re.match(r"^<[2-7]>", line) for line in lines), lines[:5]
    assert any(re.match(r"^<6>btms_gateway: gateway .* running", line) for line in lines), lines
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines)  # journald stamps


async def test_watchdog_pings_come_from_the_loop_and_stop_while_it_is_blocked(
    tmp_path, monkeypatch
):
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))  # libsystemd reads the environment
    service = ServiceNotifier.from_environment(
        {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "100000"}
    )
    assert service.enabled and service.watchdog_s == 0.1
    try:
        async with GatewayHarness(plant_config(strings=1, ups=1)) as h:
            service.start(h.gateway)
            await h.wait_until(lambda: len(notify.times("WATCHDOG=1")) >= 3, what="pings")
            # datagrams to one socket queue in the order they were sent: what
            # arrives between the two marks was sent while the loop was blocked
            notify.mark("BLOCKED")
            time.sleep(1.0)  # a hung event loop (a plugin blocking it): ten ping periods
            notify.mark("RESUMED")
            await h.wait_until(lambda: notify.after("RESUMED", "WATCHDOG=1"), what="pings again")
            assert notify.between("BLOCKED", "RESUMED") == []
            # a bus thread that ended (its bus is no longer polled): no more pings
            worker = h.gateway.engine.workers[0]
            worker.stop()
            worker.link.close()
            await asyncio.to_thread(worker.thread.join, 5)
            assert not worker.thread.is_alive()
            problem = "STATUS=bus thread(s) ended: bus1"
            await h.wait_until(lambda: problem in notify.fields(), what="the problem in STATUS")
            await asyncio.sleep(0.5)  # five ping periods
            assert notify.after(problem, "WATCHDOG=1") == []
            service.close()
    finally:
        notify.close()


def test_without_systemd_nothing_is_sent_and_nothing_is_imported():
    service = ServiceNotifier.from_environment({})
    assert not service.enabled and service.watchdog_s is None
    service.stopping()  # no-ops
    service.close()
