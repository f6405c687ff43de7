"""Late replies on the RTU link: a reply that comes after its request timed out
must never be taken for the next request's answer (RTU frames carry no
transaction id: same slave, function and length, valid CRC, the next request
would get the previous one's data). Over a pty and over RTU over TCP, with the
simulator answering 250 ms late and ``timeout_s = 0.2``."""

from __future__ import annotations

import pytest
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator
from btms_gateway.protocols.rtu import open_link
from btms_gateway.protocols.rtu.link import RtuLink

CELLS = 16
#: cell arrays of the same length: a reply to one fits a request for another
VOLTAGES, RESISTANCES, TEMPERATURES = (1000, CELLS), (1200, CELLS), (1400, CELLS)


def _open(sim: Simulator, **kw: object) -> RtuLink:
    link = open_link(sim.bus_config(timeout_s=0.2, retries=0, **kw))
    assert isinstance(link, RtuLink)
    link.open()
    return link


def _read(link: RtuLink, what: tuple[int, int]) -> list[int] | ErrorKind:
    try:
        return link.read_holding_registers(1, *what)
    except PollError as exc:
        return exc.kind


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_a_reply_250_ms_late_is_never_the_next_requests_answer(transport: str) -> None:
    with Simulator([1], cells=CELLS, baud=115200, frozen=True, transport=transport) as sim:
        link = _open(sim)
        truth = {r: sim.registers(1, *r) for r in (VOLTAGES, RESISTANCES, TEMPERATURES)}
        try:
            sim.inject(1, Fault.LATE, delay_s=0.25)
            first = _read(link, VOLTAGES)
            second = _read(link, RESISTANCES)
            third = _read(link, TEMPERATURES)
        finally:
            link.close()
    assert first is ErrorKind.TIMEOUT
    assert second == truth[RESISTANCES], f"resistances read as {second}"
    assert third == truth[TEMPERATURES]
    for c in (link.counters, link.counters_for(1)):  # the late reply, dropped and named
        assert c.errors[ErrorKind.LATE] == 1
        assert c.errors[ErrorKind.CRC] == 0
    assert "late reply from slave 1" in (link.counters.last_error or "")


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_a_slave_always_250_ms_late_gives_no_data_at_all(transport: str) -> None:
    """Every reply late: each read times out and its reply is dropped; none
    returns another read's registers."""
    with Simulator(
        [1], cells=CELLS, baud=115200, frozen=True, transport=transport, reply_delay_s=0.25
    ) as sim:
        link = _open(sim)
        try:
            got = [_read(link, r) for r in (VOLTAGES, RESISTANCES, TEMPERATURES, VOLTAGES)]
            sim.set_reply_delay(1, 0.0)
            back = _read(link, RESISTANCES)
            truth = sim.registers(1, *RESISTANCES)
        finally:
            link.close()
    assert got == [ErrorKind.TIMEOUT] * 4
    assert back == truth  # on time again: data at once, and the right data
    assert link.counters.errors[ErrorKind.LATE] == 4


async def test_the_guard_window_is_a_bus_setting_and_costs_only_failed_transactions() -> None:
    """A clean transaction is followed by the frame gap only (five of them take
    far less than the guard); after a timeout the next request waits for the
    guard's silence (here 0.3 s, configured)."""
    import time

    with Simulator([1], cells=CELLS, baud=115200, frozen=True) as sim:
        link = _open(sim, late_reply_guard_s=0.3)
        try:
            t = time.monotonic()
            for _ in range(5):
                assert isinstance(_read(link, VOLTAGES), list)
            clean = time.monotonic() - t
            sim.inject(1, Fault.NO_REPLY)
            assert _read(link, VOLTAGES) is ErrorKind.TIMEOUT
            t = time.monotonic()
            assert isinstance(_read(link, VOLTAGES), list)
            after_failure = time.monotonic() - t
        finally:
            link.close()
    assert clean < 0.3 <= after_failure
