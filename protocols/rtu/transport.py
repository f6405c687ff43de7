"""Byte transports under the RTU link: a local serial port (pyserial, read
through the event loop's reader callback, never a blocking call) or a TCP
connection to an RS485-to-Ethernet converter that passes RTU frames through.

A transport only moves bytes and records when they arrived; framing and
timing belong to the link. Any I/O failure is reported as PollError(PORT)
and leaves the transport closed, so the engine's reopen logic takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import time

import serial
import serial.rs485
from btms_gateway.core.config import BusConfig
from btms_gateway.core.profiles import ErrorKind, PollError

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class Transport:
    """Received bytes collect in ``rx``; ``last_rx`` is the monotonic time the
    latest chunk arrived (the end of a frame for the inter-frame gap)."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.last_rx = 0.0
        self._waiter: asyncio.Future[bool] | None = None
        self._want = 1
        self._error: str | None = None

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    async def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def _received(self, data: bytes) -> None:
        self.rx += data
        self.last_rx = time.monotonic()
        waiter = self._waiter
        if waiter is not None and len(self.rx) >= self._want and not waiter.done():
            waiter.set_result(True)

    def _failed(self, detail: str) -> None:
        self._error = detail
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    def take(self) -> bytes:
        self._read_now()
        data = bytes(self.rx)
        self.rx.clear()
        return data

    async def wait_data(
        self, deadline: float, want: int | None = None, not_before: float | None = None
    ) -> bool:
        """Wait until ``want`` bytes are buffered (default: one more than now)
        or the monotonic deadline passes; False on timeout. Raises
        PollError(PORT) when the port failed meanwhile.

        ``not_before`` is the earliest moment the bytes can all be there (the
        link knows the reply's wire time): until then nothing is read, and the
        port's buffer is read once when the timer fires. A UART or pty delivers
        a 255-byte reply in about ten chunks, and each chunk read through the
        event loop costs a loop iteration; at full scale (224 transactions a
        second) those wake-ups were most of the gateway's CPU. Only when the
        bytes are not all there by then does the transport listen, and the
        waiting coroutine is still resumed once, when enough has arrived."""
        self._raise_if_failed()
        self._want = len(self.rx) + 1 if want is None else want
        if not_before is not None and len(self.rx) < self._want:
            delay = min(not_before, deadline) - time.monotonic()
            if delay > 0:
                self._quiet()
                await asyncio.sleep(delay)
        self._read_now()
        self._raise_if_failed()
        if len(self.rx) >= self._want:
            self._idle()
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._idle()
            return False
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(remaining, _expire, waiter)
        self._listen()
        try:
            arrived = await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._idle()
        self._raise_if_failed()
        return arrived

    # How a transport reads. Bytes either come through the event loop as they
    # arrive (listening) or wait in the kernel's buffer until read on purpose.
    def _listen(self) -> None:
        """Deliver bytes through the event loop as they arrive."""

    def _quiet(self) -> None:
        """Leave bytes in the kernel's buffer until read on purpose."""

    def _idle(self) -> None:
        """The state between waits."""

    def _read_now(self) -> None:
        """Take into ``rx`` what the kernel holds, if it can be read directly."""

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            detail, self._error = self._error, None
            self.close()
            raise PollError(ErrorKind.PORT, detail)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = False

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    async def open(self) -> None:
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
        self._error = None
        self.rx.clear()
        self._loop = asyncio.get_running_loop()
        self._listening = False

    def _on_readable(self) -> None:
        ser = self._ser
        if ser is None:
            return
        try:
            data = os.read(ser.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._detach()
            self._failed(f"{self.bus.port}: read failed ({exc}); adapter unplugged?")
            return
        if not data:
            self._detach()
            self._failed(f"{self.bus.port}: end of file; adapter unplugged?")
            return
        self._received(data)

    # A serial port is read only while the link waits for bytes that are late
    # (see wait_data) and otherwise on purpose: between transactions and before
    # a reply can be complete, nothing wakes the event loop.
    def _listen(self) -> None:
        if not self._listening and self._ser is not None and self._loop is not None:
            self._loop.add_reader(self._ser.fileno(), self._on_readable)
            self._listening = True

    def _quiet(self) -> None:
        if self._listening and self._ser is not None and self._loop is not None:
            self._loop.remove_reader(self._ser.fileno())
        self._listening = False

    _idle = _quiet

    def _read_now(self) -> None:
        if self._ser is not None:
            self._on_readable()  # an empty port raises EAGAIN (VMIN = 1), not EOF

    def _detach(self) -> None:
        self._quiet()

    def write(self, data: bytes) -> None:
        self._raise_if_failed()
        if self._ser is None:
            raise PollError(ErrorKind.PORT, f"{self.bus.port} is not open")
        try:
            # os.write first: a request is 8 bytes and the port's buffer is empty
            # between transactions, so it goes in one call. pyserial's write adds
            # a select() per call to honour write_timeout; it only runs for the rest
            # of a short write.
            try:
                sent = os.write(self._ser.fileno(), data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._ser.write(data[sent:])
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise PollError(ErrorKind.PORT, f"{self.bus.port}: write failed: {exc}") from exc

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is None:
            return
        if self._listening and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(ser.fileno())
        self._listening = False
        with contextlib.suppress(serial.SerialException, OSError):
            ser.close()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(exc)


class TcpTransport(Transport):
    """RTU over TCP: the converter forwards raw RTU frames (CRC included)."""

    def __init__(self, bus: BusConfig) -> None:
        super().__init__()
        self.bus = bus
        self._tr: asyncio.Transport | None = None

    @property
    def is_open(self) -> bool:
        return self._tr is not None

    @property
    def _where(self) -> str:
        return f"{self.bus.host}:{self.bus.tcp_port}"

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            tr, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _TcpProtocol(self), self.bus.host, self.bus.tcp_port
                ),
                max(self.bus.timeout_s, 1.0),
            )
        except (OSError, TimeoutError) as exc:
            raise PollError(ErrorKind.PORT, f"cannot connect to {self._where}: {exc}") from exc
        self._tr = tr  # type: ignore[assignment]
        self._error = None
        self.rx.clear()

    # TCP is read through the event loop (asyncio's transport), except before a
    # reply can be complete: the converter's packets then wait in the socket.
    def _listen(self) -> None:
        if self._tr is not None and not self._tr.is_reading():
            self._tr.resume_reading()

    def _quiet(self) -> None:
        if self._tr is not None and self._tr.is_reading():
            self._tr.pause_reading()

    _idle = _listen

    def _lost(self, exc: Exception | None) -> None:
        if self._tr is not None:
            self._tr = None
            self._failed(f"{self._where}: connection lost ({exc or 'closed by peer'})")

    def write(self, data: bytes) -> None:
        self._raise_if_failed()
        if self._tr is None:
            raise PollError(ErrorKind.PORT, f"{self._where} is not connected")
        self._tr.write(data)

    def close(self) -> None:
        tr, self._tr = self._tr, None
        if tr is not None:
            tr.abort()
