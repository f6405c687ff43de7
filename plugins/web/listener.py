"""The web server's own accept loop: who may connect, how many, for how long.

aiohttp's ``TCPSite`` leaves accepting to asyncio, which hands every socket
the kernel queued straight to the HTTP parser: a client outside the
allowlist was held open until its request arrived, idle connections were
kept for an hour, and once the descriptors ran out asyncio's accept loop
logged a traceback per attempt while a replugged serial adapter could not
be reopened. Here each socket is judged the moment it is accepted, before a
byte is read (or a TLS handshake started), and only then given to aiohttp's
protocol through ``loop.connect_accepted_socket``:

* a client outside ``allow`` is closed at once;
* a descriptor in the southbound reserve, or in the web's own extra reserve
  above it (``netguard.may_accept``), is closed at once, so the serial side
  always finds descriptors free and Modbus TCP still gets in under a flood;
* at most ``max_connections`` in all and ``max_connections_per_client`` from
  one address; when all are taken (all of that address's), the connection
  idle longest (no request in progress; one that never sent a request
  first) makes room, so clients that only hold connections open cannot lock
  the others (or another tab of the same browser) out;
* a connection must deliver a complete request head within
  ``header_timeout_s`` of being accepted (the TLS handshake included); after
  an answer, the next request must be complete within ``keepalive_timeout_s``
  (aiohttp's keep-alive timer, which no partial request resets);
* failures to accept (out of descriptors or memory) are counted and logged
  once per interval, never per attempt.

The middleware (security.py) tells the listener when a request starts and
ends, which is what "idle" and "has sent a request" mean here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from btms_gateway.core.api import FD_RESERVE_WEB, ClientAllowlist, may_accept

log = logging.getLogger("btms_gateway.web")

LOG_EVERY_S = 60.0
ACCEPT_RETRY_S = 0.5  # after a failed accept: the kernel keeps the queue meanwhile
BACKLOG = 128


@dataclass(frozen=True)
class ConnectionLimits:
    allow: list[str]
    max_connections: int
    max_per_client: int
    header_timeout_s: float


@dataclass(eq=False)
class Connection:
    """One accepted socket, from accept until its transport closes."""

    sock: socket.socket
    host: str
    accepted_at: float
    fd: int = -1
    transport: Any = None
    requests: int = 0  #: request heads received
    active: int = 0  #: requests being answered
    idle_since: float = 0.0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0 or (
            self.transport is not None and self.transport.is_closing()
        )

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()
        else:
            self.sock.close()


class TallyLog:
    """Counts repeated events by kind and logs each kind at most once per
    ``every_s``, with how many there were: a flood of bad clients costs the
    log a line a minute, not a line (or a traceback) per event."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._pending: Counter[str] = Counter()
        self._last: dict[str, float] = {}

    def note(self, kind: str, message: str, *args: Any) -> None:
        self._pending[kind] += 1
        now = time.monotonic()
        if now - self._last.get(kind, -self.every_s) >= self.every_s:
            self._last[kind] = now
            count = self._pending.pop(kind)
            log.warning(
                message + " (%d since the last report; reported at most every %.0f s)",
                *args,
                count,
                self.every_s,
            )


class Listener:
    """Accepts for one aiohttp server (``factory``: the ``runner.server``)."""

    def __init__(
        self,
        limits: ConnectionLimits,
        factory: Callable[[], asyncio.Protocol],
        refuse: Callable[[str], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self.allowlist = ClientAllowlist(limits.allow)
        self.factory = factory
        self.refuse = refuse  # counts a refusal by reason (the metrics' counter)
        self.ssl = ssl_context
        self.connections: set[Connection] = set()
        self.per_host: Counter[str] = Counter()
        self._by_fd: dict[int, Connection] = {}  # the middleware finds connections by fd
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.tally = TallyLog()

    # --- listening ---------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Bind every address ``host`` resolves to; returns the bound port."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        seen = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address[0]) in seen:
                    continue
                seen.add((family, address[0]))
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self._sockets) > 1:  # one port for every address
                    address = (address[0], self._sockets[0].getsockname()[1], *address[2:])
                sock.bind(address)
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except OSError:
            self.close_sockets()
            raise
        for sock in self._sockets:
            self._spawn(self._accept_loop(sock))
        return int(self._sockets[0].getsockname()[1])

    def close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def stop(self) -> None:
        """Stop accepting; connections are left to aiohttp's shutdown."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close_sockets()
        for conn in list(self.connections):
            if conn.timer is not None:
                conn.timer.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(lsock)
            except OSError as exc:
                # EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing to accept with; the
                # kernel keeps the queue until descriptors are free again
                name = errno.errorcode.get(exc.errno or 0, str(exc))
                self.refuse("accept_failed")
                self.tally.note(f"accept:{name}", "web: cannot accept connections: %s", exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            self.admit(sock, str(peer[0]) if peer else "")

    # --- admission ---------------------------------------------------------------------
    def admit(self, sock: socket.socket, host: str) -> Connection | None:
        """Keep ``sock`` (and start serving it) or close it at once."""
        reason = self._refusal(sock, host)
        if reason is not None:
            sock.close()
            self.refuse(reason)
            self.tally.note(reason, "web: refused a connection from %s: %s", host, _WHY[reason])
            return None
        now = time.monotonic()
        conn = Connection(sock, host, now, fd=sock.fileno(), idle_since=now)
        self.connections.add(conn)
        self.per_host[host] += 1
        self._by_fd[conn.fd] = conn
        self._spawn(self._serve(conn))
        return conn

    def _refusal(self, sock: socket.socket, host: str) -> str | None:
        if not self.allowlist.allows(host):
            return "allowlist"
        if not may_accept(sock.fileno(), FD_RESERVE_WEB):
            return "descriptors"
        self._prune()
        if self.per_host[host] >= self.limits.max_per_client and not self._evict_idle(host):
            return "connections_per_client"
        if len(self.connections) >= self.limits.max_connections and not self._evict_idle():
            return "connections"
        return None

    def _prune(self) -> None:
        for conn in [c for c in self.connections if c.closed]:
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.per_host[conn.host] -= 1
            if self.per_host[conn.host] <= 0:
                del self.per_host[conn.host]
        if self._by_fd.get(conn.fd) is conn:  # a closed fd's number may serve another already
            del self._by_fd[conn.fd]
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _evict_idle(self, host: str | None = None) -> bool:
        """Close the connection idle longest (one that never sent a request
        first), of ``host`` if given, to make room; False when every such
        connection is answering a request."""
        idle = [c for c in self.connections if c.active == 0 and host in (None, c.host)]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.requests > 0, c.idle_since))
        victim.close()
        self._forget(victim)
        self.refuse("evicted_idle")
        return True

    async def _serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = conn.accepted_at + self.limits.header_timeout_s
        try:
            transport, _ = await loop.connect_accepted_socket(
                self.factory,
                conn.sock,
                ssl=self.ssl,
                ssl_handshake_timeout=self.limits.header_timeout_s if self.ssl else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            conn.sock.close()
            self._forget(conn)
            self.refuse("handshake")
            self.tally.note("handshake", "web: connection from %s failed: %s", conn.host, exc)
            return
        if conn not in self.connections:  # evicted during the handshake
            transport.abort()
            return
        conn.transport = transport
        if conn.requests == 0:
            conn.timer = loop.call_at(
                loop.time() + max(0.0, deadline - time.monotonic()), self._head_due, conn
            )

    def _head_due(self, conn: Connection) -> None:
        conn.timer = None
        if conn.requests == 0 and not conn.closed:
            self.refuse("header_timeout")
            conn.close()
            self._forget(conn)

    # --- from the middleware ---------------------------------------------------------------
    def connection_of(self, transport: Any) -> Connection | None:
        sock = transport.get_extra_info("socket") if transport is not None else None
        return self._by_fd.get(sock.fileno()) if sock is not None else None

    def request_started(self, transport: Any) -> None:
        conn = self.connection_of(transport)
        if conn is not None:
            conn.requests += 1
            conn.active += 1
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None

    def request_finished(self, transport: Any) -> None:
        conn = self.connection_of(transport)
        if conn is not None:
            conn.active -= 1
            conn.idle_since = time.monotonic()


_WHY = {
    "allowlist": "not in the allow list",
    "descriptors": "file descriptors are down to the southbound reserve",
    "connections_per_client": "the connection limit per client is reached",
    "connections": "the connection limit is reached and every connection is busy",
}
