"""The read plan: fewest transactions of <= 125 registers, re-planned when the
cell count changes (both ways), counted on the wire over a real pty."""

from __future__ import annotations

import pytest
from btms_gateway.protocols.bmsm.planner import ReadRange, merge
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.regmap import DEFAULT_MAP
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator
from btms_gateway.protocols.rtu import RtuLink, open_link

BLOCK, cell_plan, full_plan = DEFAULT_MAP.block_read, DEFAULT_MAP.cell_plan, DEFAULT_MAP.full_plan


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


@pytest.mark.parametrize(("cells", "transactions"), [(120, 7), (12, 7)])
async def test_transactions_on_the_wire(cells: int, transactions: int) -> None:
    """A first poll reads the block, the cells, and the block again to
    confirm the count; a steady poll the cells and the block."""
    with Simulator([1], cells=cells, baud=115200, frozen=True) as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 1)
        try:
            r = poller.poll()
            first = len(sim.truth_log)
            assert poller.poll().cells == r.cells
        finally:
            link.close()
        served = [(t.address, t.count) for t in sim.truth_log]
    assert len(r.cells) == cells
    plan = [(x.address, x.count) for x in full_plan(cells)]
    assert served[:first] == [*plan, plan[0]]
    assert served[first:] == [*plan[1:], plan[0]] and len(served[first:]) == transactions


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
            sim.set_cell_count(2, 12)
            shrunk = poller.poll()
            assert shrunk.cell_count == 12 and len(shrunk.cells) == 12
            assert poller.plan == cell_plan(12) and poller.replans == 2
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


async def test_a_first_poll_confirms_the_count_after_the_cells() -> None:
    """The count shrinks after the first poll's block read: the cells past it
    read 0. The block read again after the cells says so, and the cells are
    read for the new count in the same poll (the zeros were published as a
    GOOD 20-cell reading before)."""
    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="zero") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            sim.inject(3, Fault.CELL_COUNT, cells=12, after=1)
            first = poller.poll()
        finally:
            link.close()
    assert first.cell_count == 12 and first.cells == sim.expected(3).cells


async def test_a_count_that_changes_between_the_block_and_the_cells_is_never_zero_filled() -> None:
    """Issue 23 item 2: a device that reads 0 past its count. A steady poll's
    block reports 24 cells (20 before), and the count goes back to 20 before
    the cells of the new plan are read: cells 21..24 read 0. The block read
    after those cells reports 20, so they are read once more for 20; the
    reading has the 20 cells the device holds, none of them zero."""
    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="zero") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            assert poller.poll().cell_count == 20
            mark = len(sim.truth_log)
            sim.inject(3, Fault.CELL_COUNT, cells=24, after=6)  # at the steady poll's block
            sim.inject(3, Fault.CELL_COUNT, cells=20)  # at the first read of the 24-cell plan
            r = poller.poll()
        finally:
            link.close()
        served = sim.truth_log[mark:]
        zero_filled = [t for t in served if t.count == 24 and t.words[20:] == (0,) * 4]
    assert len(zero_filled) == 6  # the device did serve the zeros
    assert r.cell_count == 20 and r.cells == sim.expected(3).cells
    assert all(c.voltage_v for c in r.cells)


async def test_a_count_changing_on_every_read_fails_the_poll() -> None:
    """Three counts in one poll: no reading can be confirmed, the poll fails
    (DECODE) and the next one starts from the last count."""
    from btms_gateway.core.profiles import ErrorKind, PollError

    with Simulator([3], cells=20, baud=115200, frozen=True, past_count="zero") as sim:
        link = _link(sim)
        poller = BmsmPoller(link, 3)
        try:
            assert poller.poll().cell_count == 20
            sim.inject(3, Fault.CELL_COUNT, cells=24, after=6)  # the steady poll's block
            sim.inject(3, Fault.CELL_COUNT, cells=22, after=6)  # the confirming block
            sim.inject(3, Fault.CELL_COUNT, cells=21, after=6)  # the second confirming block
            with pytest.raises(PollError) as err:
                poller.poll()
            assert poller.poll().cell_count == 21
        finally:
            link.close()
    assert err.value.kind is ErrorKind.DECODE
    assert "24 -> 22 -> 21" in str(err.value)


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

    with Simulator([4], cells=12, baud=115200, frozen=True) as sim:
        link = _link(sim)
        try:
            sim.inject(4, Fault.EXCEPTION, code=2, after=1)
            sim.inject(4, Fault.EXCEPTION, code=2, after=1)
            with pytest.raises(PollError) as err:
                BmsmPoller(link, 4).poll()
        finally:
            link.close()
    assert err.value.kind is ErrorKind.EXCEPTION and err.value.exception_code == 2
