"""The MQTT tests' peers: a Mosquitto broker of their own, a Sparkplug host
application we did not write, and mosquitto_sub.

* ``Mosquitto`` starts Debian's mosquitto (never the system service) on free
  ports of 127.0.0.1 with a generated config: a TLS listener that wants a
  client certificate signed by a test CA (made here with ``cryptography``)
  and a password (file made by ``mosquitto_passwd``), and a plain listener
  with the same passwords for the observers. ``kill()`` is a SIGKILL;
  ``start()`` brings it back on the same ports.
* ``SparkplugHost`` runs tests/peers/sparkplug_host.py in a virtualenv of
  its own holding pysparkplug (an independent Sparkplug B implementation,
  with its own classes generated from the Tahu .proto and its own datatype
  and alias handling) and reads what it decoded as JSON lines. It can play
  the primary host (its STATE) and send a rebirth NCMD.
* ``mosquitto_sub`` checks the JSON mode (``subscribe_json``).
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btms_gateway.kit.ports import FreePorts
from conftest import require_tool, wait_for

HERE = Path(__file__).resolve().parent
PYSPARKPLUG = "pysparkplug==0.6.1"
USER, PASSWORD = "gateway", "s3cret-pa55"
OBSERVER, OBSERVER_PASSWORD = "observer", "watch-1t-all"


# -- a test PKI ------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(where: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: Any, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("btms test CA"))
        .issuer_name(name("btms test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: Any, san: list[Any]) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client, client_key = leaf("btms-gateway", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pem = serialization.Encoding.PEM
    (where / "ca.pem").write_bytes(ca.public_bytes(pem))
    (where / "server.pem").write_bytes(server.public_bytes(pem))
    (where / "client.pem").write_bytes(client.public_bytes(pem))
    return Pki(
        where / "ca.pem",
        where / "server.pem",
        write_key(server_key, where / "server.key"),
        where / "client.pem",
        write_key(client_key, where / "client.key"),
    )


# -- the broker ----------------------------------------------------------------------
class Mosquitto:
    """Debian's mosquitto on free loopback ports: ``tls_port`` (client
    certificate + password) and ``port`` (password only, for observers)."""

    def __init__(self, workdir: Path, *, tls: bool = True, extra: str = "") -> None:
        sbin = Path("/usr/sbin/mosquitto")  # not on a normal user's PATH
        self.exe = str(sbin) if sbin.exists() else require_tool("mosquitto", "mosquitto")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ports = FreePorts()
        self.port = ports.tcp()
        self.tls_port = ports.tcp() if tls else None
        self.pki = make_pki(workdir) if tls else None
        passwd = workdir / "passwd"
        tool = require_tool("mosquitto_passwd", "mosquitto")
        passwd.write_text("")
        for user, pw in ((USER, PASSWORD), (OBSERVER, OBSERVER_PASSWORD)):
            subprocess.run([tool, "-b", str(passwd), user, pw], check=True)
        lines = [
            f"user {getpass.getuser()}",  # as root it would drop to user mosquitto
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            # sessions and retained messages saved every second: after a kill -9 the
            # observers' sessions are back, and the broker queues for them what the
            # gateway replays before they have reconnected
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            f"log_dest file {workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.pki is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.pki.ca}",
                f"certfile {self.pki.server_cert}",
                f"keyfile {self.pki.server_key}",
                "require_certificate true",
            ]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra)
        os.chmod(passwd, 0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("mosquitto did not listen")

    def wait_saved(self, timeout: float = 5.0) -> None:
        """Wait for the next autosave, so the observers' sessions survive a kill."""
        db = self.workdir / "mosquitto.db"
        since = time.time()
        wait_for(lambda: db.exists() and db.stat().st_mtime > since, timeout, "the broker to save")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def plugin_section(self, **extra: Any) -> dict[str, Any]:
        """``[plugins.mqtt]`` reaching this broker over TLS with a client
        certificate and a password."""
        assert self.pki is not None
        return {
            "host": "127.0.0.1",
            "port": self.tls_port,
            "username": USER,
            "password": PASSWORD,
            "tls": {
                "ca_file": str(self.pki.ca),
                "cert_file": str(self.pki.client_cert),
                "key_file": str(self.pki.client_key),
            },
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            **extra,
        }


# -- mosquitto_sub ---------------------------------------------------------------------
class Sub:
    """mosquitto_sub printing ``topic payload`` lines (JSON payloads), read by a thread."""

    def __init__(self, broker: Mosquitto, topic: str, *extra: str) -> None:
        exe = require_tool("mosquitto_sub", "mosquitto-clients")
        # -c: a session the broker keeps (and fills) while the subscriber reconnects
        self.proc = subprocess.Popen(
            [exe, "-h", "127.0.0.1", "-p", str(broker.port), "-u", OBSERVER, "-P",
             OBSERVER_PASSWORD, "-t", topic, "-v", "-q", "1", "-c", "-i",
             f"sub-{time.time_ns()}", *extra],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[tuple[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            try:
                self.lines.append((topic, json.loads(payload)))
            except ValueError:
                self.lines.append((topic, payload))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# -- the independent Sparkplug host ---------------------------------------------------------
def peer_python() -> str:
    """The python of a virtualenv holding pysparkplug (made once, then reused)."""
    root = Path(os.environ.get("BTMS_PEER_VENVS", Path(sys.prefix) / "peers"))
    venv = root / PYSPARKPLUG.replace("==", "-")
    py = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", PYSPARKPLUG],
            check=True,
        )
        (venv / ".installed").write_text(PYSPARKPLUG)
    return str(py)


class SparkplugHost:
    """tests/peers/sparkplug_host.py under pysparkplug; ``messages`` is what it
    decoded, in arrival order."""

    def __init__(self, broker: Mosquitto, group: str, host_id: str | None = None) -> None:
        args = [peer_python(), str(HERE / "peers" / "sparkplug_host.py"), "127.0.0.1",
                str(broker.port), OBSERVER, OBSERVER_PASSWORD, group, host_id or "-"]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.messages: list[dict[str, Any]] = []
        self._ready: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        try:
            line = self._ready.get(timeout=30)
        except queue.Empty:
            raise TimeoutError("the Sparkplug host did not start") from None
        assert line == "ready", line

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            data = json.loads(line)
            if "ready" in data:
                self._ready.put("ready")
            else:
                self.messages.append(data)

    def command(self, *words: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == kind]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
