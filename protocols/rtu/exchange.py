"""One Modbus RTU exchange (a request and its reply) as a state machine run by
the event loop's timers and the port's readiness callbacks.

The link (rtu/link.py) owns the bus: its gap bookkeeping, counters, retries
and the order of transactions; an exchange only knows how one request goes
out and how its reply is collected, and reports the bytes (or the port
failure) to the callback it was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from btms_gateway.core.profiles import PollError

from . import framing

if TYPE_CHECKING:
    from .link import RtuLink

# A burst that does not parse is read until this much silence (or a frame gap if
# longer): generous, because USB adapters and ptys deliver in bursts, and this
# path only runs when the reply is already bad.
BAD_BURST_SILENCE_S = 0.02

#: what an exchange reports: the bytes received and whether their CRC was
#: already found good (None: not checked), or the failure that ended it
Outcome = Callable[[bytes, bool | None, BaseException | None], None]


class Exchange:
    """One request and its reply, run by the event loop's timers and the port's
    readiness callbacks; it reports once, to ``on_done``.

    A coroutine that awaited each step (the gap, the reply's wire time, late
    bytes) cost four or more task wake-ups per transaction, each resuming the
    whole coroutine chain from the bus task down; at full scale (224
    transactions a second) that was most of the acquisition's CPU. The steps:

    1. ``_gap``: the bus has been silent for one frame gap after the last byte
       seen on it; bytes that arrived meanwhile are strays (a late reply,
       noise), dropped and counted, and the gap starts again. A line that never
       goes quiet (a babbling device) is given up on after one response
       timeout: the request goes out and its reply will show the damage.
    2. ``_send``: the request is written; nothing is read before
       ``complete_at``, the earliest moment a whole data reply can have crossed
       the wire (the request's and reply's wire time plus the slave's gap).
    3. ``_check``: the reply is whole when it has the length its header
       promises and its CRC checks: done. A burst that does not parse is read
       until a frame gap of silence (or the deadline), so garbage glued to a
       frame is judged and dropped whole. A reply still short is waited for
       until the response deadline: when bytes have come since the last look,
       the rest follows at wire speed, so the next look is when it can be in
       (first an exception's length, enough to read the header, then the
       length the header promises); when nothing has come, the port is
       listened to for the next bytes. A slave that answers late, or an
       adapter that delivers in bursts, so costs two or three wake-ups, not
       one per chunk.
    """

    __slots__ = (
        "count",
        "deadline",
        "finished",
        "give_up",
        "link",
        "loop",
        "on_done",
        "request",
        "seen",
        "timer",
        "want",
    )

    def __init__(self, link: RtuLink, request: bytes, count: int, on_done: Outcome) -> None:
        self.link = link
        self.request = request
        self.count = count
        self.on_done = on_done
        self.finished = False
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.give_up = time.monotonic() + link.bus.timeout_s
        self.deadline = 0.0
        self.seen = 0  # bytes of the reply at the last look
        self.want = 0  # bytes a listening wait is for

    def start(self) -> None:
        self._wait_gap()

    def stop(self) -> None:
        """Ends the exchange where it stands (also when the poll was cancelled)."""
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.link._transport.quiet()

    def _at(self, when: float, step: Callable[[], None]) -> None:
        # loop.time() is time.monotonic() on every platform's default loop
        self.timer = self.loop.call_at(when, self._safely, step)

    def _safely(self, step: Callable[[], None]) -> None:
        """Run a step from the loop; a bug in one fails the transaction instead
        of leaving the bus task waiting for an answer that never comes."""
        try:
            step()
        except Exception as exc:
            self._done(b"", None, exc)

    def _done(self, buf: bytes, crc_good: bool | None, exc: BaseException | None = None) -> None:
        if self.finished:
            return
        self.stop()
        self.on_done(buf, crc_good, exc)

    def _wait_gap(self) -> None:
        link = self.link
        quiet_until = max(link._idle_since, link._transport.last_rx) + link._gap
        if quiet_until > time.monotonic():
            self._at(quiet_until, self._gap)
        else:
            self._gap()

    def _gap(self) -> None:
        self.timer = None
        link = self.link
        stray = link._transport.take()
        if stray:
            link._stray(len(stray))
            if time.monotonic() <= self.give_up:
                self._wait_gap()
                return
        self._send()

    def _send(self) -> None:
        link, tr = self.link, self.link._transport
        link._sent(self.request[0])
        try:
            tr.write(self.request)
        except PollError as exc:
            self._done(b"", None, exc)
            return
        sent = time.monotonic()
        wire = (len(self.request) + framing.reply_length(self.count)) * link._char
        # a slave sees the end of the request only after a frame gap of
        # silence: its reply cannot be complete before sent + wire + gap
        complete_at = sent + wire + link._gap
        self.deadline = complete_at + link.bus.timeout_s
        self._at(complete_at, self._check)

    def _check(self) -> None:
        self.timer = None
        tr = self.link._transport
        tr.read_now()
        if tr.failed:
            self._port_failed()
            return
        buf = tr.rx
        n = len(buf)
        need = framing.expected_length(buf, self.count)
        now = time.monotonic()
        if n >= need:
            if n == need and framing.crc_ok(buf):
                self._done(tr.take_buffered(), True)
                return
            # a bad burst: read on until the line has been silent a while
            until = min(self.deadline, tr.last_rx + max(self.link._gap, BAD_BURST_SILENCE_S))
            if now >= until:
                self._done(tr.take_buffered(), None)
            else:
                self._listen(n + 1, until)
            return
        if now >= self.deadline:
            self._done(tr.take_buffered(), None)
        elif n > self.seen:  # the reply is coming: look again when the rest can be in
            self.seen = n
            want = framing.EXCEPTION_LENGTH if n < framing.EXCEPTION_LENGTH else need
            self._at(min(self.deadline, tr.last_rx + (want - n) * self.link._char), self._check)
        else:
            self._listen(n + 1, self.deadline)

    def _listen(self, want: int, until: float) -> None:
        self.want = want
        self._at(until, self._expired)
        self.link._transport.listen(self._on_data)

    def _on_data(self) -> None:
        self._safely(self._arrived)

    def _arrived(self) -> None:
        tr = self.link._transport
        if tr.failed:
            self._port_failed()
        elif len(tr.rx) >= self.want:
            if self.timer is not None:
                self.timer.cancel()
            tr.quiet()
            self._check()

    def _expired(self) -> None:
        self.timer = None
        tr = self.link._transport
        tr.quiet()
        tr.read_now()
        if tr.failed:
            self._port_failed()
        elif len(tr.rx) >= self.want:  # the awaited bytes came with the timer
            self._check()
        else:
            self._done(tr.take_buffered(), None)

    def _port_failed(self) -> None:
        try:
            self.link._transport.raise_if_failed()
        except PollError as exc:
            self._done(b"", None, exc)
