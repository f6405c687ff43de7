"""The agent's image of BTMS-GATEWAY-MIB: a sorted OID array over the snapshot.

An ``Index`` holds every instance OID the tables define for the current
*shape* of the plant (which strings have been read and how many cells they
have, which alarms are active) in lexicographic order, with a reference to
the column and row key. Values are not copied into it: they are read from
the immutable plant snapshot at request time. So a new reading whose shape
is unchanged costs one attribute assignment (``ServeContext.plant``), and
only a change of shape (cells added, a string read for the first time, an
alarm raised or cleared) rebuilds the index, which is then swapped whole.
Requests on the loop never see a half-built index.
"""

from __future__ import annotations

import struct
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from btms_gateway.core.alarm_types import ActiveAlarm
from btms_gateway.core.counters import CommCounters
from btms_gateway.core.model import PlantSnapshot
from pysnmp.proto import rfc1902

from . import ber
from .smi import Obj, Table
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


def _cells_shape(reading: Any) -> Any:
    return None if reading is None else tuple(c.index for c in reading.cells)


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
class Segment:
    """One scalar or one column: positions start .. start + len(rows) - 1."""

    start: int
    obj: Obj
    table: Table | None
    oid: tuple[int, ...]  # the scalar's or column's OID
    ber_prefix: bytes  # BER content octets of ``oid``
    rows: list[tuple[bytes, Any, tuple[int, ...]]]  # (encoded suffix, row key, suffix)


@dataclass(frozen=True)
class Index:
    """Immutable: built whole, then swapped in by one assignment.

    ``keys`` hold every instance OID packed as 32-bit big-endian arcs, which
    sort exactly like the OIDs (BER's base-128 arcs do not: 256 encodes as
    82 00, 16384 as 81 80 00), so bisection works on compact bytes and no
    tuple of ints is kept per instance (about 4 MB for 26,880 cell values
    instead of 9 MB). The BER of a name is its segment's prefix plus its
    row's suffix, both encoded once per rebuild."""

    base: tuple[int, ...]
    keys: list[bytes]  # relative to ``base``
    segments: list[Segment]
    starts: list[int]
    objects: frozenset[tuple[int, ...]]  # scalar/column OIDs, for noSuchInstance vs Object


SCALAR_ROW = [(b"\x00", None, (0,))]


def build_index(base: tuple[int, ...], ctx: ServeContext) -> Index:
    names = object_oids(base)
    cut = len(base)  # keys are relative to the base: every instance lies under it
    keys: list[bytes] = []
    segments: list[Segment] = []
    for s in SCALARS:
        oid = names[s.name]
        segments.append(Segment(len(keys), s, None, oid, ber.oid_content(oid), SCALAR_ROW))
        keys.append(pack((*oid, 0)[cut:]))
    for t in TABLES:
        rows = [(ber.oid_content(sfx, first=False), key, sfx) for sfx, key in sorted(t.rows(ctx))]
        for col in t.columns:
            if col.access == "not-accessible" or not rows:
                continue
            oid = names[col.name]
            segments.append(Segment(len(keys), col, t, oid, ber.oid_content(oid), rows))
            keys.extend(pack((oid + row[2])[cut:]) for row in rows)
    if any(a >= b for a, b in pairwise(keys)):
        raise AssertionError("the MIB tables do not produce OIDs in ascending order")
    objects = frozenset(names[o.name] for o in (*SCALARS, *(c for t in TABLES for c in t.columns)))
    return Index(base, keys, segments, [g.start for g in segments], objects)


def raw_at(index: Index, pos: int, ctx: ServeContext) -> Any:
    """The Python value at ``pos``, or None when absent (row gone, not measured)."""
    seg = index.segments[bisect_right(index.starts, pos) - 1]
    if seg.table is None:
        return seg.obj.get(None, ctx)  # type: ignore[misc]
    row = seg.table.resolve(ctx, seg.rows[pos - seg.start][1])
    return None if row is None else seg.obj.get(row, ctx)  # type: ignore[misc]


def name_at(index: Index, pos: int) -> tuple[int, ...]:
    seg = index.segments[bisect_right(index.starts, pos) - 1]
    return seg.oid + seg.rows[pos - seg.start][2]


def base_at(index: Index, pos: int) -> str:
    return index.segments[bisect_right(index.starts, pos) - 1].obj.base


def value_at(index: Index, pos: int, ctx: ServeContext) -> Any:
    """The value at ``pos`` as a pysnmp object (None when absent)."""
    raw = raw_at(index, pos, ctx)
    return None if raw is None else ENCODERS[base_at(index, pos)](raw)


def prebuilt_at(index: Index, pos: int, ctx: ServeContext) -> ber.Prebuilt | None:
    """The whole varbind at ``pos``, BER-encoded (None when absent)."""
    seg = index.segments[bisect_right(index.starts, pos) - 1]
    suffix, key, _ = seg.rows[pos - seg.start]
    if seg.table is None:
        raw = seg.obj.get(None, ctx)  # type: ignore[misc]
    else:
        row = seg.table.resolve(ctx, key)
        raw = None if row is None else seg.obj.get(row, ctx)  # type: ignore[misc]
    if raw is None:
        return None
    return ber.Prebuilt(ber.varbind(ber.oid_tlv(seg.ber_prefix + suffix), seg.obj.base, raw))


def pack(oid: tuple[int, ...]) -> bytes:
    """An order-preserving key; arcs beyond 32 bits (not valid SMI) are clamped."""
    try:
        return struct.pack(f">{len(oid)}I", *oid)
    except struct.error:
        return struct.pack(f">{len(oid)}I", *(min(max(a, 0), 0xFFFFFFFF) for a in oid))


def find(index: Index, oid: tuple[int, ...]) -> int | None:
    cut = len(index.base)
    if oid[:cut] != index.base:
        return None
    key = pack(oid[cut:])
    pos = bisect_left(index.keys, key)
    return pos if pos < len(index.keys) and index.keys[pos] == key else None


def after(index: Index, oid: tuple[int, ...]) -> int:
    """Position of the first instance after ``oid`` (which may lie anywhere)."""
    cut = len(index.base)
    head = oid[:cut]
    if head != index.base:
        return 0 if head < index.base else len(index.keys)
    return bisect_right(index.keys, pack(oid[cut:]))
