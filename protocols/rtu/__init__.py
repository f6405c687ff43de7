"""Modbus RTU bus links (serial port or RTU over TCP) for southbound device profiles.

Layered like pymodbus: transport (bytes in/out), framing (pymodbus's RTU framer
CRC and PDU classes), transaction (one request, one classified reply). See
docs/southbound.md for why this is not pymodbus's client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .link import RtuLink

if TYPE_CHECKING:
    from btms_gateway.core.api import BusConfig

__all__ = ["RtuLink", "open_link"]


def open_link(bus: BusConfig) -> RtuLink:
    """The link for one configured bus, not yet opened (the engine opens it and
    reopens it after a PollError of kind PORT)."""
    return RtuLink(bus)
