"""Register words <-> SI values, driven only by the table in registers.py.

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
from typing import Any

from btms_gateway.core.model import (
    SENSOR_LOST_BIT,
    CellReading,
    CellStatus,
    StringAlarm,
    StringReading,
    StringState,
)
from btms_gateway.core.profiles import ErrorKind, PollError

from .registers import (
    BLOCK_COUNT,
    BLOCK_START,
    CELL_ARRAYS,
    CELL_STATUS,
    MAX_CELLS,
    STRING_BLOCK,
    CellArray,
    Register,
    RegType,
    Span,
    WordOrder,
    spans_text,
)

_SIGNED = (RegType.INT16, RegType.INT32)


def raw_value(words: Sequence[int], rtype: RegType, order: WordOrder = WordOrder.NONE) -> int:
    """Combine 1 or 2 register words into one integer, signed if the type is."""
    if rtype in (RegType.UINT32, RegType.INT32):
        lo, hi = (words[0], words[1]) if order is WordOrder.LOW_FIRST else (words[1], words[0])
        value, bits = (hi << 16) | lo, 32
    else:
        value, bits = words[0], 16
    if rtype in _SIGNED and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def to_words(value: int, rtype: RegType, order: WordOrder = WordOrder.NONE) -> list[int]:
    """The inverse of raw_value (two's complement for signed types)."""
    if rtype in (RegType.UINT32, RegType.INT32):
        value &= 0xFFFFFFFF
        lo, hi = value & 0xFFFF, value >> 16
        return [lo, hi] if order is WordOrder.LOW_FIRST else [hi, lo]
    return [value & 0xFFFF]


def _scaled(reg: Register | CellArray, words: Sequence[int], order: WordOrder) -> float | None:
    if reg.no_sensor is not None and words[0] == reg.no_sensor and len(words) == 1:
        return None
    return float(round(raw_value(words, reg.type, order) * reg.scale, 6))


def _inside(value: float, spans: tuple[Span, ...]) -> bool:
    return any(lo <= value <= hi for lo, hi in spans)


#: the string block's checked rows: (field, lowest, highest, row); a value
#: between the lowest and the highest is checked span by span only when the
#: row has several spans
_BLOCK_CHECKS = tuple(
    (r.field, r.valid[0][0], r.valid[-1][1], r) for r in STRING_BLOCK if r.field and r.valid
)


def decode_block(block: Sequence[int], *, check: bool = True) -> dict[str, Any]:
    """HR 0..15 -> the string fields of a StringReading (without cells/read_at).

    ``check``: a value outside its valid range raises PollError(DECODE)."""
    if len(block) != BLOCK_COUNT:
        raise PollError(ErrorKind.DECODE, f"string block has {len(block)} words, not 16")
    out: dict[str, Any] = {}
    for reg in STRING_BLOCK:
        if not reg.field:
            continue
        at = reg.address - BLOCK_START
        out[reg.field] = _scaled(reg, block[at : at + reg.words], reg.word_order)
    out["state"] = StringState.from_raw(int(out["state"]))
    out["alarms"] = StringAlarm(int(out["alarms"]))
    out["cell_count"] = int(out["cell_count"])
    for flag in ("relay_closed", "aux_input_on"):
        out[flag] = None if out[flag] is None else bool(out[flag])
    if not 0 <= out["cell_count"] <= MAX_CELLS:
        raise PollError(ErrorKind.DECODE, f"cell count {out['cell_count']} outside 0..{MAX_CELLS}")
    if check:
        for name, lo, hi, reg in _BLOCK_CHECKS:
            value = out[name]
            if value is None or (lo <= value <= hi and len(reg.valid) == 1):
                continue
            if not _inside(value, reg.valid):
                raise PollError(
                    ErrorKind.DECODE,
                    f"{reg.label} {value:g} {reg.unit} outside {spans_text(reg.valid, reg.unit)}",
                )
    return out


#: the value arrays in CellReading's field order, so cells can be built positionally
_VALUE_ARRAYS = tuple(a for a in CELL_ARRAYS if a is not CELL_STATUS)
_CELL_FIELDS = [f.name for f in dataclasses.fields(CellReading)]
assert [a.field for a in _VALUE_ARRAYS] == [
    f for f in _CELL_FIELDS if f not in ("index", "status")
], "CELL_ARRAYS must list the value fields in CellReading's order"
_STATUS = {n: CellStatus(n) for n in range(4)}
#: (base, divisor, signed, no-sensor marker) of each value array
_COLUMNS = tuple(
    (a.base, round(1 / a.scale), a.type in _SIGNED, a.no_sensor) for a in _VALUE_ARRAYS
)
#: the checked value arrays, by position in _COLUMNS
_COLUMN_CHECKS = tuple((k, a) for k, a in enumerate(_VALUE_ARRAYS) if a.valid)
#: the highest cell status word the device sends (its bits: sensor lost, balancing)
_STATUS_MAX = int(CELL_STATUS.valid[0][1]) if CELL_STATUS.valid else 0xFFFF

# Cells are made the way CellReading's own __init__ makes them, one slot at a
# time, without the call: a frozen dataclass's __init__ sets each field through
# object.__setattr__ (1.9 us a cell; 3,840 cells a second at full scale), the
# slots' own setters take a third of that. Only valid while CellReading has no
# __post_init__ and no field defaults that __init__ would compute.
assert not hasattr(CellReading, "__post_init__")
_new_cell = object.__new__
_set_index, _set_v, _set_r, _set_t, _set_soc, _set_soh, _set_status = (
    CellReading.__dict__[name].__set__ for name in _CELL_FIELDS
)


def _column(
    words: Sequence[int], count: int, divisor: int, signed: bool, marker: int | None
) -> list[float | None]:
    """One cell array decoded at once, in C: two's complement through an array
    when signed, then one division per word. Dividing by the scale's power of
    ten gives the correctly rounded decimal (2281 -> 2.281), like
    round(raw * scale)."""
    w = words if len(words) == count else words[:count]
    src: Sequence[int] = array("h", array("H", w).tobytes()) if signed else w
    out: list[float | None] = list(map(truediv, src, repeat(divisor, count)))
    if marker is not None and marker in w:
        for i, x in enumerate(w):
            if x == marker:
                out[i] = None
    return out


def _check_columns(columns: Sequence[list[float | None]], raw: Sequence[int], lost: bool) -> None:
    """Raise PollError(DECODE) for the first value outside its array's valid
    range, naming the cell; a lost sensor's values (never published) and
    no-sensor markers are not checked.

    Column by column, like the decoding: the lowest and the highest value of
    a column (two passes in C) inside one span decide it, and only a column
    that fails that (or holds a lost sensor's values or markers) is looked at
    cell by cell."""
    for k, arr in _COLUMN_CHECKS:
        col = columns[k]
        if not col:
            continue
        spans = arr.valid
        if not lost and arr.no_sensor is None:
            lo, hi = min(col), max(col)  # type: ignore[type-var]
            if any(a <= lo and hi <= b for a, b in spans):  # type: ignore[operator]
                continue
        for i, x in enumerate(col):
            if x is not None and not _inside(x, spans) and not raw[i] & SENSOR_LOST_BIT:
                raise PollError(
                    ErrorKind.DECODE,
                    f"cell {i + 1} {arr.label} {x:g} {arr.unit} "
                    f"outside {spans_text(spans, arr.unit)}",
                )


def decode_cells(
    arrays: Mapping[int, Sequence[int]], count: int, *, check: bool = True
) -> tuple[CellReading, ...]:
    """Per-cell arrays keyed by base address -> CellReading 1..count.

    Column by column, since this runs for every cell of every poll (3,840
    cells a second at full scale); a lost sensor's values all become None.
    ``check``: a value outside its valid range, or a status with a bit the
    device does not set, raises PollError(DECODE)."""
    columns = [_column(arrays[b], count, d, s, m) for b, d, s, m in _COLUMNS]
    v, r, t, soc, soh = columns
    raw = arrays[CELL_STATUS.base]
    if len(raw) != count:
        raw = raw[:count]
    if check and raw and max(raw) > _STATUS_MAX:
        i, x = next((i, x) for i, x in enumerate(raw) if x > _STATUS_MAX)
        raise PollError(
            ErrorKind.DECODE, f"cell {i + 1} status 0x{x:04X} has bits the device does not set"
        )
    lost = any(x & SENSOR_LOST_BIT for x in raw)
    if check:
        _check_columns(columns, raw, lost)
    cells = []
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
    block: Sequence[int], arrays: Mapping[int, Sequence[int]], read_at: float
) -> StringReading:
    """A whole reading; PollError(DECODE) when a value could not have been measured."""
    fields = decode_block(block)
    cells = decode_cells(arrays, fields["cell_count"])
    return StringReading(cells=cells, read_at=read_at, **fields)


def encode_value(reg: Register | CellArray, value: float | None) -> list[int]:
    """An SI value -> register words (None -> the no-sensor marker, or 0)."""
    order = reg.word_order if isinstance(reg, Register) else WordOrder.NONE
    if value is None:
        return [reg.no_sensor if reg.no_sensor is not None else 0]
    return to_words(round(value / reg.scale), reg.type, order)


def encode_block(values: Mapping[str, Any]) -> list[int]:
    """String fields (as in StringReading) -> HR 0..15; missing fields read 0."""
    block = [0] * BLOCK_COUNT
    for reg in STRING_BLOCK:
        if not reg.field or reg.field not in values:
            continue
        v = values[reg.field]
        v = int(v) if isinstance(v, bool | int) else v
        at = reg.address - BLOCK_START
        block[at : at + reg.words] = encode_value(reg, v)
    return block
