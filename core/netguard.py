"""Client allowlists shared by every northbound server (Modbus TCP, SNMP, web, ...).

One definition so that every protocol accepts the same notation (addresses
and CIDR networks, IPv4 and IPv6) and reports a mistake the same way.
"""

from __future__ import annotations

import ipaddress
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
