"""The agent's image of BTMS-GATEWAY-MIB: sorted rows per table over the snapshot.

An ``Index`` lists, for the current *shape* of the plant (which strings have
been read and how many cells they have, which alarms are active), every
scalar and column in OID order (a ``Segment`` each) and, per table, its rows
in index order (``Rows``, shared by the table's columns). An instance is a
position: a segment's first position plus a row number. Values are not
copied in: they are read from the immutable plant snapshot at request time,
so a new reading whose shape is unchanged costs one attribute assignment
(``ServeContext.plant``).

A change of shape rebuilds only the tables whose source changed
(``Table.source``: the plant, or the active alarms), and of the cell table
only the strings whose cell indexes changed (``Table.blocks``): an alarm
raised or cleared re-lists the alarm table's few rows and reuses every
other table's ``Rows`` as they are; a string whose cell count changed
re-lists its 120 rows. On the 2-core VM at 32 x 120 that is 0.1..0.4 ms
and 0.5 ms, where re-packing all 26,880 instance keys took 36..60 ms, on
the loop, in the first request after the change. The new index is built
whole and swapped in by one assignment: requests on the loop never see a
half-built one.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import chain, pairwise
from operator import attrgetter
from typing import Any

from btms_gateway.core.api import ActiveAlarm, CommCounters, PlantSnapshot
from pysnmp.proto import rfc1902

from . import ber
from .smi import Obj, RowList, Table
from .tables import SCALARS, TABLES, object_oids

ENCODERS: dict[str, Callable[[Any], Any]] = {
    "Integer32": rfc1902.Integer32,
    "INTEGER": rfc1902.Integer,
    "Unsigned32": rfc1902.Unsigned32,
    "Gauge32": rfc1902.Gauge32,
    "Counter32": rfc1902.Counter32,
    "TimeTicks": rfc1902.TimeTicks,
    "OCTET STRING": rfc1902.OctetString,
    "BITS": rfc1902.OctetString,
}


@dataclass
class AgentStats:
    """Counters the agent adds to the MIB (btmsGwSnmp*, btmsGwNotifications*)."""

    dropped_sources: int = 0
    rate_limited: int = 0  # requests over their source's rate limit, dropped
    notifications_sent: int = 0
    informs_failed: int = 0
    notifications_dropped: int = 0
    bad_datagrams: int = 0
    auth_failures: Callable[[], int] = lambda: 0


@dataclass
class ServeContext:
    """What getters read. ``plant`` and ``alarms`` are replaced, never mutated."""

    plant: PlantSnapshot
    gateway_name: str
    version: str
    uptime_s: Callable[[], float]
    counters: Callable[[str], CommCounters | None]
    stats: AgentStats = field(default_factory=AgentStats)
    alarms: dict[str, tuple[int, ActiveAlarm]] = field(default_factory=dict)
    #: the MIB's tables of the gateway's quantity table (tables.mib_tables)
    tables: tuple[Table, ...] = TABLES

    @property
    def now(self) -> float:
        return time.time()

    def total_polls(self) -> tuple[int, int]:
        polls = failed = 0
        for name in self.plant.strings:
            c = self.counters(name)
            if c is not None:
                polls += c.polls
                failed += c.polls_failed
        return polls, failed


_INDEX = attrgetter("index")


def _cells_shape(reading: Any) -> Any:
    return None if reading is None else tuple(map(_INDEX, reading.cells))


def same_shape(old: PlantSnapshot, new: PlantSnapshot) -> bool:
    """Whether ``new`` has exactly the instance OIDs of ``old`` (strings, UPS,
    cells); only strings whose reading object changed are compared cell by cell."""
    if old.strings.keys() != new.strings.keys() or old.ups.keys() != new.ups.keys():
        return False
    for name, s in new.strings.items():
        before = old.strings[name]
        if s is before or s.reading is before.reading:
            continue
        if s.index != before.index or _cells_shape(s.reading) != _cells_shape(before.reading):
            return False
    return all(u.index == old.ups[n].index for n, u in new.ups.items())


@dataclass(frozen=True)
class Rows:
    """A table's rows in index order; its columns share the object."""

    suffixes: list[tuple[int, ...]]  # the index part of the instance OIDs, ascending
    ber: list[bytes]  # BER content octets of each suffix
    keys: list[Any]  # what ``Table.resolve`` turns into the row object
    blocks: dict[Hashable, Rows] = field(default_factory=dict)  # by block key, for reuse


SCALAR_ROWS = Rows([(0,)], [b"\x00"], [None])


@dataclass(frozen=True)
class Segment:
    """One scalar or one column: positions start .. start + len(rows) - 1."""

    start: int
    obj: Obj
    table: Table | None
    oid: tuple[int, ...]  # the scalar's or column's OID
    ber_prefix: bytes  # BER content octets of ``oid``
    rows: Rows


@dataclass(frozen=True)
class Index:
    """Immutable: built whole, then swapped in by one assignment."""

    base: tuple[int, ...]
    segments: list[Segment]  # ascending; none is a prefix of another
    oids: list[tuple[int, ...]]  # segment OIDs, for bisection
    starts: list[int]  # segment first positions, for bisection
    size: int  # number of positions
    tables: dict[str, Rows]  # by table name, reused by the next rebuild
    objects: frozenset[tuple[int, ...]]  # scalar/column OIDs, for noSuchInstance vs Object


def _suffix_ber(sfx: tuple[int, ...]) -> bytes:
    # arcs below 128 are one octet each (every cell and string index is)
    return bytes(sfx) if max(sfx) < 0x80 else ber.oid_content(sfx, first=False)


def listed(rows: RowList) -> Rows:
    ordered = sorted(rows)
    suffixes = [sfx for sfx, _ in ordered]
    if any(a == b for a, b in pairwise(suffixes)):
        raise AssertionError("the MIB tables do not produce OIDs in ascending order")
    return Rows(suffixes, [_suffix_ber(s) for s in suffixes], [key for _, key in ordered])


def table_rows(t: Table, ctx: ServeContext, previous: Rows | None = None) -> Rows:
    """A table's rows; for a table listed in blocks, the blocks ``previous``
    holds under the same key are reused (a cell count change in one string
    re-lists that string's 120 rows, not all 3,840)."""
    if t.blocks is None:
        return listed(t.rows(ctx))
    known = {} if previous is None else previous.blocks
    blocks = {}
    for key, rows in t.blocks(ctx):
        found = known.get(key)
        blocks[key] = listed(rows()) if found is None else found
    parts = sorted((b for b in blocks.values() if b.suffixes), key=lambda b: b.suffixes[0])
    if any(a.suffixes[-1] >= b.suffixes[0] for a, b in pairwise(parts)):
        raise AssertionError(f"the blocks of {t.name} interleave")
    return Rows(
        list(chain.from_iterable(b.suffixes for b in parts)),
        list(chain.from_iterable(b.ber for b in parts)),
        list(chain.from_iterable(b.keys for b in parts)),
        blocks,
    )


@cache
def _objects(
    base: tuple[int, ...], tables: tuple[Table, ...]
) -> dict[str, tuple[tuple[int, ...], bytes]]:
    """Every scalar's and column's OID and its BER content octets."""
    return {name: (oid, ber.oid_content(oid)) for name, oid in object_oids(base, tables).items()}


def build_index(
    base: tuple[int, ...],
    ctx: ServeContext,
    previous: Index | None = None,
    changed: Collection[str] | None = None,
) -> Index:
    """The index for the current shape. With ``previous``, only tables whose
    ``source`` is in ``changed`` are re-listed; the others keep their rows."""
    names = _objects(base, ctx.tables)
    tables: dict[str, Rows] = {}
    for t in ctx.tables:
        kept = None if previous is None else previous.tables.get(t.name)
        if kept is not None and changed is not None and t.source not in changed:
            tables[t.name] = kept
        else:
            tables[t.name] = table_rows(t, ctx, kept)
    segments: list[Segment] = []
    start = 0
    for s in SCALARS:
        oid, prefix = names[s.name]
        segments.append(Segment(start, s, None, oid, prefix, SCALAR_ROWS))
        start += 1
    for t in ctx.tables:
        rows = tables[t.name]
        for col in t.columns:
            if col.access == "not-accessible" or not rows.suffixes:
                continue
            oid, prefix = names[col.name]
            segments.append(Segment(start, col, t, oid, prefix, rows))
            start += len(rows.suffixes)
    oids = [g.oid for g in segments]
    if any(a >= b or a == b[: len(a)] for a, b in pairwise(oids)):
        raise AssertionError("the MIB's scalars and columns are not in ascending OID order")
    every = (*SCALARS, *(c for t in ctx.tables for c in t.columns))
    objects = frozenset(names[o.name][0] for o in every)
    return Index(base, segments, oids, [g.start for g in segments], start, tables, objects)


def segment_number(index: Index, pos: int) -> int:
    return bisect_right(index.starts, pos) - 1


def segment_of(index: Index, pos: int) -> Segment:
    return index.segments[bisect_right(index.starts, pos) - 1]


def find(index: Index, oid: tuple[int, ...]) -> int | None:
    """The position of instance ``oid``, or None."""
    i = bisect_right(index.oids, oid) - 1
    if i < 0:
        return None
    seg = index.segments[i]
    cut = len(seg.oid)
    if oid[:cut] != seg.oid:
        return None
    sfx = oid[cut:]
    suffixes = seg.rows.suffixes
    j = bisect_left(suffixes, sfx)
    return seg.start + j if j < len(suffixes) and suffixes[j] == sfx else None


def after(index: Index, oid: tuple[int, ...]) -> int:
    """Position of the first instance after ``oid`` (which may lie anywhere).

    The segment whose OID is the last one <= ``oid`` is the only one that can
    hold both instances before and after it: the segments before it lie
    wholly before ``oid``, those after it wholly after (siblings' subtrees
    do not interleave)."""
    i = bisect_right(index.oids, oid) - 1
    if i < 0:
        return 0
    seg = index.segments[i]
    cut = len(seg.oid)
    if oid[:cut] != seg.oid:
        return seg.start + len(seg.rows.suffixes)
    return seg.start + bisect_right(seg.rows.suffixes, oid[cut:])


def name_at(index: Index, pos: int) -> tuple[int, ...]:
    seg = segment_of(index, pos)
    return seg.oid + seg.rows.suffixes[pos - seg.start]


def raw_at(index: Index, pos: int, ctx: ServeContext) -> Any:
    """The Python value at ``pos``, or None when absent (row gone, not measured)."""
    seg = segment_of(index, pos)
    return _raw(seg, pos - seg.start, ctx)


def _raw(seg: Segment, row: int, ctx: ServeContext) -> Any:
    if seg.table is None:
        return seg.obj.get(None, ctx)  # type: ignore[misc]  # every served object has a getter (tables.py)
    obj = seg.table.resolve(ctx, seg.rows.keys[row])
    return None if obj is None else seg.obj.get(obj, ctx)  # type: ignore[misc]  # (see above)


def value_at(index: Index, pos: int, ctx: ServeContext) -> Any:
    """The value at ``pos`` as a pysnmp object (None when absent)."""
    seg = segment_of(index, pos)
    raw = _raw(seg, pos - seg.start, ctx)
    return None if raw is None else ENCODERS[seg.obj.base](raw)


def prebuilt_at(index: Index, pos: int, ctx: ServeContext) -> ber.Prebuilt | None:
    """The whole varbind at ``pos``, BER-encoded (None when absent)."""
    seg = segment_of(index, pos)
    row = pos - seg.start
    raw = _raw(seg, row, ctx)
    if raw is None:
        return None
    oid = ber.oid_tlv(seg.ber_prefix + seg.rows.ber[row])
    return ber.Prebuilt(ber.varbind(oid, seg.obj.base, raw))


def values(seg: Segment, pos: int, ctx: ServeContext) -> Iterator[tuple[int, Any]]:
    """(row, Python value) of every present value of ``seg`` at or after
    position ``pos``; each getter runs once, and no bisection per value."""
    get = seg.obj.get
    if seg.table is None:
        raw = get(None, ctx)  # type: ignore[misc]  # every served object has a getter (tables.py)
        if raw is not None:
            yield 0, raw
        return
    resolve, keys = seg.table.resolve, seg.rows.keys
    for row in range(max(pos - seg.start, 0), len(keys)):
        obj = resolve(ctx, keys[row])
        if obj is not None:
            raw = get(obj, ctx)  # type: ignore[misc]  # (see above)
            if raw is not None:
                yield row, raw


def encode(seg: Segment, row: int, raw: Any) -> tuple[tuple[int, ...], ber.Prebuilt]:
    """(name, varbind) of a value ``values`` reported."""
    oid = ber.oid_tlv(seg.ber_prefix + seg.rows.ber[row])
    return seg.oid + seg.rows.suffixes[row], ber.Prebuilt(ber.varbind(oid, seg.obj.base, raw))
