"""Commissioning: read one BM-SM once and show every register of its map
with what the gateway makes of it, and find the slave ids on a bus.

Half of the register table is assumed, not published, so the first thing to
do with real hardware is to look: every row of the register map (the string
block, then each cell array up to the reported cell count) with its raw
words beside the decoded value, the unit, the valid range and whether the
row is documented or assumed, and a flag on anything that does not look
like a measurement (outside its range, a no-sensor marker, all bits set, a
reserved register holding a value, a cell count over 120, a cell whose every
value reads 0). A map that is off by a register shows there at once.

It reads through the RtuLink the gateway polls with, and takes everything
(addresses, types, scales, ranges) from the register map: the default table,
or an override file's effective map, so a correction can be checked before
the gateway runs with it. Output as text or as JSON for tools; rendering is
in probe_cli.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from btms_gateway.core.api import (
    SENSOR_LOST_BIT,
    BusLink,
    ErrorKind,
    PollError,
    StringAlarm,
    StringState,
)

from .decode import inside, raw_value, value_of
from .planner import ReadRange, merge
from .registers import MAX_CELLS, WIDE_TYPES, CellArray, Register, spans_text
from .regmap import RegisterMap

#: raw words that are rarely a measurement: what firmware sends for "no value"
SUSPICIOUS_16 = {0xFFFF: "all bits set", 0x8000: "the int16 minimum"}
SUSPICIOUS_32 = {0xFFFFFFFF: "all bits set", 0x80000000: "the int32 minimum"}
_STATES = {int(s) for s in StringState if s is not StringState.UNKNOWN}
_ALARM_BITS = int(StringAlarm(sum(StringAlarm)))


@dataclass
class Row:
    """One register (or 32-bit pair) as read, decoded and judged.

    ``row`` is the map's row (None for an address of the string block's read
    that the map does not define); ``cell`` is 1-based for a cell array."""

    address: int
    words: tuple[int, ...]
    row: Register | CellArray | None
    cell: int | None = None
    value: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        if self.row is None:
            return "unmapped"
        if not self.row.field:
            return "reserved"
        return f"{'cell' if isinstance(self.row, CellArray) else 'string'}.{self.row.field}"


@dataclass
class ArrayRead:
    """One cell array: its rows, or why it could not be read."""

    array: CellArray
    rows: list[Row] = field(default_factory=list)
    failure: str | None = None  # an exception reply: the device has no registers there


@dataclass
class ProbeResult:
    slave: int
    regmap: RegisterMap
    block: list[Row] = field(default_factory=list)
    cell_count: int | None = None  # as the device reports it
    cells_read: int = 0
    arrays: list[ArrayRead] = field(default_factory=list)
    transactions: int = 0
    seconds: float = 0.0
    error: str | None = None  # what ended the probe early (no answer, the port)

    def rows(self) -> list[Row]:
        return [*self.block, *(r for a in self.arrays for r in a.rows)]

    @property
    def flagged(self) -> int:
        """Rows with a flag, and arrays the device refused."""
        return sum(1 for r in self.rows() if r.flags) + sum(1 for a in self.arrays if a.failure)

    @property
    def status(self) -> int:
        """0 nothing flagged, 1 something flagged, 2 the device did not answer."""
        if self.error is not None:
            return 2
        return 1 if self.flagged else 0


def probe(
    link: BusLink,
    slave: int,
    regmap: RegisterMap,
    *,
    cells: int | None = None,
    retries: int | None = None,
) -> ProbeResult:
    """Read ``slave`` once: the string block, then each cell array for the
    reported cell count (at most ``cells`` of them, and at most 120). A read
    answered with an exception flags that array and goes on; any other
    failure ends the probe (``error``), keeping what was read."""
    result = ProbeResult(slave, regmap)
    started = time.monotonic()
    try:
        _probe_block(link, result, retries)
        count = result.cell_count or 0
        result.cells_read = min(count, MAX_CELLS, count if cells is None else cells)
        for array in regmap.cells:
            result.arrays.append(_probe_array(link, result, array, retries))
        _flag_zero_cells(result)
    except PollError as exc:
        result.error = _failure(exc, slave)
    result.seconds = time.monotonic() - started
    return result


def _read(
    link: BusLink, result: ProbeResult, address: int, count: int, retries: int | None
) -> list[int]:
    result.transactions += 1
    return link.read_holding_registers(result.slave, address, count, retries=retries)


def _probe_block(link: BusLink, result: ProbeResult, retries: int | None) -> None:
    read = result.regmap.block_read
    words = _read(link, result, read.address, read.count, retries)
    by_address = {r.address: r for r in result.regmap.block}
    at = read.address
    while at < read.end:
        reg = by_address.get(at)
        n = reg.words if reg is not None else 1
        row = Row(at, tuple(words[at - read.address : at - read.address + n]), reg)
        judge_string_row(row)
        result.block.append(row)
        at += n
    count_row = next(r for r in result.block if r.row is result.regmap.cell_count)
    result.cell_count = int(count_row.value or 0)


def _probe_array(
    link: BusLink, result: ProbeResult, array: CellArray, retries: int | None
) -> ArrayRead:
    out = ArrayRead(array)
    words: list[int] = []
    for r in merge([ReadRange(array.base, result.cells_read)]):
        try:
            words += _read(link, result, r.address, r.count, retries)
        except PollError as exc:
            if exc.kind is not ErrorKind.EXCEPTION:
                raise
            out.failure = (
                f"HR {r.address}..{r.end - 1} answered {_exception(exc)}: the device has no "
                "registers there"
            )
            return out
    status_max = result.regmap.status_max
    for i, word in enumerate(words):
        row = Row(array.base + i, (word,), array, cell=i + 1)
        judge_cell_row(row, status_max)
        out.rows.append(row)
    return out


def judge_string_row(row: Row) -> None:
    """Decode one row of the string block and flag what is not a measurement."""
    reg = row.row
    if reg is None or not reg.field:
        what = "not in the register map" if reg is None else "reserved (reads 0 in the table)"
        if any(row.words):
            row.flags.append(f"{what}, but holds a value: is a quantity here?")
        return
    assert isinstance(reg, Register)
    row.value = value_of(reg, row.words)
    raw = raw_value(row.words, reg.type, reg.word_order)
    unsigned = raw & (0xFFFFFFFF if reg.type in WIDE_TYPES else 0xFFFF)
    if reg.unit == "count" and raw > MAX_CELLS:
        row.flags.append(f"over {MAX_CELLS}: a BM-SM has at most {MAX_CELLS} cells")
    elif reg.unit == "enum" and raw not in _STATES:
        row.flags.append(f"not a state the device documents ({sorted(_STATES)})")
    elif reg.unit == "bits" and raw & ~_ALARM_BITS:
        row.flags.append(f"bits the device does not set (above b{_ALARM_BITS.bit_length() - 1})")
    elif reg.unit == "0/1" and raw not in (0, 1):
        row.flags.append("neither 0 nor 1")
    _judge_value(row, reg, unsigned)


def judge_cell_row(row: Row, status_max: int) -> None:
    """Decode one register of a cell array and flag what is not a measurement."""
    arr = row.row
    assert isinstance(arr, CellArray)
    word = row.words[0]
    row.value = value_of(arr, row.words)
    if arr.unit == "bits":  # the cell status word
        if word > status_max:
            row.flags.append(f"bits the device does not set (above 0x{status_max:04X})")
        elif word & SENSOR_LOST_BIT:
            row.flags.append("sensor lost: the cell's values are not published")
        return
    _judge_value(row, arr, word)


def _judge_value(row: Row, reg: Register | CellArray, unsigned: int) -> None:
    if row.value is None:
        row.flags.append(
            f"no-sensor marker 0x{unsigned:04X}: no sensor fitted (check that none is, "
            "or that this is the register)"
        )
        return
    pattern = (SUSPICIOUS_32 if len(row.words) == 2 else SUSPICIOUS_16).get(unsigned)
    note = f" (raw 0x{unsigned:04X}: {pattern}, what firmware sends for 'no value')"
    if reg.valid and not inside(row.value, reg.valid):
        row.flags.append(f"outside {spans_text(reg.valid, reg.unit)}{note if pattern else ''}")
    elif pattern and reg.unit not in ("count", "enum", "0/1"):
        row.flags.append(f"raw 0x{unsigned:04X}: {pattern}, what firmware sends for 'no value'")


ZERO_FILLED = (
    "zero-filled cell below the count: not measured yet, or the cell arrays are not "
    "where the map says"
)


def _flag_zero_cells(result: ProbeResult) -> None:
    """A cell below the count whose every value reads 0 was not measured (yet),
    or the arrays are not where the map says."""
    values = [a for a in result.arrays if a.array.unit != "bits" and not a.failure]
    if not values:
        return
    for i in range(result.cells_read):
        cells = [a.rows[i] for a in values if i < len(a.rows)]
        if cells and not any(any(r.words) for r in cells):
            for r in cells:
                r.flags.append(ZERO_FILLED)


def _exception(exc: PollError) -> str:
    names = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
             4: "slave device failure", 6: "slave device busy"}  # fmt: skip
    code = exc.exception_code
    return f"exception {code:02d} ({names.get(code or 0, 'see the device manual')})"


def _failure(exc: PollError, slave: int) -> str:
    if exc.kind is ErrorKind.TIMEOUT:
        return (
            f"no answer from slave {slave} ({exc.detail or 'timeout'}): check the slave id, "
            "the wiring (A/B, termination) and the line settings (baud, parity)"
        )
    if exc.kind is ErrorKind.EXCEPTION:
        return f"slave {slave} answered {_exception(exc)} for the string block: not a BM-SM map"
    if exc.kind is ErrorKind.PORT:
        return (
            f"{exc.detail} (is the gateway running on this port? stop it first: "
            "systemctl stop btms-gateway)"
        )
    return (
        f"{exc.kind.value}: {exc.detail} (garbled replies: noise, a wrong baud rate or parity, "
        "or two devices on one slave id)"
    )


# -- the scan ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScanHit:
    """A slave id that answered: its cell count, or what it answered instead."""

    slave: int
    cell_count: int | None
    note: str = ""


def scan_time_per_id(link_timeout_s: float, char_s: float, gap_s: float, words: int) -> float:
    """The longest one silent id costs: the request and a reply's wire time,
    the response timeout, a frame gap before and after."""
    return (8 + 5 + 2 * words) * char_s + link_timeout_s + 2 * gap_s


def scan(
    link: BusLink,
    ids: Iterable[int],
    regmap: RegisterMap,
    progress: Callable[[int, list[ScanHit]], None] | None = None,
) -> list[ScanHit]:
    """Read the cell count register of each id once, without retries. A
    data reply is a BM-SM (its count); an exception reply or a garbled one is
    a device that is not one, or a slow or doubled one, said as such; a
    port failure raises."""
    reg = regmap.cell_count
    hits: list[ScanHit] = []
    for slave in ids:
        try:
            words = link.read_holding_registers(slave, reg.address, reg.words, retries=0)
        except PollError as exc:
            if exc.kind is ErrorKind.PORT:
                raise
            if exc.kind is ErrorKind.EXCEPTION:
                hits.append(
                    ScanHit(slave, None, f"answered {_exception(exc)} for HR {reg.address}")
                )
            elif exc.kind is not ErrorKind.TIMEOUT:
                hits.append(
                    ScanHit(
                        slave, None, f"garbled reply ({exc.kind.value}): a device slower than the "
                        "timeout answering the previous id, two devices on one id, or noise",
                    )
                )  # fmt: skip
        else:
            count = raw_value(words, reg.type, reg.word_order)
            note = f"cell count {count} is over {MAX_CELLS}" if count > MAX_CELLS else ""
            hits.append(ScanHit(slave, count, note))
        if progress is not None:
            progress(slave, hits)
    return hits


def value_text(row: Row) -> str:
    """The decoded value with the decimals its scale gives (2.250 V, 23.5 C)."""
    reg = row.row
    if reg is None or not reg.field:
        return "-"
    if row.value is None:
        return "none"
    scale = reg.scale
    digits = -math.floor(math.log10(scale) + 1e-9) if scale < 1 else 0
    if abs(scale * 10**digits - round(scale * 10**digits)) > 1e-9:
        return f"{row.value:g}"
    return f"{row.value:.{max(0, digits)}f}"
