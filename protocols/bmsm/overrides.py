"""Register-map overrides: a TOML file that corrects the BM-SM register table
for one firmware on a site, without code.

Half of the table is assumed, not published (docs/southbound.md). When a
device's firmware keeps a value elsewhere, in another type, word order or
scale, or reads "no sensor" with another marker, an integrator writes what
differs, keyed by the quantity's field name::

    [string.ambient_temperature_c]
    address = 16

    [cell.resistance_mohm]
    base = 1300
    scale = 0.01

and names the file on the strings it concerns (``[[strings]]
register_overrides = "FILE"``): the gateway reads them with the effective
map, a copy of the table with those rows changed (a RegisterMap). The probe,
the simulator and ``export bmsm-registers`` take the same file.

The file is validated like the configuration: every problem names the file,
the key path and what was expected, in one pass; the effective map is then
checked as a whole (overlapping registers, a string block longer than one
read, a 32-bit value without a word order, a no-sensor marker the device
could also measure).
"""

from __future__ import annotations

import difflib
import itertools
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from btms_gateway.core.api import ConfigError, Problem, StrictModel, problems_from, read_text
from btms_gateway.protocols.rtu.framing import MAX_READ_COUNT
from pydantic import Field, ValidationError, field_validator

from .decode import inside, raw_value, to_words
from .registers import (
    CELL_ARRAYS,
    MAX_CELLS,
    STRING_BLOCK,
    WIDE_TYPES,
    CellArray,
    Register,
    RegType,
    WordOrder,
    spans_text,
)
from .regmap import RegisterMap

#: the quantities an override can name, by section
STRING_QUANTITIES = tuple(r.field for r in STRING_BLOCK if r.field)
CELL_QUANTITIES = tuple(a.field for a in CELL_ARRAYS)
#: units of rows that hold a code, not a measurement: only their place and type can change
CODE_UNITS = ("enum", "count", "bits", "0/1")

TypeName = Literal["uint16", "int16", "uint32", "int32"]
OrderName = Literal["low word first", "high word first"]
Register16 = Annotated[int, Field(ge=0, le=0xFFFF, strict=True)]
Marker = Annotated[int, Field(ge=0, le=0xFFFFFFFF, strict=True)] | Literal["none"]


class _RowOverride(StrictModel):
    """What any quantity can change; a key left out keeps the table's value."""

    type: TypeName | None = None
    scale: Annotated[float, Field(gt=0)] | None = None
    #: the raw word(s) meaning "no sensor fitted" (decoded as None); "none": no marker
    no_sensor: Marker | None = None
    #: what the device can measure, [[lo, hi], ...] in the decoded unit; []: no check
    valid: list[tuple[float, float]] | None = None

    @field_validator("valid")
    @classmethod
    def _spans(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        for lo, hi in v or ():
            if lo > hi:
                raise ValueError(f"[low, high] pairs with low <= high, found [{lo:g}, {hi:g}]")
        return v


class StringOverride(_RowOverride):
    """``[string.FIELD]``: a value of the string block."""

    address: Register16 | None = None  # the first register of a 32-bit value
    word_order: OrderName | None = None


class CellOverride(_RowOverride):
    """``[cell.FIELD]``: a per-cell array (register ``base + i`` holds cell i)."""

    base: Annotated[int, Field(ge=0, le=0x10000 - MAX_CELLS, strict=True)] | None = None

    @field_validator("type")
    @classmethod
    def _one_register(cls, v: str | None) -> str | None:
        if v is not None and RegType(v) in WIDE_TYPES:
            raise ValueError(
                f"uint16 or int16 (a cell array holds one register per cell), found {v!r}"
            )
        return v


class OverrideFile(StrictModel):
    string: dict[str, StringOverride] = {}
    cell: dict[str, CellOverride] = {}


class _Sections(StrictModel):
    """The file's shape: two sections of tables, each table validated on its
    own (so one bad table does not hide the problems of the others)."""

    string: dict[str, dict[str, Any]] = {}
    cell: dict[str, dict[str, Any]] = {}


def load_map(path: str | Path) -> RegisterMap:
    """The effective map of an override file; ConfigError naming the file, the
    key path and what was expected for every problem in it. Cached per file
    version (path, size, modification time): each string that names the file
    shares one map."""
    source = str(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        problem = _problem(source, "(file)", f"a readable file, found {exc}")
        raise ConfigError(source, [problem]) from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is None:
        cached = parse(read_text(path), source)
        if len(_CACHE) >= 32:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


_CACHE: dict[tuple[str, int, int], RegisterMap] = {}


def parse(text: str, source: str) -> RegisterMap:
    """An override file's text -> its effective map, or ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = _problem(source, "(syntax)", f"valid TOML, found {exc}")
        raise ConfigError(source, [problem]) from None
    problems = _unknown_quantities(data, source)
    try:
        sections = _Sections.model_validate(data)
    except ValidationError as exc:
        problems += [replace(p, file=source) for p in problems_from(exc, _Sections)]
        raise ConfigError(source, problems) from None
    rows: dict[str, dict[str, Any]] = {"string": {}, "cell": {}}
    for section, model in (("string", StringOverride), ("cell", CellOverride)):
        for name, table in getattr(sections, section).items():
            try:
                rows[section][name] = model.model_validate(table)
            except ValidationError as exc:
                found = problems_from(exc, model, (section, name))
                problems += [replace(p, file=source) for p in found]
    regmap, found = effective_map(OverrideFile(**rows), source, whole=not problems)
    problems += found
    if problems:
        raise ConfigError(source, problems)
    return regmap


def _problem(source: str, path: str, message: str) -> Problem:
    return Problem(path, message, file=source)


def _unknown_quantities(data: dict[str, Any], source: str) -> list[Problem]:
    """A key other than the two sections, or a table naming no quantity of its
    section (a typo, a field of the other section), is reported, with the
    closest name, and left out of validation."""
    out = []
    for key in [k for k in data if k not in ("string", "cell")]:
        close = difflib.get_close_matches(key, ["string", "cell"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(
            _problem(
                source,
                key,
                f"[string.FIELD] or [cell.FIELD] tables only{hint}, found unknown key {key!r}",
            )
        )
        del data[key]
    for section, names in (("string", STRING_QUANTITIES), ("cell", CELL_QUANTITIES)):
        tables = data.get(section)
        if not isinstance(tables, dict):
            continue
        for name in list(tables):
            if name in names:
                continue
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(
                _problem(
                    source,
                    f"{section}.{name}",
                    f"one of the BM-SM {section} quantities {list(names)}{hint}, found {name!r}",
                )
            )
            del tables[name]
    return out


def effective_map(
    doc: OverrideFile, source: str, *, whole: bool = True
) -> tuple[RegisterMap, list[Problem]]:
    """The table with the file's rows applied, and what is wrong with each
    row and (``whole``, once every row is valid) with the result as a whole:
    none when it can be read."""
    problems: list[Problem] = []
    changes: dict[str, str] = {}
    block = {r.field: r for r in STRING_BLOCK if r.field}
    for name, o in doc.string.items():
        new, found = _apply(block[name], o, f"string.{name}", source)
        problems += found
        assert isinstance(new, Register)  # _apply returns a row of its row's own type
        block[name] = new
        changes[f"string.{name}"] = _describe(_default_row(f"string.{name}"), new)
    cells = {a.field: a for a in CELL_ARRAYS}
    for name, c in doc.cell.items():
        new, found = _apply(cells[name], c, f"cell.{name}", source)
        problems += found
        assert isinstance(new, CellArray)
        cells[name] = new
        changes[f"cell.{name}"] = _describe(_default_row(f"cell.{name}"), new)
    rows = _with_reserved(list(block.values()))
    if whole and not problems:
        problems += _block_problems(rows, doc, source)
        problems += _cell_problems(list(cells.values()), rows, doc, source)
    changes = {k: v for k, v in changes.items() if v}
    regmap = RegisterMap(
        rows, [cells[a.field] for a in CELL_ARRAYS], source=source, changes=changes
    )
    return regmap, problems


def _default_row(key: str) -> Register | CellArray:
    area, _, field = key.partition(".")
    rows: Sequence[Register | CellArray] = STRING_BLOCK if area == "string" else CELL_ARRAYS
    return next(r for r in rows if r.field == field)


def _apply(
    row: Register | CellArray, o: StringOverride | CellOverride, key: str, source: str
) -> tuple[Register | CellArray, list[Problem]]:
    """One row with its override applied, and the problems of that row alone."""
    problems: list[Problem] = []
    update: dict[str, Any] = {}
    code = row.unit in CODE_UNITS
    for name in ("scale", "no_sensor", "valid"):
        if code and getattr(o, name) is not None:
            problems.append(
                _problem(
                    source,
                    f"{key}.{name}",
                    f"no {name} for {row.field!r}, a code ({row.unit}), not a measurement: "
                    f"only its {'base' if isinstance(row, CellArray) else 'address'}, type "
                    f"and word order can change, found {name} = {getattr(o, name)!r}",
                )
            )
    if isinstance(o, StringOverride) and o.address is not None:
        update["address"] = o.address
    if isinstance(o, CellOverride) and o.base is not None:
        update["base"] = o.base
    rtype = RegType(o.type) if o.type else row.type
    if code and rtype not in (RegType.UINT16, RegType.UINT32):
        problems.append(
            _problem(
                source,
                f"{key}.type",
                f"an unsigned type (uint16 or uint32) for {row.field!r}, a code, found {o.type!r}",
            )
        )
    update["type"] = rtype
    if isinstance(row, Register):
        order = WordOrder(o.word_order) if isinstance(o, StringOverride) and o.word_order else None
        if rtype in WIDE_TYPES:
            order = order or (row.word_order if row.word_order is not WordOrder.NONE else None)
            if order is None:
                problems.append(
                    _problem(
                        source,
                        f"{key}.word_order",
                        f'a word order for the 32-bit type {rtype} ("low word first" or '
                        f'"high word first"): the table has none for {row.field!r}, '
                        "found nothing",
                    )
                )
                order = WordOrder.LOW_FIRST
        elif order is not None:
            problems.append(
                _problem(
                    source,
                    f"{key}.word_order",
                    f"no word order for the 16-bit type {rtype}, found {order.value!r}",
                )
            )
        update["word_order"] = order or WordOrder.NONE
    if o.scale is not None:
        update["scale"] = o.scale
    if o.no_sensor is not None:
        update["no_sensor"] = None if o.no_sensor == "none" else o.no_sensor
    if o.valid is not None:
        update["valid"] = merged_spans(o.valid)
    new = replace(row, **update)
    if not problems:
        problems += _marker_problems(new, o, key, source)
    return new, problems


def merged_spans(spans: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Spans sorted, overlapping ones joined: the decoder takes the first
    span's low and the last one's high as the row's extremes."""
    out: list[list[float]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _marker_problems(
    row: Register | CellArray, o: StringOverride | CellOverride, key: str, source: str
) -> list[Problem]:
    """A no-sensor marker must fit the type, and must decode to a value the
    device cannot measure: inside the valid range, a genuine reading equal
    to it would be served as "no sensor fitted"."""
    marker = row.no_sensor
    if marker is None:
        return []
    bits = 32 if row.type in WIDE_TYPES else 16
    at = f"{key}.no_sensor" if o.no_sensor is not None else f"{key}.type"
    if marker >= 1 << bits:
        return [
            _problem(
                source, at, f"a no-sensor marker that fits {row.type} (0..0x{(1 << bits) - 1:X}), "
                f"found 0x{marker:X}",
            )
        ]  # fmt: skip
    value = round(raw_value(to_words(marker, row.type, row.word_order), row.type,
                            row.word_order) * row.scale, 6)  # fmt: skip
    if row.valid and inside(value, row.valid):
        at = f"{key}.no_sensor" if o.no_sensor is not None else f"{key}.valid"
        return [
            _problem(
                source,
                at,
                f"a no-sensor marker outside the valid range, found 0x{marker:04X} = "
                f"{value:g} {row.unit}, inside {spans_text(row.valid, row.unit)}: a genuine "
                f"reading of {value:g} {row.unit} would be served as 'no sensor fitted'",
            )
        ]
    return []


def _describe(old: Register | CellArray, new: Register | CellArray) -> str:
    """What an override changed in a row: ``address 16 (was 11), scale 0.01 (was 0.001)``."""
    out = []
    formats: dict[str, Callable[[Any], str]] = {"no_sensor": _marker_text, "valid": spans_text}
    for name in ("address", "base", "type", "word_order", "scale", "no_sensor", "valid"):
        if not hasattr(old, name) or (name == "address" and isinstance(old, CellArray)):
            continue
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        text = formats.get(name, _plain)
        out.append(f"{name.replace('_', ' ')} {text(b)} (was {text(a)})")
    return ", ".join(out)


def _plain(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _marker_text(v: int | None) -> str:
    return "none" if v is None else f"0x{v:04X}"


def _with_reserved(quantities: list[Register]) -> list[Register]:
    """The string block's rows: the quantities, and the reserved rows of the
    table no quantity was moved onto (a firmware that uses a reserved
    register for a value makes it that value's), in address order."""
    taken = {a for r in quantities for a in range(r.address, r.address + r.words)}
    reserved = [r for r in STRING_BLOCK if not r.field and r.address not in taken]
    return sorted(quantities + reserved, key=lambda r: r.address)


def _key(row: Register | CellArray) -> str:
    """The override key to blame for a row's place: its own when it was moved."""
    if isinstance(row, CellArray):
        return f"cell.{row.field}.base"
    return f"string.{row.field}.address"


def _moved(doc: OverrideFile, row: Register | CellArray) -> bool:
    if isinstance(row, CellArray):
        o = doc.cell.get(row.field)
        return o is not None and o.base is not None
    s = doc.string.get(row.field)
    return s is not None and (s.address is not None or s.type is not None)


def _where(row: Register | CellArray) -> str:
    if isinstance(row, CellArray):
        return f"{row.field} (HR {row.base}..{row.base + MAX_CELLS - 1})"
    hr = f"{row.address}-{row.address + 1}" if row.words == 2 else str(row.address)
    return f"{row.field or 'reserved'} (HR {hr})"


def _overlaps(
    rows: Sequence[tuple[Register | CellArray, int, int]], doc: OverrideFile, source: str
) -> list[Problem]:
    """Two rows on one register: the one an override moved is blamed."""
    out = []
    ordered = sorted(rows, key=lambda t: (t[1], t[2]))
    for (a, _, a_hi), (b, b_lo, _) in itertools.pairwise(ordered):
        if b_lo >= a_hi:
            continue
        culprit, other = (b, a) if _moved(doc, b) or not _moved(doc, a) else (a, b)
        out.append(
            _problem(
                source,
                _key(culprit),
                f"registers no other quantity uses, found {_where(culprit)} "
                f"overlapping {_where(other)}",
            )
        )
    return out


def _block_problems(rows: list[Register], doc: OverrideFile, source: str) -> list[Problem]:
    quantities = [(r, r.address, r.address + r.words) for r in rows if r.field]
    out = _overlaps(quantities, doc, source)
    for r, _lo, hi in quantities:
        if hi > 0x10000:
            out.append(
                _problem(source, _key(r), f"registers 0..65535, found {_where(r)} past 65535")
            )
    start, end = min(r.address for r in rows), max(r.address + r.words for r in rows)
    moved = [r for r in rows if _moved(doc, r)]
    if end - start > MAX_READ_COUNT and moved and not out:
        # the moved row farthest from the others is the one that stretched the block
        far = max(moved, key=lambda r: sum(abs(r.address - x.address) for x in rows))
        out.append(
            _problem(
                source,
                _key(far),
                f"the string block within {MAX_READ_COUNT} registers (it is read in one "
                f"transaction), found HR {start}..{end - 1} with {_where(far)}",
            )
        )
    return out


def _cell_problems(
    cells: list[CellArray], block: list[Register], doc: OverrideFile, source: str
) -> list[Problem]:
    rows: list[tuple[Register | CellArray, int, int]] = [
        (a, a.base, a.base + MAX_CELLS) for a in cells
    ]
    out = _overlaps(rows, doc, source)
    start, end = min(r.address for r in block), max(r.address + r.words for r in block)
    for a in cells:
        if a.base < end and start < a.base + MAX_CELLS:
            out.append(
                _problem(
                    source,
                    _key(a),
                    f"registers outside the string block (HR {start}..{end - 1}), found "
                    f"{_where(a)}",
                )
            )
    return out
