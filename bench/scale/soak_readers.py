"""The fault soak's readers: clients no one here wrote, reading what the
gateway serves on every protocol the whole time, each sight a ``Seen`` the
soak's judges check against the simulators' truth.

- Modbus TCP (pymodbus): registers 4-10 of each string unit (current, cell
  count) and cells 1, 16 and 18 (status and voltage); the server answers
  exception 0x0B for a string whose data is not GOOD, so data read is GOOD.
- REST (aiohttp): ``/api/strings/NAME``, its quality, current and every cell.
- SNMP (net-snmp's snmpget, a process per request): one GET of every
  string's quality, current, cell count and cells 1, 16 and 18; a value is
  served as current when the quality column in the same answer is good(1).
  OIDs from the shipped MIB (snmptranslate), values read raw (no MIB loaded
  for the reads: no display hints to parse, and a cheaper process).
- BACnet/IP (rusty-bacnet): one ReadPropertyMultiple of every string's
  current object and cells 1, 16 and 18's voltage objects: present value,
  reliability and status flags; a value is served as current when its
  reliability is no-fault-detected and the status flags' fault bit is clear.

SNMP and BACnet read at most every ``every_s``, so the readers do not
crowd the gateway's own loop (the soak measures what they cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .truth import Seen

#: the cells the Modbus, SNMP and BACnet readers read: the first, the last of
#: 16, the last of 18
CELLS_READ = (1, 16, 18)
ROOT = Path(__file__).resolve().parents[2]
#: the shipped MIB, and the IETF MIBs it imports (as the SNMP tests load them)
MIB_DIRS = f"{ROOT / 'tests' / 'mibs'}:{ROOT / 'docs' / 'mib'}"
#: BtmsQuality good(1); BACnet reliability no-fault-detected; status flags' fault bit
SNMP_GOOD, NO_FAULT, FAULT_FLAG = 1, 0, 0x40


async def modbus_reader(
    port: int, index: Mapping[str, int], out: list[Seen], stop: asyncio.Event
) -> None:
    from btms_gateway.plugins.modbus_tcp.map import cell_register
    from pymodbus.client import AsyncModbusTcpClient

    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3)
    await c.connect()
    try:
        while not stop.is_set():
            for name, i in index.items():
                asked = time.time()
                r = await c.read_holding_registers(4, count=7, device_id=100 + i)
                got = time.time()
                if r.isError():
                    out.append(Seen("modbus", name, asked, got, False, None))
                else:
                    v = (r.registers[0] << 16) | r.registers[1]
                    v = v - (1 << 32) if v & 0x80000000 else v
                    count = r.registers[6]
                    out.append(Seen("modbus", name, asked, got, True, v / 100, (), count))
                for ci in CELLS_READ:  # cell status (1 = OK: GOOD data) and voltage
                    asked = time.time()
                    r = await c.read_holding_registers(cell_register(ci, 0), count=2,
                                                       device_id=100 + i)  # fmt: skip
                    if not r.isError() and r.registers[0] == 1:
                        cell = ((ci, r.registers[1] / 1000),)
                        out.append(Seen("modbus", name, asked, time.time(), True, None, cell))
            await asyncio.sleep(0.02)
    finally:
        c.close()


async def rest_reader(port: int, names: list[str], out: list[Seen], stop: asyncio.Event) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            for name in names:
                asked = time.time()
                async with s.get(f"http://127.0.0.1:{port}/api/strings/{name}") as r:
                    body = await r.json()
                got = time.time()
                reading = body["reading"]
                out.append(
                    Seen(
                        "rest",
                        name,
                        asked,
                        got,
                        body["quality"] == "good",
                        reading["current_a"] if reading else None,
                        tuple((c["index"], c["voltage_v"]) for c in reading["cells"])
                        if reading
                        else (),
                        reading["cell_count"] if reading else None,
                    )
                )
            await asyncio.sleep(0.02)


async def _run(*cmd: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode(errors="replace")


async def snmp_columns(*names: str) -> dict[str, str]:
    """Numeric OIDs of the MIB's objects, as net-snmp reads the shipped MIB."""
    code, out, err = await _run(
        "snmptranslate", "-M", MIB_DIRS, "-m", "SNMPv2-MIB:BTMS-GATEWAY-MIB", "-On",
        *(f"BTMS-GATEWAY-MIB::{n}" for n in names),
    )  # fmt: skip
    oids = out.split()
    if code != 0 or len(oids) != len(names):
        raise RuntimeError(f"snmptranslate: {err.strip() or out}")
    return dict(zip(names, (o.lstrip(".") for o in oids), strict=True))


class Failures:
    """Requests a reader saw fail (timeouts, errors): a healthy gateway has none."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.last: dict[str, str] = {}

    def add(self, proto: str, why: str) -> None:
        self.count[proto] = self.count.get(proto, 0) + 1
        self.last[proto] = why[:200]


async def snmp_reader(
    port: int,
    community: str,
    index: Mapping[str, int],
    out: list[Seen],
    stop: asyncio.Event,
    failed: Failures,
    every_s: float = 0.1,
) -> None:
    col = await snmp_columns(
        "btmsStringQuality", "btmsStringCurrent", "btmsStringCellCount", "btmsCellVoltage"
    )
    asked_oids = []
    for i in index.values():
        asked_oids += [f"{col['btmsStringQuality']}.{i}", f"{col['btmsStringCurrent']}.{i}",
                       f"{col['btmsStringCellCount']}.{i}"]  # fmt: skip
        asked_oids += [f"{col['btmsCellVoltage']}.{i}.{c}" for c in CELLS_READ]
    # raw values, numeric OIDs, no MIB parsed: -Oq "OID value" lines, -Oe enums as numbers
    cmd = ["snmpget", "-v2c", "-c", community, "-m", "", "-On", "-Oqe", "-t", "3", "-r", "0",
           f"udp:127.0.0.1:{port}", *asked_oids]  # fmt: skip
    while not stop.is_set():
        started = time.monotonic()
        asked = time.time()
        code, text, err = await _run(*cmd)
        got = time.time()
        if code != 0:
            failed.add("snmp", err.strip() or f"snmpget exit {code}")
        else:
            values = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
            for name, i in index.items():
                out.extend(_snmp_seen(name, i, col, values, asked, got))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - started)))


def _snmp_seen(
    name: str, i: int, col: dict[str, str], values: dict[str, str], asked: float, got: float
) -> list[Seen]:
    def number(oid: str) -> int | None:
        text = values.get(f".{oid}", "")
        return int(text) if text.lstrip("-").isdigit() else None  # not "No Such Instance..."

    quality = number(f"{col['btmsStringQuality']}.{i}")
    current = number(f"{col['btmsStringCurrent']}.{i}")
    count = number(f"{col['btmsStringCellCount']}.{i}")
    good = quality == SNMP_GOOD
    cells = tuple(
        (c, mv / 1000)
        for c in CELLS_READ
        if (mv := number(f"{col['btmsCellVoltage']}.{i}.{c}")) is not None
    )
    if current is None:
        return []
    return [Seen("snmp", name, asked, got, good, current / 100, cells if good else (), count)]


async def bacnet_reader(
    address: str,
    objects: Mapping[str, tuple[Any, dict[int, Any]]],
    out: list[Seen],
    stop: asyncio.Event,
    failed: Failures,
    every_s: float = 0.1,
) -> None:
    """``objects``: per string, its current object's id and its cells' voltage
    object ids (rusty-bacnet ObjectIdentifiers)."""
    import socket

    import rusty_bacnet as rb

    from .procs import free_port

    pi = rb.PropertyIdentifier
    props = [(pi.PRESENT_VALUE, None), (pi.RELIABILITY, None), (pi.STATUS_FLAGS, None)]
    order = [(name, None, current) for name, (current, _) in objects.items()]
    order += [(name, c, oid) for name, (_, cells) in objects.items() for c, oid in cells.items()]
    specs = [(oid, props) for _, _, oid in order]
    async with rb.BACnetClient(
        interface="127.0.0.1", port=free_port(socket.SOCK_DGRAM),
        broadcast_address="127.255.255.255",
    ) as client:  # fmt: skip
        while not stop.is_set():
            started = time.monotonic()
            asked = time.time()
            try:
                results = await client.read_property_multiple(address, specs)
            except Exception as exc:  # rusty-bacnet's timeout, abort, reject errors
                failed.add("bacnet", f"{type(exc).__name__}: {exc}")
                results = None
            got = time.time()
            if results is not None:
                out.extend(_bacnet_seen(order, results, asked, got))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, every_s - (time.monotonic() - started))
                )


def _bacnet_seen(
    order: list[tuple[str, int | None, Any]], results: list[Any], asked: float, got: float
) -> list[Seen]:
    seen = []
    cells: dict[str, list[tuple[int, float]]] = {}
    for (name, cell, _), result in zip(order, results, strict=True):
        value, reliability, flags = (r["value"].value for r in result["results"])
        current = reliability == NO_FAULT and not flags["data"][0] & FAULT_FLAG
        if cell is None:  # REAL: a float32, rounded to the quantity's resolution
            seen.append(Seen("bacnet", name, asked, got, current, round(value, 2)))
        elif current:
            cells.setdefault(name, []).append((cell, round(value, 3)))
    seen += [Seen("bacnet", n, asked, got, True, None, tuple(c)) for n, c in cells.items()]
    return seen


def bacnet_objects(service: Any, names: list[str]) -> dict[str, tuple[Any, dict[int, Any]]]:
    """Each string's current object and cells' voltage objects, found by
    their object names in the BACnet plugin's table."""
    import rusty_bacnet as rb

    kinds = {"analogInput": rb.ObjectType.ANALOG_INPUT}
    by_name = {p.name: p.oid for p in service.points}

    def rid(name: str) -> Any:
        kind, instance = by_name[name]
        return rb.ObjectIdentifier(kinds[kind], instance)

    return {
        n: (rid(f"{n}.current"), {c: rid(f"{n}.cell{c:03d}.voltage") for c in CELLS_READ})
        for n in names
    }
