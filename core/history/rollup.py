"""Everything derived from raw readings when a raw period closes: the
1-minute and 1-hour roll-ups, the resistance changes and the discharge runs.

Roll-ups keep min, max, sum and count as integers, so the mean (sum / count)
is exact and an hour is exactly the merge of its minutes: a test can check
every tier against the raw data it came from. A bucket with count 0 had no
measured value (its min, max and sum are 0 and mean nothing).
"""

from __future__ import annotations

import numpy as np

from .codec import NULL

STATS = ("min", "max", "sum", "count")
_BIG = np.iinfo(np.int64).max


def bucket_starts(t_ms: np.ndarray, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(first row index of each bucket, bucket start times) for sorted times."""
    b = t_ms // step_ms
    first = np.flatnonzero(np.diff(b, prepend=b[0] - 1)) if len(b) else np.zeros(0, np.int64)
    return first, b[first] * step_ms


def rollup_raw(t_ms: np.ndarray, values: np.ndarray, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw rows (n, k) int32 with NULL -> (bucket starts (m,), (4, m, k) int64)."""
    first, starts = bucket_starts(t_ms, step_ms)
    present = values != NULL
    v = values.astype(np.int64)
    out = np.empty((4, len(first), values.shape[1]), dtype=np.int64)
    out[0] = np.minimum.reduceat(np.where(present, v, _BIG), first, axis=0)
    out[1] = np.maximum.reduceat(np.where(present, v, -_BIG), first, axis=0)
    out[2] = np.add.reduceat(np.where(present, v, 0), first, axis=0)
    out[3] = np.add.reduceat(present.astype(np.int64), first, axis=0)
    return starts, _zero_empty(out)


def rollup_stats(
    t_ms: np.ndarray, stats: np.ndarray, step_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Roll-up rows (4, n, k) -> coarser buckets (4, m, k): the exact merge."""
    first, starts = bucket_starts(t_ms, step_ms)
    some = stats[3] > 0
    out = np.empty((4, len(first), stats.shape[2]), dtype=np.int64)
    out[0] = np.minimum.reduceat(np.where(some, stats[0], _BIG), first, axis=0)
    out[1] = np.maximum.reduceat(np.where(some, stats[1], -_BIG), first, axis=0)
    out[2] = np.add.reduceat(stats[2], first, axis=0)
    out[3] = np.add.reduceat(stats[3], first, axis=0)
    return starts, _zero_empty(out)


def _zero_empty(out: np.ndarray) -> np.ndarray:
    empty = out[3] == 0
    out[0][empty] = 0
    out[1][empty] = 0
    return out


def changes(
    t_ms: np.ndarray, values: np.ndarray, before: np.ndarray
) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """Rows where a column's measured value differs from the last one measured
    (``before``: the last value per column, NULL for none yet).
    -> ([(column, t_ms, value)], last value per column)."""
    present = values != NULL
    rows, cols = values.shape
    width = max(cols, len(before))
    prev = np.full(width, NULL, dtype=np.int64)
    prev[: len(before)] = before
    out: list[tuple[int, int, int]] = []
    if rows == 0:
        return out, prev
    # the last measured value before each row, per column (forward fill)
    idx = np.where(present, np.arange(rows)[:, None], -1)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = np.take_along_axis(values.astype(np.int64), np.maximum(idx, 0), axis=0)
    filled[idx < 0] = NULL
    earlier = np.vstack((prev[None, :cols], filled[:-1]))
    earlier = np.where(earlier == NULL, prev[None, :cols], earlier)
    changed = present & (values != earlier)
    for r, c in zip(*np.nonzero(changed), strict=True):
        out.append((int(c), int(t_ms[r]), int(values[r, c])))
    last = filled[-1]
    prev[:cols] = np.where(last == NULL, prev[:cols], last)
    return out, prev


def runs_below(t_ms: np.ndarray, values: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """[(first t, last t)] of the runs of rows whose measured value is below
    ``limit`` (a row without a value ends a run)."""
    below = (values != NULL) & (values < limit)
    if not below.any():
        return []
    edges = np.diff(np.concatenate(([0], below.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(t_ms[a]), int(t_ms[b])) for a, b in zip(starts, ends, strict=True)]
