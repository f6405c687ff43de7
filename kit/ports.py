"""Free loopback ports for tests, and a config whose listeners all use them.

A test never listens on a fixed port: another test, another checkout or a
gateway already running on the machine may hold it. The kernel's free port
(bind to 0) is released when the probe socket closes, so two probes in a row
may get the same number: ``FreePorts`` remembers what it handed out and
never gives a port twice.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

LOOPBACK_HOST = "127.0.0.1"
#: plugins that listen on ``address = "IP/PREFIX:PORT"`` rather than on ``port``
ADDRESS_PORT = re.compile(r"^(?P<ip>[^:]+)(?::(?P<port>\d+))?$")


def free_tcp_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    return _probe(socket.SOCK_STREAM)


def free_udp_port(host: str = LOOPBACK_HOST) -> int:
    """A UDP port of ``host`` that nothing is bound to now."""
    return _probe(socket.SOCK_DGRAM, host=host)


def _probe(kind: socket.SocketKind, port: int = 0, host: str = LOOPBACK_HOST) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, port))
        return int(s.getsockname()[1])


class FreePorts:
    """Hands out free loopback ports, each at most once."""

    def __init__(self) -> None:
        self.given: set[int] = set()

    def tcp(self) -> int:
        return self._new(free_tcp_port)

    def udp(self) -> int:
        return self._new(free_udp_port)

    def both(self) -> int:
        """A port free for TCP and for UDP alike: for a listener whose transport
        the caller does not know (a third-party plugin's ``port``)."""

        def probe() -> int:
            port = free_tcp_port()
            try:
                return _probe(socket.SOCK_DGRAM, port)
            except OSError:
                return 0  # taken for UDP: try another

        return self._new(probe)

    def _new(self, probe: Any) -> int:
        for _ in range(100):
            port = int(probe())
            if port and port not in self.given:
                self.given.add(port)
                return port
        raise RuntimeError("no free loopback port after 100 tries")


def with_free_ports(
    plugins: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, type[BaseModel]],
    ports: FreePorts,
) -> dict[str, dict[str, Any]]:
    """A copy of the ``[plugins]`` tables where every listener the test left
    unset gets a free port: ``port`` of a section whose model has that key, and
    the port of an ``address = "IP/PREFIX:PORT"`` (BACnet/IP). What a table
    states is kept (a broker's port, say)."""
    out = {name: dict(section) for name, section in plugins.items()}
    for name, section in out.items():
        fields = models[name].model_fields if name in models else {}
        if "port" in fields and "port" not in section:
            section["port"] = ports.both()
        default = fields["address"].default if "address" in fields else None
        if isinstance(default, str) and "/" in default and "address" not in section:
            match = ADDRESS_PORT.match(default)
            if match is not None:
                section["address"] = f"{match['ip']}:{ports.both()}"
    return out


def listen_port(section: Mapping[str, Any]) -> int:
    """The port a ``[plugins.NAME]`` table (as ``with_free_ports`` left it) listens on."""
    if "port" in section:
        return int(section["port"])
    match = ADDRESS_PORT.match(str(section.get("address", "")))
    if match is None or match["port"] is None:
        raise KeyError("the section states no port")
    return int(match["port"])
