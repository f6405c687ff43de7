"""Helpers shared by the SNMP tests: net-snmp command lines, an snmptrapd
receiver, and the plugin config the tests start the gateway with.

net-snmp's tools run in a thread (``asyncio.to_thread``) because the agent
under test answers on the same event loop as the test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.kit.ports import free_udp_port
from conftest import require_tool

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MIB_DIRS = f"{TESTS / 'mibs'}:{ROOT / 'docs' / 'mib'}"
MIB_ARGS = ["-M", MIB_DIRS, "-m", "SNMPv2-MIB:BTMS-GATEWAY-MIB"]
COMMUNITY = "s3cret-community"
USER, AUTH_KEY, PRIV_KEY = "noc", "auth-pass-phrase-1", "priv-pass-phrase-1"
OLD_USER, OLD_AUTH, OLD_PRIV = "legacy", "legacy-auth-pass", "legacy-priv-pass"
USERS = [
    {"name": USER, "auth_key": AUTH_KEY, "priv_key": PRIV_KEY},
    {
        "name": OLD_USER,
        "auth_protocol": "SHA",
        "auth_key": OLD_AUTH,
        "priv_protocol": "AES",
        "priv_key": OLD_PRIV,
    },
]
V3 = ["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA-256", "-A", AUTH_KEY, "-x", "AES"]
V3 += ["-X", PRIV_KEY]
V2C = ["-v2c", "-c", COMMUNITY]
#: a test that talks to the agent both ways: ``fast_path`` true (direct v2c
#: reads, one-pass GETBULK) and false (pysnmp's message path and responder loop)
BOTH_PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "library"])
QUICK = ["-t", "1", "-r", "1"]  # a request that must fail does so in ~2 s


def snmp_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"port": 0, "community": COMMUNITY, "users": USERS}
    settings.update(overrides)
    return settings


def agent_address() -> str:
    from btms_gateway.plugins.snmp import plugin

    host, port = plugin.current().agent.bound  # type: ignore[misc]
    return f"udp:{host}:{port}"


async def net_snmp(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a net-snmp tool with the MIBs loaded, off the event loop."""
    path = require_tool(tool, "snmp")
    cmd = [path, *MIB_ARGS, *args]
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=timeout
    )


class TrapReceiver:
    """snmptrapd on an unprivileged loopback port, logging decoded notifications
    to a file. v2c needs `disableAuthorization yes`; v3 users are created for
    the agent's engine id (traps) and without one (informs, where the
    receiver is the authoritative engine)."""

    def __init__(self, engine_id_hex: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="snmptrapd-"))
        self.port = free_udp_port()
        self.log = self.dir / "traps.log"
        lines = ["disableAuthorization yes", f"createUser {USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}"]
        if engine_id_hex:
            lines.append(
                f"createUser -e 0x{engine_id_hex} {USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}"
            )
        (self.dir / "snmptrapd.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def receiver(self, name: str, version: str = "v2c", kind: str = "trap") -> dict[str, Any]:
        r: dict[str, Any] = {"name": name, "port": self.port, "version": version, "kind": kind}
        if version == "v3":
            r["user"] = USER
        return r

    async def __aenter__(self) -> TrapReceiver:
        path = require_tool("snmptrapd", "snmptrapd")
        cmd = [path, "-f", "-C", "-c", str(self.dir / "snmptrapd.conf"), "-Lf", str(self.log)]
        cmd += [*MIB_ARGS, f"udp:127.0.0.1:{self.port}"]
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(self.dir))
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        await self.wait_for("NET-SNMP version", timeout=15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    async def wait_for(self, *needles: str, timeout: float = 20) -> str:
        """Until one log record contains every needle; returns that record."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.text().split("\n20"):
                if all(n in record for n in needles):
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(f"snmptrapd never logged {needles}; log:\n{self.text()}")
            await asyncio.sleep(0.05)
