"""Polls one BM-SM string: its cell arrays and its string block (which holds
the cell count, so it decides the plan for the cells).

The reads go to the link as one batch per poll (``BusLink.read_ranges``): the
plan of the last poll's cell count, still right unless the count changed,
followed by the string block. The block comes last because its values
(current, voltage, SOC, state, alarms) are the ones a SCADA acts on: read
last, they are the freshest part of a reading, one short reply before its
``read_at`` (first, they were the whole cell plan older: ~20 ms of wire at
115200 baud). When the block reports another count, the cells are read once
more with the plan for it. A first poll (no plan yet) reads the block first.

The cell count can change between two reads of the same poll (auto-addressing
after a sensor was added or removed). Cells read with a plan are only
published with a block read *after* them that reports the plan's count: in a
steady poll that is the block read last anyway; when the plan changes (and on
the first poll, whose block comes first), the block is read once more after
the new plan's cells. A device that answers 0 past its count would otherwise
give zero cells for a count that changed again between the block and the
cells, served as GOOD (2 of 457 count changes in a soak). When the confirming
block reports yet another count, the cells are read once more for it; a third
count in one poll fails it (DECODE), and the next poll starts from there.

A cell read answered with exception 02 (illegal data address) is taken as
"the string shrank": the block is read again, the plan follows the new count,
and the cells are read once more. A second failure is raised like any other:
the engine keeps the last good reading and degrades the string's quality.

``read_at`` is when the last reply came in, before decoding: the moment the
data was on hand, not when the gateway was done with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from btms_gateway.core.api import BusLink, ErrorKind, PollError, StringReading

from .decode import decode_block, decode_cells
from .planner import ReadRange
from .regmap import DEFAULT_MAP, RegisterMap

ILLEGAL_DATA_ADDRESS = 2


class BmsmPoller:
    """A StringPoller (core.profiles) for one slave on one link, reading it
    with ``regmap`` (the default table, or an override's effective map)."""

    def __init__(self, link: BusLink, slave: int, regmap: RegisterMap = DEFAULT_MAP) -> None:
        self.link = link
        self.slave = slave
        self.regmap = regmap
        self._block = (regmap.block_read.address, regmap.block_read.count)
        self.plan: tuple[ReadRange, ...] = ()  # the cell plan of the last poll
        self.replans = 0  # how often the cell count changed after the first poll

    def poll(self, *, retries: int | None = None) -> StringReading:
        regmap, block = self.regmap, self._block
        if self.plan:
            try:
                replies = self._read((*_ranges(self.plan), block), retries)
            except PollError as exc:
                if not _shrank(exc):
                    raise
            else:
                read_at = time.time()
                fields = decode_block(replies[-1], regmap=regmap)
                if regmap.cell_plan(fields["cell_count"]) == self.plan:
                    return self._reading(fields, self.plan, replies[:-1], read_at)
                return self._read_cells(fields, retries)
        fields = decode_block((self._read((block,), retries))[0], regmap=regmap)
        try:
            return self._read_cells(fields, retries)
        except PollError as exc:
            if not _shrank(exc):
                raise
        fields = decode_block((self._read((block,), retries))[0], regmap=regmap)
        return self._read_cells(fields, retries)

    def _read(self, ranges: Sequence[tuple[int, int]], retries: int | None) -> list[list[int]]:
        return self.link.read_ranges(self.slave, ranges, retries=retries)

    def _read_cells(self, fields: dict[str, Any], retries: int | None) -> StringReading:
        """The cells for the count in ``fields``, confirmed by a block read
        after them (whose values, the fresher, the reading takes); another
        count there is followed once."""
        counts = [fields["cell_count"]]
        for _ in range(2):
            plan = self.regmap.cell_plan(counts[-1])
            if plan != self.plan:
                self.replans += 1 if self.plan else 0
                self.plan = plan
            replies = self._read((*_ranges(plan), self._block), retries)
            read_at = time.time()
            fields = decode_block(replies[-1], regmap=self.regmap)
            counts.append(fields["cell_count"])
            if counts[-1] == counts[-2]:
                return self._reading(fields, plan, replies[:-1], read_at)
        changes = " -> ".join(map(str, counts))
        raise PollError(ErrorKind.DECODE, f"cell count changed during the poll ({changes})")

    def _reading(
        self,
        fields: dict[str, Any],
        plan: tuple[ReadRange, ...],
        replies: Sequence[list[int]],
        read_at: float,
    ) -> StringReading:
        count = fields["cell_count"]
        got = [(r.address, regs) for r, regs in zip(plan, replies, strict=True)]
        arrays = {a.base: _registers(got, a.base, count) for a in self.regmap.cells}
        cells = decode_cells(arrays, count, regmap=self.regmap)
        return StringReading(cells=cells, read_at=read_at, **fields)


def _shrank(exc: PollError) -> bool:
    return exc.kind is ErrorKind.EXCEPTION and exc.exception_code == ILLEGAL_DATA_ADDRESS


def _ranges(plan: tuple[ReadRange, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((r.address, r.count) for r in plan)


def _registers(got: list[tuple[int, list[int]]], address: int, count: int) -> list[int]:
    """``count`` registers from ``address`` on, sliced out of the replies (an
    array may span two replies when the plan split it at 125 registers)."""
    out: list[int] = []
    for start, regs in got:
        if start <= address < start + len(regs):
            piece = regs[address - start : address - start + count - len(out)]
            out += piece
            address += len(piece)
            if len(out) == count:
                return out
    if len(out) != count:
        raise PollError(ErrorKind.DECODE, f"registers {address}.. missing from the read plan")
    return out
