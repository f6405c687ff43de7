"""Well-behaved clients, one per protocol, in a process of their own: the
latency each sees while an attack runs.

``python -m attack.probe PORTS.json`` (from bench/): PORTS is
``{"modbus", "snmp", "bacnet", "web", "strings", "device"}``. Four threads
ask one request after the other, resting between them (Modbus 10 ms, SNMP
and BACnet 50 ms, HTTP 100 ms), each from 127.0.0.1 as a SCADA, a NOC poller, a
BMS and a browser would: Modbus reads a string unit's registers 0..25 (the
units in turn), SNMP GETs sysUpTime, BACnet reads the device's name, HTTP
GETs /api/plant on a kept-alive connection. A request that fails or is not
answered within its timeout counts as taking the timeout.

Commands on stdin, one JSON line each, answered with one JSON line:
``{"op": "window"}`` starts a new measuring window; ``{"op": "report"}``
gives, per protocol, requests, failures, p50/p99/max in ms and the last
failure, and, for Modbus, how often the data was withheld (0x0B) or a
string's quality register said not GOOD. It exits when stdin closes, so it
never outlives the bench, and runs in its own process so that the
attacker's work never delays the clients' measurements.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .bacnet import read_device_name
from .snmp import SYS_UPTIME, request_id, v2c_message

TIMEOUT_S = {"modbus": 1.0, "snmp": 1.0, "bacnet": 1.0, "http": 2.0}
REST_S = {"modbus": 0.01, "snmp": 0.05, "bacnet": 0.05, "http": 0.1}


class Samples:
    """Latencies of one protocol in the current window (thread-safe enough:
    list appends and a swap under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.failures = 0
        self.last_failure = ""
        self.flags: dict[str, int] = {}

    def add(self, seconds: float, failure: str = "") -> None:
        with self.lock:
            self.times.append(seconds)
            if failure:
                self.failures += 1
                self.last_failure = failure[:200]

    def flag(self, name: str) -> None:
        with self.lock:
            self.flags[name] = self.flags.get(name, 0) + 1

    def take(self) -> dict[str, Any]:
        with self.lock:
            times, failures, last, flags = self.times, self.failures, self.last_failure, self.flags
            self.times, self.failures, self.last_failure, self.flags = [], 0, "", {}
        ms = sorted(t * 1000 for t in times)
        return {
            "requests": len(ms),
            "failures": failures,
            "p50_ms": statistics.median(ms) if ms else None,
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None,
            "max_ms": ms[-1] if ms else None,
            "last_failure": last,
            **flags,
        }


def timed(samples: Samples, protocol: str, ask: Callable[[], bool | str]) -> None:
    """One request: ``ask`` returns True (served), False or a reason (not)."""
    started = time.perf_counter()
    try:
        outcome = ask()
    except Exception as exc:  # a refused or reset connection is a failed request
        outcome = repr(exc)
    took = time.perf_counter() - started
    if outcome is True:
        samples.add(took)
    else:
        samples.add(
            max(took, TIMEOUT_S[protocol]),
            outcome if isinstance(outcome, str) and outcome else "no answer",
        )


class Modbus:
    def __init__(self, port: int, strings: int, samples: Samples) -> None:
        from pymodbus.client import ModbusTcpClient

        self.client = ModbusTcpClient(
            "127.0.0.1", port=port, timeout=TIMEOUT_S["modbus"], retries=0
        )
        self.strings, self.samples, self.n = strings, samples, 0

    def ask(self) -> bool | str:
        if not self.client.connected and not self.client.connect():
            return "cannot connect"
        self.n += 1
        unit = 101 + self.n % self.strings
        try:
            rr = self.client.read_holding_registers(0, count=26, device_id=unit)
        except Exception:
            self.client.close()  # a SCADA reconnects
            raise
        if rr.isError():
            if getattr(rr, "exception_code", None) == 0x0B:
                self.samples.flag("withheld")
                return True  # answered at once: the data is withheld, not the client
            return f"exception {rr}"
        if rr.registers[20] != 0:
            self.samples.flag("not_good")
        return True


class Snmp:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT_S["snmp"])
        self.address = ("127.0.0.1", port)
        self.n = 0

    def ask(self) -> bool | str:
        self.n = self.n % 100_000 + 1
        request = v2c_message("public", "get", [SYS_UPTIME], request_id=self.n)
        self.sock.sendto(request, self.address)
        deadline = time.monotonic() + TIMEOUT_S["snmp"]
        while time.monotonic() < deadline:
            reply = self.sock.recv(65535)  # TimeoutError: no answer
            if request_id(reply) == self.n:  # a late answer to an earlier one is passed over
                return True
        return "no answer"


class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def ask(self) -> bool | str:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=TIMEOUT_S["http"]
            )
        try:
            self.conn.request("GET", "/api/plant", headers={"Host": "localhost"})
            response = self.conn.getresponse()
            response.read()
        except Exception:
            self.conn.close()
            self.conn = None  # a browser opens another connection
            raise
        return True if response.status == 200 else f"HTTP {response.status}"


def main() -> None:
    ports = json.loads(sys.argv[1])
    samples = {p: Samples() for p in TIMEOUT_S}
    modbus = Modbus(ports["modbus"], ports["strings"], samples["modbus"])
    snmp, web = Snmp(ports["snmp"]), Http(ports["web"])
    bacnet_address = ("127.0.0.1", ports["bacnet"])
    asks: dict[str, Callable[[], bool | str]] = {
        "modbus": modbus.ask,
        "snmp": snmp.ask,
        "bacnet": lambda: read_device_name(bacnet_address, ports["device"], TIMEOUT_S["bacnet"]),
        "http": web.ask,
    }
    stop = threading.Event()

    def loop(protocol: str) -> None:
        while not stop.wait(REST_S[protocol]):
            timed(samples[protocol], protocol, asks[protocol])

    for protocol in asks:  # each served once before the first window
        timed(samples[protocol], protocol, asks[protocol])
    first = {p: s.take() for p, s in samples.items()}
    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in asks]
    for t in threads:
        t.start()
    print(json.dumps({"ready": {p: r["failures"] == 0 for p, r in first.items()}}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        reply = {p: s.take() for p, s in samples.items()}
        print(json.dumps(reply if cmd["op"] == "report" else {"ok": True}), flush=True)
    stop.set()


if __name__ == "__main__":
    main()
