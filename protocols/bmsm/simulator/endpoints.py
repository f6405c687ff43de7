"""Where the simulator's bytes go: a pseudo-terminal pair it creates, an
existing serial port, or a TCP port (RTU over TCP, one client at a time).

Endpoints are driven by the simulator's own thread with blocking I/O and
select(); nothing here touches an asyncio loop.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import tty

import serial


class Endpoint:
    """``fds()`` to select on; ``readable(fd)`` returns the bytes read (b"" when
    there were none to deliver); ``write`` sends bytes, dropping them when the
    other side is gone, as a real line would."""

    def fds(self) -> list[int]:
        raise NotImplementedError

    def readable(self, fd: int) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def unplug(self) -> None:
        """Make the port vanish, like a USB adapter pulled out."""
        self.close()

    def replug(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be plugged back")

    @property
    def client_path(self) -> str:
        raise NotImplementedError


class PtyEndpoint(Endpoint):
    """A pty pair: the simulator owns the master; clients open the slave's path
    (or ``link``, a symlink the simulator keeps pointing at it, so a test can
    unplug and replug the "adapter" at a stable path). The simulator also keeps
    the slave side open, so a client closing and reopening the port does not
    hang the pair up."""

    def __init__(self, link: str | None = None) -> None:
        self.link = link
        self._master = self._slave = -1
        self._open()

    def _open(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        os.set_blocking(self._master, False)
        self.tty = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.tty, tmp)
            os.replace(tmp, self.link)

    @property
    def client_path(self) -> str:
        return self.link or self.tty

    def fds(self) -> list[int]:
        return [self._master] if self._master >= 0 else []

    def readable(self, fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._master >= 0:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                # Nobody reads the other end and the pty buffer is full: wait a
                # little, then drop the rest, as bytes on an unread line are lost.
                if not select.select([], [self._master], [], 0.05)[1]:
                    return
                continue
            except OSError:
                return
            view = view[n:]

    def close(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def replug(self) -> None:
        if self._master < 0:
            self._open()


class SerialEndpoint(Endpoint):
    """An existing serial device (a USB-RS485 adapter wired to the gateway's)."""

    def __init__(self, port: str, baud: int, parity: str, stopbits: int, bytesize: int) -> None:
        self._args = (port, baud, parity, stopbits, bytesize)
        self._ser: serial.Serial | None = None
        self.replug()

    def replug(self) -> None:
        port, baud, parity, stopbits, bytesize = self._args
        self._ser = serial.Serial(
            port, baud, bytesize=bytesize, parity=parity, stopbits=stopbits, timeout=0
        )

    @property
    def client_path(self) -> str:
        return self._args[0]

    def fds(self) -> list[int]:
        return [self._ser.fileno()] if self._ser else []

    def readable(self, fd: int) -> bytes:
        try:
            return self._ser.read(4096) if self._ser else b""
        except serial.SerialException:
            return b""

    def write(self, data: bytes) -> None:
        if self._ser:
            with contextlib.suppress(serial.SerialException, OSError):
                self._ser.write(data)

    def close(self) -> None:
        if self._ser:
            self._ser.close()
            self._ser = None


class TcpEndpoint(Endpoint):
    """RTU over TCP, as an RS485-to-Ethernet converter serves it: one client
    connection at a time (a new one replaces the old, as converters do)."""

    def __init__(self, host: str, port: int) -> None:
        self._addr = (host, port)
        self._conn: socket.socket | None = None
        self._listener: socket.socket | None = None
        self.replug()

    def replug(self) -> None:
        if self._listener is not None:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self._addr)
        s.listen(4)
        self._addr = s.getsockname()[:2]
        self._listener = s

    @property
    def address(self) -> tuple[str, int]:
        return self._addr

    @property
    def client_path(self) -> str:
        return f"{self._addr[0]}:{self._addr[1]}"

    def fds(self) -> list[int]:
        out = [self._listener.fileno()] if self._listener else []
        return out + ([self._conn.fileno()] if self._conn else [])

    def readable(self, fd: int) -> bytes:
        if self._listener is not None and fd == self._listener.fileno():
            conn, _ = self._listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._drop_conn()
            self._conn = conn
            return b""
        if self._conn is None:
            return b""
        try:
            data = self._conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_conn()
        return data

    def _drop_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def write(self, data: bytes) -> None:
        if self._conn is not None:
            try:
                self._conn.sendall(data)
            except OSError:
                self._drop_conn()

    def close(self) -> None:
        self._drop_conn()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
