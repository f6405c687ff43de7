"""The southbound contract: device profiles, bus links and poll errors.

A device profile turns a configured string into a poller that reads one
reading over a shared bus link. The engine owns scheduling, quality and
back-off; a profile only knows its registers. The BM-SM profile
(btms_gateway.protocols.bmsm) is registered through the same hook a third
party would use; so is the RTU link (btms_gateway.protocols.rtu), a link
factory for each bus transport it speaks.

Links and pollers are plain blocking code: each bus is polled by a thread of
its own (core/engine.py says why), so a poller reads and waits the simple way
and never touches the gateway's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias

from .config import BusConfig, StringConfig
from .counters import CommCounters, ErrorKind

__all__ = [
    "BusLink",
    "DeviceProfile",
    "ErrorKind",
    "LinkFactory",
    "PollError",
    "StringPoller",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import GatewayConfig
    from .config_base import Problem
    from .model import StringReading


class PollError(Exception):
    def __init__(self, kind: ErrorKind, detail: str = "", exception_code: int | None = None):
        self.kind = kind
        self.detail = detail
        self.exception_code = exception_code
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)


class BusLink(Protocol):
    """A half-duplex Modbus RTU link (serial port or RTU over TCP), used from
    its bus's thread; every call blocks until it is done.

    Raises PollError for every failure; never returns partial data."""

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read_holding_registers(
        self, slave: int, address: int, count: int, *, retries: int | None = None
    ) -> list[int]: ...

    def read_ranges(
        self, slave: int, ranges: Sequence[tuple[int, int]], *, retries: int | None = None
    ) -> list[list[int]]:
        """Several (address, count) reads of one slave back to back, one list of
        registers per range; each read is a transaction with its own retries,
        and the first that fails for good raises."""
        ...

    @property
    def counters(self) -> CommCounters:
        """Requests, responses and errors of the whole bus."""
        ...

    def counters_for(self, slave: int) -> CommCounters:
        """The same for one slave; the engine adds its poll counts to it."""
        ...


#: what a bus transport registers: the link for one configured bus, not yet
#: opened (the engine opens it, and reopens it after a PollError of kind PORT)
LinkFactory: TypeAlias = Callable[[BusConfig], BusLink]


class StringPoller(Protocol):
    def poll(self, *, retries: int | None = None) -> StringReading:
        """Read the whole string once; raise PollError on the first failure.

        ``retries`` overrides the bus setting for every transaction of this
        poll: the engine passes 0 when probing a string that is failing, so a
        dead slave costs its bus at most one response timeout (and the guard
        window after it) per cycle."""
        ...


class DeviceProfile(Protocol):
    name: str
    description: str

    def create_poller(
        self, string: StringConfig, bus: BusConfig, link: BusLink
    ) -> StringPoller: ...


class StringChecks(Protocol):
    """Optional for a DeviceProfile: its look at each of its strings when the
    configuration is validated (``check-config``, ``run``, a SIGHUP reload).

    ``check_string`` returns the problems of ``string`` (``strings[index]``
    of ``config``, which is otherwise valid), each with its key path (and
    its own file when the problem is in a file the string names), so a
    string is never polled with settings the profile would refuse at start.
    Only a profile that has it takes a string's ``register_overrides``."""

    def check_string(
        self, string: StringConfig, index: int, config: GatewayConfig
    ) -> list[Problem]: ...
