"""The full-scale plant: 32 strings x 120 cells spread over buses sized by
wire time, and the gateway config with every northbound plugin on."""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from typing import Any

from .procs import free_port

GAP_S = 0.00175  # Modbus RTU inter-frame gap above 19200 baud


def wire_time_s(cells: int, baud: int) -> float:
    """Wire time of one poll of a ``cells``-cell string: every request (8 bytes)
    and reply (5 + 2 per register) at 10 bits a byte, plus a gap after each frame."""
    from btms_gateway.protocols.bmsm.regmap import DEFAULT_MAP

    plan = DEFAULT_MAP.full_plan(cells)
    chars = sum(8 + 5 + 2 * r.count for r in plan)
    return chars * 10 / baud + 2 * GAP_S * len(plan)


@dataclass
class Ports:
    modbus: int
    snmp: int
    bacnet: int
    web: int

    @classmethod
    def free(cls) -> Ports:
        udp = socket.SOCK_DGRAM
        return cls(free_port(), free_port(udp), free_port(udp), free_port())


def bus_spec(
    strings: int,
    cells: int,
    baud: int,
    interval_s: float,
    tcp_buses: int,
    rates: dict[str, float] | None = None,
    frozen: bool = False,
    headroom: float = 0.85,
) -> list[dict[str, Any]]:
    """As few buses as the wire allows at ``interval_s`` (using ``headroom`` of
    it), strings spread evenly; the last ``tcp_buses`` are RTU over TCP."""
    per_bus = max(1, int(interval_s * headroom / wire_time_s(cells, baud)))
    n = math.ceil(strings / per_bus)
    spec = [
        {
            "name": f"b{b + 1}",
            "transport": "tcp" if b >= n - tcp_buses else "pty",
            "baud": baud,
            "slaves": {},
            "seed": b + 1,
            "rates": rates or {},
            "frozen": frozen,
        }
        for b in range(n)
    ]
    for i in range(strings):
        bus = spec[i % n]
        bus["slaves"][str(len(bus["slaves"]) + 1)] = cells
    return spec


def strings_of(spec: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(string name, bus, slave), names S1.. in bus-interleaved order."""
    out = []
    n = len(spec)
    for i in range(sum(len(b["slaves"]) for b in spec)):
        bus = spec[i % n]
        out.append((f"S{i + 1}", bus["name"], i // n + 1))
    return out


def gateway_config(
    spec: list[dict[str, Any]],
    where: dict[str, Any],
    ports: Ports,
    data_dir: str,
    interval_s: float,
    ups: int = 8,
    plugins: tuple[str, ...] = ("modbus_tcp", "snmp", "bacnet", "web"),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    sections = {
        "modbus_tcp": {"port": ports.modbus},
        "snmp": {"port": ports.snmp},
        "bacnet": {"address": f"127.0.0.1/8:{ports.bacnet}"},
        "web": {"port": ports.web},
    }
    strings = strings_of(spec)
    return {
        "gateway": {
            "poll_interval_s": interval_s,
            "stale_after_s": max(3.0, 3 * interval_s),
            "offline_after_failures": 3,
            "data_dir": data_dir,
        },
        "buses": [
            {"name": b["name"], "baudrate": b["baud"], "timeout_s": 0.3, **where[b["name"]]}
            for b in spec
        ],
        "ups": [{"name": f"UPS{u}"} for u in range(1, ups + 1)],
        "strings": [
            {"name": name, "bus": bus, "slave_id": slave, "ups": f"UPS{i % ups + 1}"}
            for i, (name, bus, slave) in enumerate(strings)
        ],
        "plugins": {p: sections[p] for p in plugins} | (extra or {}),
    }
