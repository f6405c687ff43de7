"""The RTU link against a scripted slave on a real pseudo-terminal: replies
the simulator never sends (another slave's echo, a wrong function or byte
count, garbage glued to a frame, a late burst of strays) and a slave slow
to turn round, whose latency the link learns."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from btms_gateway.core.config import BusConfig
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.protocols.rtu import framing, open_link

# -- a scripted slave for replies the simulator never sends -----------------------


@contextmanager
def scripted_slave(
    replies: list[bytes | tuple[bytes, bytes]], latency_s: list[float] | None = None
) -> Iterator[str]:
    """A pty whose other end answers each 8-byte request with the next reply
    (a tuple: a reply, then stray bytes 10 ms later, as a separate burst),
    ``latency_s[i]`` after the request arrived when given."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    def serve() -> None:
        for i, reply in enumerate(replies):
            got = b""
            while len(got) < 8:
                try:
                    got += os.read(master, 8 - len(got))
                except OSError:
                    return
            if latency_s:
                time.sleep(latency_s[i])
            if isinstance(reply, tuple):
                os.write(master, reply[0])
                time.sleep(0.01)
                os.write(master, reply[1])
            else:
                os.write(master, reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path
    finally:
        os.close(master)
        os.close(slave)
        t.join(timeout=2)


async def test_a_slave_slow_to_turn_round_is_read_once_a_reply() -> None:
    """A slave that answers 5 ms later than the wire allows (a real device
    turning round, a USB adapter's latency timer): the link learns when to
    look, so after a few replies the first read finds the reply whole and the
    careful path (a second sleep and read) runs for about one in ten. Read at
    the wire time alone, every reply took it. One reply held up 40 ms moves
    the estimate by one step, so it does not delay the reads after it."""
    n, spike = 90, 70
    latency = [0.005] * n
    latency[spike] = 0.04
    with scripted_slave([framing.read_reply(1, [7])] * n, latency) as path:
        link = open_link(BusConfig(name="b", port=path, baudrate=115200, timeout_s=0.2, retries=0))
        link.open()
        careful: list[int] = []
        receive = link._receive
        done = 0

        def counting(*args: object) -> tuple[bytes, bool | None]:
            careful.append(done)
            return receive(*args)  # type: ignore[arg-type]

        link._receive = counting  # type: ignore[method-assign]
        try:
            for done in range(n):
                if done == spike:
                    before = link._late.get(1, 0.0)
                assert link.read_holding_registers(1, 0, 1) == [7]
                if done == spike:
                    after = link._late.get(1, 0.0)
        finally:
            link.close()
    steady = [i for i in careful if 30 <= i < spike]
    assert len(steady) <= 12, f"{len(steady)} of {spike - 30} replies read twice"
    assert after - before <= 0.0005
    assert link.counters.responses == n and sum(link.counters.errors.values()) == 0


async def test_wrong_echo_and_stray_bytes() -> None:
    good = framing.read_reply(1, [7])
    replies = [
        framing.read_reply(9, [7]),  # another slave answers
        framing.adu(1, b"\x04\x02\x00\x07"),  # wrong function echo
        framing.read_reply(1, [7, 8]),  # wrong byte count
        good + b"\xff\xfe",  # garbage glued after a good frame: CRC
        (good, b"\xff\xfe"),  # a late burst: stray bytes before the next request
        good,
    ]
    with scripted_slave(replies) as path:
        link = open_link(BusConfig(name="b", port=path, baudrate=115200, timeout_s=0.15, retries=0))
        link.open()
        kinds = []
        try:
            for _ in range(3):
                with pytest.raises(PollError) as err:
                    link.read_holding_registers(1, 0, 1)
                kinds.append(err.value.kind)
            with pytest.raises(PollError) as err:
                link.read_holding_registers(1, 0, 1)
            kinds.append(err.value.kind)
            assert link.read_holding_registers(1, 0, 1) == [7]
            # the late burst reaches the port after the good reply; between
            # transactions nothing reads the port, the next request's gap check does
            port = link._transport._ser  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while port.in_waiting < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert port.in_waiting == 2
            assert link.read_holding_registers(1, 0, 1) == [7]
        finally:
            link.close()
    assert kinds == [ErrorKind.SHORT_FRAME] * 3 + [ErrorKind.CRC]
    assert link.counters.errors[ErrorKind.CRC] == 2  # the glued garbage + the stray burst
    assert link.counters_for(1).errors[ErrorKind.CRC] == 1  # strays blame no slave
    assert link.counters.responses == link.counters_for(1).responses == 2
