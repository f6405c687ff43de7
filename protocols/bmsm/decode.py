"""Register words <-> SI values, driven only by the register table: the
module table in registers.py, or the effective map of an override
(``regmap=``, a RegisterMap; the default map when not given).

Decoding never invents a value: a "no sensor" marker becomes None, and a cell
whose status says "sensor lost" gets None for every measurement. Nor does it
pass on a value the device cannot have measured: one outside the table's
valid range (the datasheet's) raises PollError(DECODE), so the poll fails and
nothing of it is served as GOOD. Such values are what a reply taken for the
wrong request holds (temperatures read from the resistance array, a string
voltage from a cell array), or the zeros of a cell not measured yet. Encoding
is the inverse, used by the simulator so its registers come from the same
table.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import truediv
from typing import Any, cast

from btms_gateway.core.api import (
    SENSOR_LOST_BIT,
    CellReading,
    CellStatus,
    ErrorKind,
    PollError,
    StringAlarm,
    StringReading,
    StringState,
)

from .registers import (
    MAX_CELLS,
    SIGNED_TYPES,
    WIDE_TYPES,
    CellArray,
    Register,
    RegType,
    Span,
    WordOrder,
    spans_text,
)
from .regmap import DEFAULT_MAP, RegisterMap


def raw_value(words: Sequence[int], rtype: RegType, order: WordOrder = WordOrder.NONE) -> int:
    """Combine 1 or 2 register words into one integer, signed if the type is
    (a 32-bit value without a word order is taken high word first)."""
    if rtype in WIDE_TYPES:
        lo, hi = (words[0], words[1]) if order is WordOrder.LOW_FIRST else (words[1], words[0])
        value, bits = (hi << 16) | lo, 32
    else:
        value, bits = words[0], 16
    if rtype in SIGNED_TYPES and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def to_words(value: int, rtype: RegType, order: WordOrder = WordOrder.NONE) -> list[int]:
    """The inverse of raw_value (two's complement for signed types)."""
    if rtype in WIDE_TYPES:
        value &= 0xFFFFFFFF
        lo, hi = value & 0xFFFF, value >> 16
        return [lo, hi] if order is WordOrder.LOW_FIRST else [hi, lo]
    return [value & 0xFFFF]


def value_of(reg: Register | CellArray, words: Sequence[int]) -> float | None:
    """One row's words -> its SI value; None for the no-sensor marker (compared
    with the words as read: unsigned, 32 bits for a 32-bit type)."""
    raw = raw_value(words, reg.type, reg.word_order)
    if reg.no_sensor is not None and raw & (0xFFFFFFFF if len(words) == 2 else 0xFFFF) == (
        reg.no_sensor
    ):
        return None
    return float(round(raw * reg.scale, 6))


def inside(value: float, spans: tuple[Span, ...]) -> bool:
    """Whether ``value`` lies in any of ``spans`` (inclusive)."""
    return any(lo <= value <= hi for lo, hi in spans)


def decode_block(
    block: Sequence[int], *, check: bool = True, regmap: RegisterMap = DEFAULT_MAP
) -> dict[str, Any]:
    """The string block's read (HR 0..15) -> the string fields of a
    StringReading (without cells/read_at).

    ``check``: a value outside its valid range raises PollError(DECODE)."""
    if len(block) != regmap.block_read.count:
        raise PollError(
            ErrorKind.DECODE,
            f"string block has {len(block)} words, not {regmap.block_read.count}",
        )
    out: dict[str, Any] = {}
    for reg, at in regmap.block_fields:
        out[reg.field] = value_of(reg, block[at : at + reg.words])
    out["state"] = StringState.from_raw(int(out["state"]))
    out["alarms"] = StringAlarm(int(out["alarms"]))
    out["cell_count"] = int(out["cell_count"])
    for flag in ("relay_closed", "aux_input_on"):
        out[flag] = None if out[flag] is None else bool(out[flag])
    if not 0 <= out["cell_count"] <= MAX_CELLS:
        raise PollError(ErrorKind.DECODE, f"cell count {out['cell_count']} outside 0..{MAX_CELLS}")
    if check:
        for name, lo, hi, reg in regmap.block_checks:
            value = out[name]
            if value is None or (lo <= value <= hi and len(reg.valid) == 1):
                continue
            if not inside(value, reg.valid):
                raise PollError(
                    ErrorKind.DECODE,
                    f"{reg.label} {value:g} {reg.unit} outside {spans_text(reg.valid, reg.unit)}",
                )
    return out


_STATUS = {n: CellStatus(n) for n in range(4)}

# Cells are made the way CellReading's own __init__ makes them, one slot at a
# time, without the call: a frozen dataclass's __init__ sets each field through
# object.__setattr__ (1.9 us a cell; 3,840 cells a second at full scale), the
# slots' own setters take a third of that. Only valid while CellReading has no
# __post_init__ and no field defaults that __init__ would compute.
assert not hasattr(CellReading, "__post_init__")
_new_cell = object.__new__
_set_index, _set_v, _set_r, _set_t, _set_soc, _set_soh, _set_status = (
    CellReading.__dict__[f.name].__set__ for f in dataclasses.fields(CellReading)
)


def _column(
    words: Sequence[int],
    count: int,
    divisor: int | None,
    scale: float,
    signed: bool,
    marker: int | None,
) -> list[float | None]:
    """One cell array decoded at once, in C: two's complement through an array
    when signed, then one division per word. Dividing by the scale's power of
    ten gives the correctly rounded decimal (2281 -> 2.281), like
    round(raw * scale); a scale that is not 1/N (an override's) is applied as
    that rounded product."""
    w = words if len(words) == count else words[:count]
    src: Sequence[int] = array("h", array("H", w).tobytes()) if signed else w
    out: list[float | None]
    if divisor is not None:
        out = list(map(truediv, src, repeat(divisor, count)))
    else:
        out = [float(round(x * scale, 6)) for x in src]
    if marker is not None and marker in w:
        for i, x in enumerate(w):
            if x == marker:
                out[i] = None
    return out


def _check_columns(
    columns: Sequence[list[float | None]],
    raw: Sequence[int],
    lost: bool,
    checks: tuple[tuple[int, CellArray], ...],
) -> None:
    """Raise PollError(DECODE) for the first value outside its array's valid
    range, naming the cell; a lost sensor's values (never published) and
    no-sensor markers are not checked.

    Column by column, like the decoding: the lowest and the highest value of
    a column (two passes in C) inside one span decide it, and only a column
    that fails that (or holds a lost sensor's values or markers) is looked at
    cell by cell."""
    for k, arr in checks:
        col = columns[k]
        if not col:
            continue
        spans = arr.valid
        if not lost and arr.no_sensor is None:
            # no None in it: without a lost sensor or a no-sensor marker every cell has a value
            measured = cast("list[float]", col)
            lo, hi = min(measured), max(measured)
            if any(a <= lo and hi <= b for a, b in spans):
                continue
        for i, x in enumerate(col):
            if x is not None and not inside(x, spans) and not raw[i] & SENSOR_LOST_BIT:
                raise PollError(
                    ErrorKind.DECODE,
                    f"cell {i + 1} {arr.label} {x:g} {arr.unit} "
                    f"outside {spans_text(spans, arr.unit)}",
                )


def decode_cells(
    arrays: Mapping[int, Sequence[int]],
    count: int,
    *,
    check: bool = True,
    regmap: RegisterMap = DEFAULT_MAP,
) -> tuple[CellReading, ...]:
    """Per-cell arrays keyed by base address -> CellReading 1..count.

    Column by column, since this runs for every cell of every poll (3,840
    cells a second at full scale); a lost sensor's values all become None.
    ``check``: a value outside its valid range, or a status with a bit the
    device does not set, raises PollError(DECODE)."""
    columns = [_column(arrays[b], count, d, k, s, m) for b, d, k, s, m in regmap.columns]
    v, r, t, soc, soh = columns
    raw = arrays[regmap.cell_status.base]
    if len(raw) != count:
        raw = raw[:count]
    status_max = regmap.status_max
    if check and raw and max(raw) > status_max:
        i, x = next((i, x) for i, x in enumerate(raw) if x > status_max)
        raise PollError(
            ErrorKind.DECODE, f"cell {i + 1} status 0x{x:04X} has bits the device does not set"
        )
    lost = any(x & SENSOR_LOST_BIT for x in raw)
    if check:
        _check_columns(columns, raw, lost, regmap.column_checks)
    cells: list[CellReading] = []
    append = cells.append
    for i, x in enumerate(raw):
        c = _new_cell(CellReading)
        _set_index(c, i + 1)
        if lost and x & SENSOR_LOST_BIT:
            _set_v(c, None)
            _set_r(c, None)
            _set_t(c, None)
            _set_soc(c, None)
            _set_soh(c, None)
        else:
            _set_v(c, v[i])
            _set_r(c, r[i])
            _set_t(c, t[i])
            _set_soc(c, soc[i])
            _set_soh(c, soh[i])
        _set_status(c, _STATUS[x] if x in _STATUS else CellStatus(x))  # NONE is falsy
        append(c)
    return tuple(cells)


def decode_reading(
    block: Sequence[int],
    arrays: Mapping[int, Sequence[int]],
    read_at: float,
    regmap: RegisterMap = DEFAULT_MAP,
) -> StringReading:
    """A whole reading; PollError(DECODE) when a value could not have been measured."""
    fields = decode_block(block, regmap=regmap)
    cells = decode_cells(arrays, fields["cell_count"], regmap=regmap)
    return StringReading(cells=cells, read_at=read_at, **fields)


def encode_value(reg: Register | CellArray, value: float | None) -> list[int]:
    """An SI value -> register words (None -> the no-sensor marker, or 0)."""
    if value is None:
        return to_words(reg.no_sensor or 0, reg.type, reg.word_order)
    return to_words(round(value / reg.scale), reg.type, reg.word_order)


def encode_block(values: Mapping[str, Any], regmap: RegisterMap = DEFAULT_MAP) -> list[int]:
    """String fields (as in StringReading) -> the string block's read (HR
    0..15); missing fields read 0."""
    block = [0] * regmap.block_read.count
    for reg, at in regmap.block_fields:
        if reg.field not in values:
            continue
        v = values[reg.field]
        v = int(v) if isinstance(v, bool | int) else v
        block[at : at + reg.words] = encode_value(reg, v)
    return block
