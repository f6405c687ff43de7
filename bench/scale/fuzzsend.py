"""How hostile inputs reach a server: one input per connection or glued on
a kept one (TCP), datagrams (UDP), slow-drip connections, connection floods."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def udp_backlog(port: int) -> tuple[int, int]:
    """(bytes queued, datagrams dropped) over the UDP sockets bound to ``port``,
    from /proc/net/udp (Linux; (0, 0) elsewhere). The receiver's kernel drops
    what does not fit its socket buffer (about 200 small datagrams by default):
    a sender that does not watch this measures its own speed, not the
    server's, and the server never sees most of the inputs."""
    queued = dropped = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    queued += int(fields[4].split(":")[1], 16)
                    dropped += int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0, 0
    return queued, dropped


class Sender:
    """Sends one input at a time; TCP reconnects whenever the server hangs up.

    ``pace`` (UDP): every 16 datagrams, wait while the server's socket holds
    more than ``pace`` bytes it has not read yet, so that every input reaches
    the server instead of being dropped by its kernel."""

    PACE_EVERY = 16

    def __init__(self, proto: str, port: int, pace: int | None = None) -> None:
        self.proto, self.port = proto, port
        self.udp = proto in ("snmp", "bacnet")
        self.sock: socket.socket | None = None
        self.reconnects = self.replies = self.refused = 0
        self.pace = pace if self.udp else None
        self._since_pace = 0

    def drain(self, limit: int = 0, timeout: float = 10.0) -> bool:
        """UDP: wait until the server has read all but ``limit`` bytes of what
        was sent (False after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while udp_backlog(self.port)[0] > limit:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def _connect(self) -> socket.socket:
        if self.udp:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", self.port))
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            self.reconnects += 1
        s.setblocking(False)
        return s

    def send(self, data: bytes, fresh: bool = False) -> None:
        """``fresh``: on a connection of its own (the parser starts clean and
        sees exactly this input, then end of stream); otherwise glued to the
        previous inputs on a kept connection (framing desync is an attack too)."""
        if fresh and not self.udp:
            self.one_shot(data)
            return
        if self.pace is not None:
            self._since_pace += 1
            if self._since_pace >= self.PACE_EVERY:
                self._since_pace = 0
                self.drain(self.pace)
        for _ in range(2):
            if self.sock is None:
                self.sock = self._connect()
            try:
                self.sock.settimeout(2)
                self.sock.sendall(data)
                self.sock.setblocking(False)
                self._drain()
                return
            except OSError:
                self.sock.close()
                self.sock = None

    def one_shot(self, data: bytes) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.refused += 1
            return
        # RST on close: 100,000 connections must not exhaust ports in TIME_WAIT
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            s.sendall(data)
            s.settimeout(0.01)
            if s.recv(65536):
                self.replies += 1
        except OSError:
            pass
        finally:
            s.close()
        self.reconnects += 1

    def _drain(self) -> None:
        assert self.sock is not None
        try:
            while True:
                got = self.sock.recv(65536)
                if not got and not self.udp:
                    raise ConnectionResetError("closed by the server")
                self.replies += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            if not self.udp:
                raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class Drip(threading.Thread):
    """Slow-drip connections: a valid-looking request, one byte every 0.5 s."""

    def __init__(self, port: int, payload: bytes, connections: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.payload, self.n, self.stop_ = port, payload, connections, stop
        self.closed_by_server = 0

    def run(self) -> None:
        socks = []
        for _ in range(self.n):
            with contextlib.suppress(OSError):
                socks.append(socket.create_connection(("127.0.0.1", self.port), timeout=2))
        i = 0
        while not self.stop_.wait(0.5):
            for s in list(socks):
                try:
                    s.send(self.payload[i % len(self.payload) : i % len(self.payload) + 1])
                except OSError:
                    self.closed_by_server += 1
                    socks.remove(s)
            i += 1
        for s in socks:
            s.close()


def flood(port: int, n: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """``n`` connections from ``host`` held open (as many as the server takes
    before one fails)."""
    out = []
    for _ in range(n):
        try:
            out.append(
                socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(host, 0))
            )
        except OSError:
            break
    return out
