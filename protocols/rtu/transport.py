"""Byte transports under the RTU link: a local serial port (pyserial opens and
configures it) or a TCP connection to an RS485-to-Ethernet converter that
passes RTU frames through. Both are a non-blocking file descriptor, read
directly; a wait for bytes is one poll(2) with a timeout, in the bus's own
thread (core/engine.py says why acquisition has threads of its own).

A transport only moves bytes and records when they arrived; framing and
timing belong to the link. Any I/O failure is reported as PollError(PORT)
and leaves the transport closed, so the engine's reopen logic takes over.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import select
import socket
import termios
import time
from collections.abc import Callable
from typing import Any

import serial
import serial.rs485
from btms_gateway.core.api import BusConfig, ErrorKind, PollError

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class Transport:
    """Received bytes collect in ``rx``; ``last_rx`` is the monotonic time the
    latest chunk arrived (the end of a frame for the inter-frame gap).

    ``read_now()`` takes what the port holds without waiting; ``wait(s)``
    sleeps until the port has something to read or ``s`` seconds pass. Nothing
    reads the port between transactions: what arrives then is found by the
    next read (stray bytes, or the end of file of an unplugged adapter or a
    closed connection). A port failure is kept (``failed``) and turned into
    PollError(PORT), with the transport closed, by ``raise_if_failed()``.
    Subclasses open and close the descriptor and say how to read and write it.
    """

    def __init__(self) -> None:
        self.rx = bytearray()
        self.last_rx = 0.0
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self._error: str | None = None
        self.pending = self.raw_read = self.raw_write = _closed

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def where(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        raise NotImplementedError

    # The link's straight path calls these directly (see RtuLink._transaction):
    # ``pending()`` lists what poll(2) finds readable now (stray bytes, a
    # failure), ``raw_read()`` reads what the port holds (BlockingIOError when
    # nothing), ``raw_write(data)`` writes and returns the bytes taken. On a
    # closed transport each raises OSError.
    pending: Callable[[], list[tuple[int, int]]]
    raw_read: Callable[[], bytes]
    raw_write: Callable[[bytes], int]

    def close(self) -> None:
        self._fd = None
        self._poll = None
        self.pending = self.raw_read = self.raw_write = _closed
        self._close_port()

    def _opened(self, fd: int) -> None:
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, _READABLE)
        self.pending = functools.partial(self._poll.poll, 0)
        self._error = None
        self.rx.clear()

    # --- what a subclass provides ------------------------------------------
    def _read_chunk(self) -> bytes:
        """What the descriptor holds (BlockingIOError when nothing, b"" at the
        end of file, OSError when the port failed)."""
        raise NotImplementedError

    def _write_all(self, data: bytes) -> None:
        """Write a whole request or raise OSError (or a pyserial error)."""
        raise NotImplementedError

    def _close_port(self) -> None:
        raise NotImplementedError

    _gone_hint = "adapter unplugged?"

    # --- reading -------------------------------------------------------------
    def read_now(self) -> None:
        """Take into ``rx`` what the port holds, without waiting. A failure is
        kept, never raised here: the caller checks ``failed``."""
        if self._fd is None:
            return
        try:
            data = self._read_chunk()
        except BlockingIOError:
            return
        except OSError as exc:
            self._error = f"{self.where}: read failed ({exc}); {self._gone_hint}"
            return
        if not data:
            self._error = f"{self.where}: end of file; {self._gone_hint}"
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        self.rx += data
        self.last_rx = time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Sleep until the port is readable (or failed), at most ``seconds``."""
        if self._poll is None:
            return False
        return bool(self._poll.poll(max(0, math.ceil(seconds * 1000))))

    def take(self) -> bytes:
        """Everything received so far, the port read once more first."""
        self.read_now()
        return self.take_buffered()

    def take_buffered(self) -> bytes:
        data = bytes(self.rx)
        self.rx.clear()
        return data

    def raise_if_failed(self) -> None:
        if self._error is not None:
            detail, self._error = self._error, None
            self.close()
            raise PollError(ErrorKind.PORT, detail)

    # --- writing -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._error is not None:
            self.raise_if_failed()
        if self._fd is None:
            raise PollError(ErrorKind.PORT, f"{self.where} is not open")
        try:
            self._write_all(data)
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise PollError(ErrorKind.PORT, f"{self.where}: write failed: {exc}") from exc


def _closed(*_args: object) -> Any:
    raise OSError(errno.EBADF, "the port is closed")


def _read_without_eof_on_empty(fd: int) -> None:
    """VMIN = 1 on a port pyserial opened non-blocking: a read of an empty port
    then raises EAGAIN, where pyserial's VMIN = 0 returns b"" exactly like the
    end of file of an unplugged adapter. So the port can be read directly,
    without asking the driver first how much is waiting (an ioctl per read,
    two per transaction)."""
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class SerialTransport(Transport):
    def __init__(self, bus: BusConfig) -> None:
        super().__init__()
        self.bus = bus
        self._ser: serial.Serial | None = None

    @property
    def where(self) -> str:
        return self.bus.port or "?"

    def open(self) -> None:
        bus = self.bus
        port = bus.port or ""
        try:
            ser = serial.Serial(
                port=None,
                baudrate=bus.baudrate,
                bytesize=bus.bytesize,
                parity=_PARITY[bus.parity],
                stopbits=bus.stopbits,
                timeout=0,
                write_timeout=1.0,
                exclusive=True,  # two masters on one port garble each other's frames
            )
            ser.port = port
            ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PollError(ErrorKind.PORT, f"cannot open {port}: {exc}") from exc
        if bus.rs485_direction == "rts":
            try:
                ser.rs485_mode = serial.rs485.RS485Settings(
                    rts_level_for_tx=True, rts_level_for_rx=False
                )
            except (ValueError, OSError, serial.SerialException) as exc:
                ser.close()
                raise PollError(
                    ErrorKind.PORT,
                    f'{port}: rs485_direction = "rts" needs kernel RS485 support '
                    f"(TIOCSRS485) on this adapter, which refused it: {exc}",
                ) from exc
        try:
            _read_without_eof_on_empty(ser.fileno())
        except (termios.error, OSError) as exc:
            ser.close()
            raise PollError(ErrorKind.PORT, f"cannot configure {port}: {exc}") from exc
        ser.reset_input_buffer()
        self._ser = ser
        fd = ser.fileno()
        self._opened(fd)
        self.raw_read = functools.partial(os.read, fd, 4096)
        self.raw_write = functools.partial(os.write, fd)

    def _read_chunk(self) -> bytes:
        return os.read(self._fd, 4096)  # type: ignore[arg-type]  # called only while open: _fd is set

    def _write_all(self, data: bytes) -> None:
        # os.write first: a request is 8 bytes and the port's buffer is empty
        # between transactions, so it goes in one call. pyserial's write adds a
        # select() per call to honour write_timeout; it only runs for the rest
        # of a short write.
        try:
            sent = os.write(self._fd, data)  # type: ignore[arg-type]  # only while open: _fd is set
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            assert self._ser is not None
            self._ser.write(data[sent:])

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()


class TcpTransport(Transport):
    """RTU over TCP: the converter forwards raw RTU frames (CRC included), so
    the socket is read exactly like the serial port."""

    _gone_hint = "converter closed the connection?"

    def __init__(self, bus: BusConfig) -> None:
        super().__init__()
        self.bus = bus
        self._sock: socket.socket | None = None

    @property
    def where(self) -> str:
        return f"{self.bus.host}:{self.bus.tcp_port}"

    def open(self) -> None:
        try:
            sock = socket.create_connection(
                (self.bus.host, self.bus.tcp_port), timeout=max(self.bus.timeout_s, 1.0)
            )
        except OSError as exc:  # TimeoutError is an OSError
            raise PollError(ErrorKind.PORT, f"cannot connect to {self.where}: {exc}") from exc
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames, not a stream
        self._sock = sock
        self._opened(sock.fileno())
        self.raw_read = functools.partial(sock.recv, 4096)
        self.raw_write = sock.send

    def _read_chunk(self) -> bytes:
        assert self._sock is not None
        return self._sock.recv(4096)

    def _write_all(self, data: bytes) -> None:
        """Between transactions the socket's send buffer is empty, so a request
        goes in one call; a converter that stops taking 8 bytes is gone."""
        assert self._sock is not None
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            raise OSError("the converter is not taking data (send buffer full)")

    def _close_port(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
