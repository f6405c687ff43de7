"""What every northbound server uses to defend itself (Modbus TCP, SNMP, web, ...).

Client allowlists: one definition so that every protocol accepts the same
notation (addresses and CIDR networks, IPv4 and IPv6) and reports a mistake
the same way. Connection slots per address with eviction (a full server
never locks a new client out), token buckets per source (rate limits), a
log tally (a flood of the same error is logged once with a count), and one
rule (``may_accept``) by which every listener leaves a reserve of file
descriptors to the southbound side.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any, Generic, Protocol, TypeVar

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
#: descriptors above the southbound reserve that the web listener leaves too: HTTP
#: is the largest surface (browsers, scrapers, SSE), so it stops first and Modbus
#: TCP (at most ``max_connections`` of its own) still gets in when it is flooded
FD_RESERVE_WEB = 64


def _fd_ceiling(reserve: int) -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a cheap syscall
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return max(0, soft - reserve)


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


def may_accept(fd: int, extra_reserve: int = 0) -> bool:
    """May a listener keep the connection it just accepted on descriptor ``fd``?

    The kernel hands out the lowest free descriptor, so a descriptor at or
    above ``soft limit - FD_RESERVE`` means at most FD_RESERVE are left. A
    listener that closes such a connection at once (every listener does)
    never holds a descriptor in the reserve, so the reserve is there when a
    replugged serial adapter is reopened, whatever the clients do. A listener
    that must give way to the others earlier passes ``extra_reserve`` (the
    web listener: FD_RESERVE_WEB). O(1): no count of /proc/self/fd per
    connection."""
    return fd < _fd_ceiling(FD_RESERVE + extra_reserve)


#: the loopback networks: where a listener answers when no allowlist is configured
#: and its protocol is one that must not answer the whole network by default (SNMP)
LOOPBACK = ("127.0.0.0/8", "::1")


def peer_host(peer: Any) -> str:
    """The address part of a socket peer name (``(host, port, ...)``), or ""."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class LogTally:
    """Logs the first event of a kind at once, then counts the rest and logs
    them as one line with the count, at most once per ``every_s``.

    A flood of bad clients (thousands of refused connections or junk frames
    a second) then costs a log line every few seconds, never a line, let
    alone a traceback, per event; the totals are in each server's counters.
    The summary of a burst is written when its window ends (a timer on the
    running loop) or, without a loop, with the next event after it."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._kinds: dict[str, _Tally] = {}

    def note(self, kind: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        tally = self._kinds.get(kind)
        if tally is None or (not tally.suppressed and now - tally.logged_at >= self.every_s):
            self._kinds[kind] = _Tally(message, args, level, now)
            self.logger.log(level, message, *args, stacklevel=2)
            return
        tally.suppressed += 1
        tally.message, tally.args = message, args
        if tally.suppressed == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                delay = max(0.0, tally.logged_at + self.every_s - now)
                tally.timer = loop.call_later(delay, self._flush, kind)
        if tally.timer is None and now - tally.logged_at >= self.every_s:
            self._flush(kind)

    def _flush(self, kind: str) -> None:
        tally = self._kinds.get(kind)
        if tally is None or not tally.suppressed:
            return
        span = time.monotonic() - tally.logged_at
        self.logger.log(
            tally.level,
            tally.message + " (%d more like this in the last %.0f s; counted)",
            *tally.args,
            tally.suppressed,
            span,
        )
        tally.suppressed = 0
        tally.timer = None
        tally.logged_at = time.monotonic()

    def close(self) -> None:
        """Write what is still counted and stop the timers (a server stopping)."""
        for kind, tally in list(self._kinds.items()):
            if tally.timer is not None:
                tally.timer.cancel()
                tally.timer = None
            self._flush(kind)


class _Tally:
    __slots__ = ("args", "level", "logged_at", "message", "suppressed", "timer")

    def __init__(self, message: str, args: tuple[Any, ...], level: int, now: float) -> None:
        self.message, self.args, self.level = message, args, level
        self.logged_at = now
        self.suppressed = 0
        self.timer: asyncio.TimerHandle | None = None


class TokenBuckets:
    """A token bucket per source: ``rate`` tokens a second, at most ``burst``
    saved up; :meth:`take` spends one for a request, or refuses it.

    Only sources that passed the allowlist reach it, but a spoofed-source
    flood from an allowed network could still make new keys without end, so
    the table is bounded: past ``max_sources`` the source seen longest ago is
    forgotten (it starts again with a full bucket, which a flood cannot
    exploit: a forgotten source is one that has been quiet)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_sources = max_sources
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, source: str, cost: float = 1.0) -> bool:
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = [self.burst, now]
        else:
            self._buckets.move_to_end(source)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] < cost:
            return False
        bucket[0] -= cost
        return True

    def __len__(self) -> int:
        return len(self._buckets)


class Slot(Protocol):
    """What :class:`ConnectionSlots` needs of a connection."""

    @property
    def last_active(self) -> float:
        """When it was last active (its last complete request, say): the
        lowest is evicted first. A server may rank connections that never
        sent a request below every other one."""
        ...


S = TypeVar("S", bound=Slot)


class ConnectionSlots(Generic[S]):
    """Open connections counted per client address and in total, and the one to
    evict when a new connection needs a slot: never a refusal.

    Refusing at a full table is a lock-out: whoever holds every slot (16 idle
    sockets from one host) keeps the SCADA out for as long as it likes.
    Instead a new connection always gets in, and the connection evicted is
    the least recently active one of: the newcomer's own address when that
    address is at ``per_address``, else the address holding the most
    connections (ties: the one whose quietest connection is quietest). A
    client with fewer connections than every other address is never the one
    evicted for a newcomer; a flood from one address only evicts itself."""

    def __init__(self, total: int, per_address: int) -> None:
        if not 1 <= per_address <= total:
            raise ValueError("1 <= per_address <= total")
        self.total = total
        self.per_address = per_address
        self._by_host: dict[str, dict[S, None]] = {}
        self._host_of: dict[S, str] = {}

    def __len__(self) -> int:
        return len(self._host_of)

    def count(self, host: str) -> int:
        return len(self._by_host.get(host, ()))

    def victim(self, host: str) -> S | None:
        """The connection to close before ``host`` may add one (None: room)."""
        own = self._by_host.get(host)
        if own is not None and len(own) >= self.per_address:
            return min(own, key=_quietness)
        if len(self._host_of) < self.total:
            return None
        busiest = max(
            self._by_host.values(),
            key=lambda conns: (len(conns), -min(c.last_active for c in conns)),
        )
        return min(busiest, key=_quietness)

    def add(self, conn: S, host: str) -> None:
        self._by_host.setdefault(host, {})[conn] = None
        self._host_of[conn] = host

    def remove(self, conn: S) -> None:
        """Forget ``conn`` (closed, or evicted); a second call is a no-op."""
        host = self._host_of.pop(conn, None)
        if host is None:
            return
        conns = self._by_host[host]
        del conns[conn]
        if not conns:
            del self._by_host[host]


def _quietness(conn: Slot) -> float:
    return conn.last_active
