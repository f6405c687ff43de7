"""The read plan: fewest transactions of <= 125 registers, re-planned when the
cell count changes (both ways), counted on the wire over a real pty."""

from __future__ import annotations

import pytest
from btms_gateway.protocols.bmsm.planner import BLOCK, ReadRange, cell_plan, full_plan, merge
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator
from btms_gateway.protocols.rtu import RtuLink, open_link


def test_merge_contiguous_and_split_at_125() -> None:
    spans = [ReadRange(10, 5), ReadRange(0, 10), ReadRange(20, 3)]
    assert merge(spans) == (ReadRange(0, 15), ReadRange(20, 3))
    assert merge([ReadRange(0, 300)]) == (
        ReadRange(0, 125),
        ReadRange(125, 125),
        ReadRange(250, 50),
    )
    assert merge([ReadRange(0, 100), ReadRange(100, 100)]) == (
        ReadRange(0, 125),
        ReadRange(125, 75),
    )
    assert merge([ReadRange(0, 10), ReadRange(5, 10)]) == (ReadRange(0, 15),)


@pytest.mark.parametrize(("cells", "transactions"), [(120, 7), (3, 7), (1, 7), (0, 1)])
def test_transaction_count(cells: int, transactions: int) -> None:
    plan = full_plan(cells)
    assert len(plan) == transactions
    assert plan[0] == BLOCK == ReadRange(0, 16)
    assert all(r.count <= 125 for r in plan)


def test_120_cells_plan_is_one_read_per_array() -> None:
    assert cell_plan(120) == tuple(ReadRange(b, 120) for b in (1000, 1200, 1400, 1600, 1800, 2000))


def test_bad_cell_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.120"):
        cell_plan(121)


def _link(sim: Simulator) -> RtuLink:
    link = open_link(sim.bus_config(timeout_s=0.2, retries=0))
    link.open()
    return link


@pytest.mark.parametrize(("cells", "transactions"), [(120, 7), (3, 7)])
async def test_transactions_on_the_wire(cells: int, transactions: int) -> None:
    with Simulator([1], cells=cells, baud=115200, frozen=True) as sim:
        link = _link(sim)
        try:
            r = BmsmPoller(link, 1).poll()
        finally:
            link.close()
        served = [(t.address, t.count) for t in sim.truth_log]
    assert len(r.cells) == cells
    assert link.counters.requests == transactions == len(served)
    assert served == [(x.address, x.count) for x in full_plan(cells)]


async def test_replan_when_string_grows_and_shrinks() -> None:
    with Simulator([2], cells=10, baud=115200, seed=5, frozen=True) as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 2)
        try:
            assert len((poller.poll()).cells) == 10
            sim.set_cell_count(2, 16)
            grown = poller.poll()
            assert grown.cell_count == 16 and len(grown.cells) == 16
            assert grown.cells == sim.expected(2).cells
            assert poller.plan == cell_plan(16) and poller.replans == 1
            sim.set_cell_count(2, 4)
            shrunk = poller.poll()
            assert shrunk.cell_count == 4 and len(shrunk.cells) == 4
            assert poller.plan == cell_plan(4) and poller.replans == 2
        finally:
            link.close()


async def test_shrink_mid_poll_with_exception_02_is_replanned_in_the_same_poll() -> None:
    """The device answers exception 02 past its (new) cell count: the poller
    reads the block again and returns the smaller string, not an error."""
    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="exception") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            sim.inject(3, Fault.CELL_COUNT, cells=12, after=1)  # after the block read
            r = poller.poll()
        finally:
            link.close()
        exceptions = [t.exception for t in sim.truth_log]
    assert r.cell_count == 12 and len(r.cells) == 12
    assert r.cells == sim.expected(3).cells
    assert exceptions.count(2) == 1
    assert link.counters.errors["exception"] == 1


async def test_shrink_mid_poll_with_zero_fill_is_right_on_the_next_poll() -> None:
    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="zero") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            sim.inject(3, Fault.CELL_COUNT, cells=12, after=1)
            first = poller.poll()
            second = poller.poll()
        finally:
            link.close()
    assert first.cell_count == 20  # the block was read before the change
    assert second.cell_count == 12 and second.cells == sim.expected(3).cells


async def test_a_steady_poll_catches_a_zero_filled_shrink_in_the_same_poll() -> None:
    """After the first poll the block is read last: a shrink after the poll's
    first read (the block, when it came first) shows in that poll's block, so
    the cells are read again with the new plan and the zeros read for the
    removed cells are never published."""
    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="zero") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            assert poller.poll().cell_count == 20
            sim.inject(3, Fault.CELL_COUNT, cells=12, after=1)
            shrunk = poller.poll()
        finally:
            link.close()
    assert shrunk.cell_count == 12 and shrunk.cells == sim.expected(3).cells
    assert poller.plan == cell_plan(12) and poller.replans == 1


async def test_a_second_exception_02_is_raised() -> None:
    from btms_gateway.core.profiles import ErrorKind, PollError

    with Simulator([4], cells=5, baud=115200, frozen=True) as sim:
        link = _link(sim)
        try:
            sim.inject(4, Fault.EXCEPTION, code=2, after=1)
            sim.inject(4, Fault.EXCEPTION, code=2, after=1)
            with pytest.raises(PollError) as err:
                BmsmPoller(link, 4).poll()
        finally:
            link.close()
    assert err.value.kind is ErrorKind.EXCEPTION and err.value.exception_code == 2
