"""The building blocks of the MIB definition: textual conventions, objects,
tables and notifications as plain data, with no pysnmp or text-format code.

tables.py fills these in once; mibgen.py turns them into SMIv2 text and
image.py into the agent's sorted OID index.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

# A getter receives the row object (None for scalars) and the serving context,
# and returns a Python int / str / bytes, or None when the value is absent
# (never read, no sensor fitted): absent values are noSuchInstance on GET and
# skipped by GETNEXT/GETBULK, never invented.
Getter = Callable[[Any, Any], Any]

RowList = list[tuple[tuple[int, ...], Any]]  # (index suffix, row key)

# SMI base types the agent knows how to encode (see image.py: ENCODERS).
BASE_TYPES = (
    "Integer32",
    "INTEGER",
    "Unsigned32",
    "Gauge32",
    "Counter32",
    "TimeTicks",
    "OCTET STRING",
    "BITS",
)


@dataclass(frozen=True)
class TC:
    """A TEXTUAL-CONVENTION (scaled integers with DISPLAY-HINT, enumerations)."""

    name: str
    base: str  # one of BASE_TYPES
    description: str
    display_hint: str | None = None
    enums: tuple[tuple[str, int], ...] = ()
    range: str | None = None  # e.g. "(-2147483648..2147483647)"


@dataclass(frozen=True)
class Obj:
    """A scalar, a table column, or a notification-only object."""

    name: str
    subid: int
    syntax: str  # a TC name, an imported type name, or a base type (with refinement)
    base: str  # the base type the agent encodes
    description: str
    access: str = "read-only"
    units: str | None = None
    get: Getter | None = None
    bits: tuple[tuple[str, int], ...] = ()  # named bits when base == "BITS"


@dataclass(frozen=True)
class Table:
    """A conceptual table. ``rows`` lists (index suffix, row key) in index order;
    ``resolve`` turns a row key into the row object at serving time, so a
    refresh only swaps the snapshot the keys are resolved against. ``source``
    names what its rows depend on ("plant" or "alarms"): a change there
    re-lists this table's rows and no other's. ``blocks``, when given, lists
    the same rows in blocks that do not interleave, each with a key that is
    equal whenever the block's rows are (a string's index and cell indexes):
    a rebuild then lists only the blocks whose key is new."""

    name: str  # e.g. "btmsString" -> btmsStringTable / btmsStringEntry
    subid: int
    description: str
    entry_description: str
    index: tuple[str, ...]  # index object names (may be another table's column)
    columns: tuple[Obj, ...]
    rows: Callable[[Any], RowList] = field(repr=False)
    resolve: Callable[[Any, Any], Any] = field(repr=False)
    source: str = "plant"
    blocks: Callable[[Any], list[tuple[Hashable, Callable[[], RowList]]]] | None = field(
        default=None, repr=False
    )

    @property
    def table_name(self) -> str:
        return f"{self.name}Table"

    @property
    def entry_name(self) -> str:
        return f"{self.name}Entry"

    @property
    def entry_type(self) -> str:
        return self.name[0].upper() + self.name[1:] + "Entry"


@dataclass(frozen=True)
class Notification:
    name: str
    subid: int
    objects: tuple[str, ...]
    description: str


def bits_value(flags: int, width: int) -> bytes:
    """BER BITS: bit 0 is the most significant bit of the first octet."""
    out = bytearray((width + 7) // 8)
    for bit in range(width):
        if flags & (1 << bit):
            out[bit // 8] |= 0x80 >> (bit % 8)
    return bytes(out)


def scaled(value: float | None, factor: int) -> int | None:
    return None if value is None else round(value * factor)
