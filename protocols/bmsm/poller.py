"""Polls one BM-SM string: the string block first (it holds the cell count),
then the cell arrays the plan for that count needs.

The cell count can change between two reads of the same poll (auto-addressing
after a sensor was added or removed). A cell read answered with exception 02
(illegal data address) is taken as "the string shrank": the block is read
again, the plan follows the new count, and the cells are read once more. A
second failure is raised like any other: the engine keeps the last good
reading and degrades the string's quality. A device that answers 0 past the
count instead needs nothing special: only cells below the count are read.
"""

from __future__ import annotations

import time
from typing import Any

from btms_gateway.core.model import StringReading
from btms_gateway.core.profiles import BusLink, ErrorKind, PollError

from .decode import decode_block, decode_cells
from .planner import BLOCK, ReadRange, cell_plan
from .registers import CELL_ARRAYS

ILLEGAL_DATA_ADDRESS = 2


class BmsmPoller:
    """A StringPoller (core.profiles) for one slave on one link."""

    def __init__(self, link: BusLink, slave: int) -> None:
        self.link = link
        self.slave = slave
        self.plan: tuple[ReadRange, ...] = ()  # the cell plan of the last poll
        self.replans = 0  # how often the cell count changed after the first poll

    async def poll(self, *, retries: int | None = None) -> StringReading:
        fields = await self._read_block(retries)
        try:
            return await self._read_cells(fields, retries)
        except PollError as exc:
            if exc.kind is not ErrorKind.EXCEPTION or exc.exception_code != ILLEGAL_DATA_ADDRESS:
                raise
        fields = await self._read_block(retries)
        return await self._read_cells(fields, retries)

    async def _read_block(self, retries: int | None) -> dict[str, Any]:
        block = await self.link.read_holding_registers(
            self.slave, BLOCK.address, BLOCK.count, retries=retries
        )
        return decode_block(block)

    async def _read_cells(self, fields: dict[str, Any], retries: int | None) -> StringReading:
        count = fields["cell_count"]
        plan = cell_plan(count)
        if plan != self.plan:
            self.replans += 1 if self.plan else 0
            self.plan = plan
        got: list[tuple[int, list[int]]] = []
        for r in plan:
            regs = await self.link.read_holding_registers(
                self.slave, r.address, r.count, retries=retries
            )
            got.append((r.address, regs))
        arrays = {a.base: _registers(got, a.base, count) for a in CELL_ARRAYS}
        return StringReading(cells=decode_cells(arrays, count), read_at=time.time(), **fields)


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
