"""What every northbound server shares about its clients (Modbus TCP, SNMP, web, ...).

Client allowlists: one definition so that every protocol accepts the same
notation (addresses and CIDR networks, IPv4 and IPv6) and reports a mistake
the same way. Descriptors: one rule (``may_accept``) by which every listener
leaves a reserve of file descriptors to the southbound side.
"""

from __future__ import annotations

import ipaddress
import resource
import sys
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator


def _check(entries: list[str]) -> list[str]:
    for item in entries:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"an IP address or CIDR network (e.g. 10.0.0.0/8), found {item!r}"
            ) from None
    return entries


#: A config field type: ``allow: AllowList = []`` (empty = every client allowed).
AllowList = Annotated[list[str], AfterValidator(_check)]


class ClientAllowlist:
    """Decides whether a peer address may talk to a server; cheap enough to
    call on every connection or datagram (results are cached per address)."""

    def __init__(self, entries: list[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)
        self.allows = lru_cache(maxsize=4096)(self._allows)

    @property
    def open(self) -> bool:
        return not self._networks

    def _allows(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self._networks)


# --- descriptors: every listener leaves a reserve for the southbound side ---------------
#: descriptors no listener may take: a serial port reopen (pyserial: the port and
#: two pipes), the event log and history files, a converter's TCP socket, ...
FD_RESERVE = 64


def _fd_ceiling() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a cheap syscall
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return max(0, soft - FD_RESERVE)


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (idempotent; every
    listener calls it as it starts) and return the soft limit now in force.
    A service's usual soft limit of 1,024 is the ceiling connections compete
    for with the serial ports; the hard limit is what the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # a container may forbid it: the reserve still holds
    return soft


def may_accept(fd: int) -> bool:
    """May a listener keep the connection it just accepted on descriptor ``fd``?

    The kernel hands out the lowest free descriptor, so a descriptor at or
    above ``soft limit - FD_RESERVE`` means at most FD_RESERVE are left. A
    listener that closes such a connection at once (every listener does)
    never holds a descriptor in the reserve, so the reserve is there when a
    replugged serial adapter is reopened, whatever the clients do. O(1): no
    count of /proc/self/fd per connection."""
    return fd < _fd_ceiling()
