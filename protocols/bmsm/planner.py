"""The read plan: which register ranges to read for a string of N cells, as
few function-03 transactions as possible.

Ranges from the table are merged when contiguous and split at 125 registers
(the Modbus limit). Reading across a hole would fetch registers the table does
not define (the device may answer exception 02 for them), so holes are never
bridged. A register map (regmap.py) plans its reads with ``merge`` and caches
them per cell count: auto-addressing changes the count at run time and the
next poll simply picks the plan for the new count.
"""

from __future__ import annotations

from dataclasses import dataclass

from btms_gateway.protocols.rtu.framing import MAX_READ_COUNT


@dataclass(frozen=True, slots=True, order=True)
class ReadRange:
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


def merge(spans: list[ReadRange], limit: int = MAX_READ_COUNT) -> tuple[ReadRange, ...]:
    """Merge contiguous or overlapping spans; split any result longer than limit."""
    merged: list[list[int]] = []
    for s in sorted(spans):
        if s.count <= 0:
            continue
        if merged and s.address <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s.end)
        else:
            merged.append([s.address, s.end])
    out = []
    for start, end in merged:
        for a in range(start, end, limit):
            out.append(ReadRange(a, min(limit, end - a)))
    return tuple(out)
