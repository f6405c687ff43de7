"""The measuring side of bench_snmp.py: the peers it talks to (snmpd and its
config, the agent processes, net-snmp's snmpbulkwalk and snmpget, git for a
baseline) and the side-by-side comparison of two agents. Its own module to
keep bench_snmp.py short; the constants both sides use live here."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STRINGS, CELLS = 32, 120
COMMUNITY = "public"
USER, AUTH, PRIV = "bench", "bench-auth-key", "bench-priv-key"
CELL_COLUMNS = 7  # accessible columns of btmsCellTable
GETS = 2000
ROOT = Path(__file__).resolve().parents[2]  # the checkout (this is bench/snmp/)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def snmpd_conf(directory: Path) -> Path:
    """One `override` line per cell value, at the agent's OIDs."""
    from btms_gateway.kit.testing import make_reading
    from btms_gateway.plugins.snmp.tables import CELL_TABLE, DEFAULT_BASE, object_oids, parse_oid

    oids = object_oids(parse_oid(DEFAULT_BASE))
    cells = make_reading(CELLS).cells
    lines = [f"rocommunity {COMMUNITY} 127.0.0.1"]  # the address is on the command line
    for col in CELL_TABLE.columns:
        if col.access == "not-accessible":
            continue
        prefix = ".".join(map(str, oids[col.name]))
        for s in range(1, STRINGS + 1):
            for c in cells:
                value = col.get(c, None)  # type: ignore[misc]
                kind, text = (
                    ("octet_str", '"x"') if isinstance(value, bytes) else ("integer", value)
                )
                lines.append(f"override .{prefix}.{s}.{c.index} {kind} {text}")
    path = directory / "snmpd.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


V2C = ["-v2c", "-c", COMMUNITY]
V3 = ["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA-256", "-A", AUTH, "-x", "AES", "-X", PRIV]


def walk(port: int, repetitions: int, creds: list[str] = V2C) -> tuple[str, float]:
    from btms_gateway.plugins.snmp.tables import CELL_TABLE, DEFAULT_BASE, OBJECTS_ARC, parse_oid

    table = ".".join(map(str, (*parse_oid(DEFAULT_BASE), OBJECTS_ARC, CELL_TABLE.subid)))
    cmd = ["snmpbulkwalk", *creds, f"-Cr{repetitions}", "-On", "-Oq"]
    cmd += ["-t", "10", "-r", "0", f"udp:127.0.0.1:{port}", "." + table]
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, MIBS="")
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"snmpbulkwalk failed: {r.stderr}")
    return r.stdout, elapsed


def gets(port: int, count: int) -> None:
    """``count`` GETs of one OID (btmsStringCurrent.5, as the age probe reads)."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v2c

    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 1, 3, 1, 9, 5), v2c.null)])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, COMMUNITY)
    v2c.apiMessage.set_pdu(msg, pdu)
    datagram = encoder.encode(msg)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        for _ in range(count):
            s.sendto(datagram, ("127.0.0.1", port))
            s.recv(65535)


def wait_walkable(port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        r = subprocess.run(
            ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", f"udp:127.0.0.1:{port}",
             ".1.3.6.1.2.1.1.1.0"], capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if r.returncode == 0:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"no answer on port {port}: {r.stderr}")
        time.sleep(0.2)


class AgentProcess:
    """A child running ``script --serve`` (bench_snmp.py's ``serve``); ``ask`` sends
    one command, reads one reply."""

    def __init__(self, script: str, all_plugins: bool, plugin_dir: str | None = None) -> None:
        cmd = [sys.executable, script, "--serve", *["--all-plugins"] * all_plugins]
        cmd += ["--plugin-dir", plugin_dir] if plugin_dir else []
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        self.ready = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        self.port: int = self.ready["port"]
        wait_walkable(self.port, 60)

    def ask(self, cmd: str) -> dict[str, Any]:
        self.proc.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr,no-any-return]

    def cpu_of(self, work: Any) -> tuple[float, float, Any]:
        """(process CPU, datagram callbacks' CPU, result) of ``work()``."""
        before = self.ask("cpu")
        result = work()
        after = self.ask("cpu")
        return after["cpu"] - before["cpu"], after["callbacks"] - before["callbacks"], result

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(20)


def baseline_dir(spec: str) -> str:
    """A directory holding the baseline plugin package: ``spec`` itself, or
    plugins/snmp of git revision ``spec`` (read with git archive)."""
    if Path(spec, "__init__.py").exists():
        return spec
    tmp = tempfile.mkdtemp(prefix="bench-snmp-baseline-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", spec, "plugins/snmp"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return str(Path(tmp, "plugins", "snmp"))


def compare(agents: dict[str, AgentProcess], runs: int, repetitions: int) -> dict[str, Any]:
    """Each agent's CPU per varbind, per GET and per shape change, in turns."""
    expected = STRINGS * CELLS * CELL_COLUMNS
    cpu: dict[str, dict[str, list[float]]] = {k: {} for k in agents}
    outputs: dict[str, set[str]] = {k: set() for k in agents}
    names = list(agents)
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:
            agent, rows = agents[name], cpu[name]
            port = agent.port
            for kind, creds in (("walk_v2c", V2C), ("walk_v3", V3)):
                used, inside, (out, _) = agent.cpu_of(
                    lambda c=creds, p=port: walk(p, repetitions, c)
                )
                if out.count("\n") != expected:
                    raise RuntimeError(f"{name}: walked {out.count(chr(10))} varbinds")
                outputs[name].add(out)
                rows.setdefault(kind, []).append(used / expected * 1e6)
                rows.setdefault(kind + "_cb", []).append(inside / expected * 1e6)
            used, inside, _ = agent.cpu_of(lambda p=port: gets(p, GETS))
            rows.setdefault("get", []).append(used / GETS * 1e6)
            rows.setdefault("get_cb", []).append(inside / GETS * 1e6)
    for name, agent in agents.items():
        for key, value in agent.ask("refresh").items():
            cpu[name][key] = [value]
    same = len({o for outs in outputs.values() for o in outs}) == 1
    medians = {k: {m: statistics.median(v) for m, v in rows.items()} for k, rows in cpu.items()}
    return {"cpu": medians, "same": same}
