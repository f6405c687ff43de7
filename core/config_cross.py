"""Rules that span sections of the config file: references between sections,
unique names and slave ids, the address space (32 UPS, 128 strings), serial ports that exist,
one bus per RS485 line.

They run on the raw document, not on the validated model, so that a file
with a type error somewhere still gets every reference problem reported in
the same pass: an integrator fixes the whole file at once. A value that is
itself malformed is left to the schema's own message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .config_base import Problem
from .model import MAX_STRINGS, MAX_UPS

SERIAL_URL_SCHEMES = ("socket://", "rfc2217://", "loop://")


def _entries(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        return []
    return [e if isinstance(e, dict) else {} for e in value]


def _names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries if isinstance(e.get("name"), str)]


def serial_port_problem(bus: Mapping[str, Any]) -> str | None:
    """A missing device is a configuration error unless the bus is told to wait
    for it (a USB adapter that appears after boot)."""
    port = bus.get("port")
    if bus.get("transport", "serial") != "serial" or not isinstance(port, str):
        return None
    if bus.get("wait_for_port") is True or port.startswith(SERIAL_URL_SCHEMES):
        return None
    if not os.path.isabs(port):
        return f"an absolute device path such as /dev/ttyUSB0, found {port!r}"
    if not os.path.exists(port):
        return (
            f"an existing serial device (or wait_for_port = true), "
            f"found {port!r}, which does not exist"
        )
    return None


def bus_line(bus: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
    """(key, what the bus opens): the serial device with its symlinks resolved
    (/dev/serial/by-id/... is the ttyUSB it points to), or the converter's host
    and TCP port (a ``socket://`` serial URL included). None when malformed."""
    if bus.get("transport", "serial") == "serial":
        port = bus.get("port")
        if not isinstance(port, str):
            return None
        if port.startswith("socket://"):
            url = urlsplit(port)
            try:
                return "port", ("tcp", (url.hostname or "").lower(), url.port)
            except ValueError:  # a port number out of range: pyserial reports it
                return None
        return "port", ("device", os.path.realpath(port) if os.path.isabs(port) else port)
    host, tcp_port = bus.get("host"), bus.get("tcp_port")
    if not isinstance(host, str) or not isinstance(tcp_port, int):
        return None
    return "host", ("tcp", host.lower(), tcp_port)


def _one_bus_per_line(buses: list[dict[str, Any]]) -> list[Problem]:
    """Two buses must never open one RS485 line. A serial device opened twice
    gives the second bus nothing (the first reads every reply); two TCP
    connections to one converter port are refused by most converters, and the
    rest interleave two masters on one half-duplex line, so replies collide
    or answer the other master's request. Strings on one line share one bus."""
    seen: dict[tuple[Any, ...], str] = {}
    out = []
    for i, bus in enumerate(buses):
        line = bus_line(bus)
        if line is None:
            continue
        key, where = line
        if where in seen:
            what = (
                f"{bus.get('port')!r}"
                if key == "port"
                else f"{bus.get('host')}:{bus.get('tcp_port')}"
            )
            out.append(
                Problem(
                    f"buses[{i}].{key}",
                    f"a line no other bus opens (strings on one RS485 line go on one "
                    f"[[buses]] entry), found {what}, which bus {seen[where]!r} opens too",
                )
            )
        else:
            seen[where] = str(bus.get("name"))
    return out


def _unique(section: str, entries: list[dict[str, Any]], key: str, what: str) -> list[Problem]:
    seen: set[Any] = set()
    out = []
    for i, entry in enumerate(entries):
        value = entry.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        if value in seen:
            out.append(
                Problem(f"{section}[{i}].{key}", f"{what} not used before, found {value!r} again")
            )
        seen.add(value)
    return out


def cross_check(data: Mapping[str, Any]) -> list[Problem]:
    buses, ups, strings = (_entries(data, k) for k in ("buses", "ups", "strings"))
    bus_names, ups_names, string_names = _names(buses), _names(ups), _names(strings)
    problems: list[Problem] = []
    for section, entries in (("buses", buses), ("ups", ups), ("strings", strings)):
        problems += _unique(section, entries, "name", "a name")
    for section, entries, top in (("ups", ups, MAX_UPS), ("strings", strings, MAX_STRINGS)):
        if len(entries) > top:
            problems.append(
                Problem(
                    section,
                    f"at most {top} [[{section}]] entries (indexes 1..{top}, each "
                    f"addressed on every protocol), found {len(entries)}",
                )
            )
        problems += _unique(section, entries, "index", "an index")
    slaves: dict[tuple[str, int], str] = {}
    for i, s in enumerate(strings):
        bus, ups_name, slave = s.get("bus"), s.get("ups"), s.get("slave_id")
        if isinstance(bus, str) and bus not in bus_names:
            problems.append(
                Problem(
                    f"strings[{i}].bus", f"the name of a [[buses]] entry {bus_names}, found {bus!r}"
                )
            )
        if isinstance(ups_name, str) and ups_name not in ups_names:
            problems.append(
                Problem(
                    f"strings[{i}].ups",
                    f"the name of a [[ups]] entry {ups_names}, found {ups_name!r}",
                )
            )
        if isinstance(bus, str) and isinstance(slave, int):
            if (bus, slave) in slaves:
                problems.append(
                    Problem(
                        f"strings[{i}].slave_id",
                        f"a slave id unique on bus {bus!r}, found {slave} "
                        f"(already string {slaves[(bus, slave)]!r})",
                    )
                )
            slaves[(bus, slave)] = str(s.get("name"))
    if not strings:
        problems.append(Problem("strings", "at least one [[strings]] entry, found none"))
    for section in ("alarms", "analytics"):
        table = data.get(section)
        per_string = table.get("strings") if isinstance(table, dict) else None
        for name in per_string if isinstance(per_string, dict) else ():
            if name not in string_names:
                problems.append(
                    Problem(
                        f"{section}.strings.{name}",
                        f"the name of a [[strings]] entry {string_names}, found {name!r}",
                    )
                )
    for i, bus in enumerate(buses):
        port_problem = serial_port_problem(bus)
        if port_problem:
            problems.append(Problem(f"buses[{i}].port", port_problem))
    problems += _one_bus_per_line(buses)
    return problems
