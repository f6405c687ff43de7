"""Turning readings into integers and integer columns into compact bytes.

Two encodings:

- a *segment* holds the last few seconds of one string (every quantity, every
  cell) as written by each commit: one zlib call at level 1, cheap enough to
  run every few seconds, so a crash loses only what was not yet committed;
- a *block* holds one quantity of one string over a longer period (10 minutes
  raw, 6 hours of minutes, 30 days of hours), one compressed *chunk per
  column* (a cell, or the string itself): values are delta-encoded along
  time, zig-zag mapped to unsigned, stored in the narrowest width that holds
  them and deflated. A column that never changes is stored as one number.
  One cell's chunk decodes without touching the others, which keeps "one
  cell over ten years" fast.

Missing values (``None`` in a reading: no sensor, sensor lost) are NULL in a
segment and a per-chunk mask in a block; a gap (no reading at all) is simply
no row. Nothing is ever interpolated.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from itertools import accumulate
from operator import attrgetter

import numpy as np

from ..model import StringReading
from .quantities import CELL_QUANTITIES, STRING_QUANTITIES

#: the integer a segment stores for "not measured" (outside every quantity's range)
NULL = np.iinfo(np.int32).min
_STRING_GET = attrgetter(*(q.attr for q in STRING_QUANTITIES))
_CELL_GET = attrgetter(*(q.attr for q in CELL_QUANTITIES))
_STRING_SCALES = np.array([q.scale for q in STRING_QUANTITIES], dtype=np.float64)
_CELL_SCALES = np.array([q.scale for q in CELL_QUANTITIES], dtype=np.float64)
_NCELLQ = len(CELL_QUANTITIES)

SEGMENT_VERSION = 1
_SEG_HEAD = struct.Struct("<BIIB")  # version, rows, cells, stats per row
BLOCK_VERSION = 1
_BLOCK_HEAD = struct.Struct("<BIHB")  # version, rows, columns, stats per row
_WIDTHS = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))
_CONST, _MASK = 0x08, 0x04


class CorruptBlock(ValueError):
    """Bytes that do not decode: a damaged file (counted and skipped by queries)."""


# --- readings -> rows ----------------------------------------------------------------
def reading_row(r: StringReading) -> np.ndarray:
    """One reading as scaled float64 values (NaN = not measured), string
    quantities first, then each cell quantity for every cell."""
    head = np.array(_STRING_GET(r), dtype=np.float64) * _STRING_SCALES
    cells = np.array(list(map(_CELL_GET, r.cells)), dtype=np.float64).reshape(-1, _NCELLQ)
    return np.concatenate((head, (cells * _CELL_SCALES).T.ravel()))


def widen(values: np.ndarray, cells: int, width: int, fill: float) -> np.ndarray:
    """Rows (n, columns) of a ``cells``-cell string as rows of a ``width``-cell one."""
    if cells == width:
        return values
    ns = len(STRING_QUANTITIES)
    out = np.full((values.shape[0], ns + _NCELLQ * width), fill, dtype=values.dtype)
    out[:, :ns] = values[:, :ns]
    for q in range(_NCELLQ):
        out[:, ns + q * width : ns + q * width + cells] = values[
            :, ns + q * cells : ns + (q + 1) * cells
        ]
    return out


def to_int32(values: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    ints = np.rint(np.where(missing, 0.0, values))
    np.clip(ints, NULL + 1, np.iinfo(np.int32).max, out=ints)
    out = ints.astype(np.int32)
    out[missing] = NULL
    return out


# --- segments ------------------------------------------------------------------------
def encode_segment(t_ms: np.ndarray, values: np.ndarray, cells: int, stats: int = 1) -> bytes:
    """``t_ms`` (n,) int64 and ``values`` (stats * n, columns) -> bytes: int32
    for raw readings (NULL = not measured), int64 for roll-ups (stats = 4:
    min, max, sum, count stacked along axis 0; count 0 = nothing measured)."""
    kind = "<i4" if stats == 1 else "<i8"
    body = t_ms.astype("<i8").tobytes() + values.astype(kind).tobytes()
    return _SEG_HEAD.pack(SEGMENT_VERSION, len(t_ms), cells, stats) + zlib.compress(body, 1)


def decode_segment(data: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """-> (t_ms int64 (n,), values (stats * n, columns), cells); int32 values
    for raw segments, int64 for roll-ups."""
    try:
        version, n, cells, stats = _SEG_HEAD.unpack_from(data)
        if version != SEGMENT_VERSION:
            raise CorruptBlock(f"segment version {version}")
        body = zlib.decompress(data[_SEG_HEAD.size :])
        t = np.frombuffer(body, "<i8", n).astype(np.int64)
        cols = len(STRING_QUANTITIES) + _NCELLQ * cells
        kind = "<i4" if stats == 1 else "<i8"
        values = np.frombuffer(body, kind, stats * n * cols, offset=8 * n)
        values = values.reshape(stats * n, cols).astype(np.int32 if stats == 1 else np.int64)
    except (struct.error, zlib.error, ValueError) as exc:
        raise CorruptBlock(f"segment: {exc}") from exc
    return t, values, cells


# --- blocks ----------------------------------------------------------------------------
def encode_block(
    values: np.ndarray, present: np.ndarray | None = None, stats: int = 1, level: int = 6
) -> bytes:
    """``values`` (stats * rows, columns) int64, stats stacked along axis 0
    (min rows, then max rows, ...); ``present`` (rows, columns) bool or None
    when nothing is missing. One chunk per column."""
    length, columns = values.shape
    rows = length // stats
    if present is not None and present.all():
        present = None
    if present is not None:
        values = _fill_gaps(values, present)
    deltas = np.diff(values, axis=0, prepend=np.zeros((1, columns), dtype=np.int64))
    zz = ((deltas << 1) ^ (deltas >> 63)).astype(np.uint64).T.copy()
    changing = zz[:, 1:].max(axis=1, initial=0) if length > 1 else np.zeros(columns, np.uint64)
    top = zz.max(axis=1, initial=0)
    chunks = []
    for j in range(columns):
        mask = b""
        flags = 0
        if present is not None and not present[:, j].all():
            packed = zlib.compress(np.packbits(present[:, j]).tobytes(), level, wbits=-15)
            mask = struct.pack("<I", len(packed)) + packed
            flags |= _MASK
        if changing[j] == 0:
            payload = struct.pack("<q", int(values[0, j]) if length else 0)
            flags |= _CONST
        else:
            code = 0 if top[j] < 1 << 8 else 1 if top[j] < 1 << 16 else 2 if top[j] < 1 << 32 else 3
            flags |= code
            payload = zlib.compress(zz[j].astype(_WIDTHS[code]).tobytes(), level, wbits=-15)
        chunks.append(bytes((flags,)) + mask + payload)
    head = _BLOCK_HEAD.pack(BLOCK_VERSION, rows, columns, stats)
    sizes = struct.pack(f"<{columns}I", *map(len, chunks))
    return head + sizes + b"".join(chunks)


def _fill_gaps(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Missing values repeat the one before (so they cost a zero delta)."""
    rows = present.shape[0]
    stats = values.shape[0] // rows
    idx = np.where(present, np.arange(rows)[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = values.copy()
    for s in range(stats):
        part = values[s * rows : (s + 1) * rows]
        filled[s * rows : (s + 1) * rows] = np.take_along_axis(part, idx, axis=0)
    return filled


def stats_to_stored(stats: np.ndarray) -> np.ndarray:
    """Roll-up stats (4, rows, k) min, max, sum, count -> what a block stores:
    min, max - min, sum - count * min, count. The same numbers, smaller: the
    range and the excess over the minimum vary far less than max and sum do
    (about 20 % fewer bytes on the simulator's float charge)."""
    low, high, total, count = stats
    return np.stack((low, high - low, total - count * low, count))


def stats_from_stored(stored: np.ndarray) -> np.ndarray:
    """The inverse of ``stats_to_stored``."""
    low, spread, excess, count = stored
    return np.stack((low, low + spread, excess + count * low, count))


def block_shape(data: bytes) -> tuple[int, int, int]:
    """(rows, columns, stats) of a block."""
    try:
        version, rows, columns, stats = _BLOCK_HEAD.unpack_from(data)
    except struct.error as exc:
        raise CorruptBlock(f"block header: {exc}") from exc
    if version != BLOCK_VERSION:
        raise CorruptBlock(f"block version {version}")
    return rows, columns, stats


def decode_block(
    data: bytes, columns: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """-> (values (stats, rows, k) int64, present (rows, k) bool) for the
    chosen columns (all when None), in the order asked."""
    rows, ncols, stats = block_shape(data)
    wanted = range(ncols) if columns is None else columns
    try:
        sizes = struct.unpack_from(f"<{ncols}I", data, _BLOCK_HEAD.size)
        offsets = list(accumulate(sizes, initial=_BLOCK_HEAD.size + 4 * ncols))
        length = rows * stats
        out = np.zeros((len(wanted), length), dtype=np.int64)
        present = np.ones((rows, len(wanted)), dtype=bool)
        packed: dict[int, tuple[list[int], list[bytes]]] = {}  # by width: columns, bytes
        for k, j in enumerate(wanted):
            if j >= ncols:  # a cell this block did not have: all missing
                present[:, k] = False
                continue
            start, end = offsets[j], offsets[j + 1]
            flags = data[start]
            pos = start + 1
            if flags & _MASK:
                (mlen,) = struct.unpack_from("<I", data, pos)
                bits = zlib.decompress(data[pos + 4 : pos + 4 + mlen], wbits=-15)
                mask = np.unpackbits(np.frombuffer(bits, np.uint8), count=rows)
                present[:, k] = mask.astype(bool)
                pos += 4 + mlen
            if flags & _CONST:
                out[k] = struct.unpack_from("<q", data, pos)[0]
                continue
            group = packed.setdefault(flags & 3, ([], []))
            group[0].append(k)
            group[1].append(zlib.decompress(data[pos:end], wbits=-15))
        # one vectorised pass per width: zig-zag back to signed, then the running sum
        for code, (ks, chunks) in packed.items():
            raw = b"".join(chunks)
            if len(raw) != len(ks) * length * _WIDTHS[code].itemsize:
                raise CorruptBlock(f"block: {len(raw)} bytes for {len(ks)} columns of {length}")
            zz = np.frombuffer(raw, _WIDTHS[code]).reshape(len(ks), length).astype(np.int64)
            out[ks] = np.cumsum((zz >> 1) ^ -(zz & 1), axis=1)
    except (struct.error, zlib.error, ValueError, IndexError) as exc:
        raise CorruptBlock(f"block: {exc}") from exc
    return out.T.reshape(stats, rows, len(wanted)), present
