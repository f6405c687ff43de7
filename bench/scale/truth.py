"""The soak's ground truth and its judges: the schedule of values each
simulated string held, and the checks of what the gateway served against it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Truth:
    """Each string's schedule: value -> (set at, replaced at)."""

    held: dict[str, dict[float, list[float]]] = field(default_factory=dict)
    _current: dict[str, list[float]] = field(default_factory=dict)

    def set(self, name: str, value: float, before: float, after: float) -> None:
        span = self._current.get(name)
        if span is not None:
            span[1] = after  # replaced no later than this
        self._current[name] = self.held.setdefault(name, {})[value] = [before, float("inf")]

    def prune(self, replaced_before: float) -> None:
        """Forget values replaced before then: a soak's schedule stays bounded
        (memory flat). A value served after that is judged wrong, which it is
        for any horizon longer than a string can be served stale."""
        for hist in self.held.values():
            for value in [v for v, span in hist.items() if span[1] < replaced_before]:
                del hist[value]


@dataclass
class Seen:
    proto: str
    name: str
    asked: float
    got: float
    good: bool
    value: float | None
    #: cells served with the value: (1-based index, voltage), and the count
    cells: tuple[tuple[int, float | None], ...] = ()
    cell_count: int | None = None


class CellCheck:
    """Cell voltages served as GOOD against what each cell holds. The soak's
    cells are frozen and keep their values when the count changes (a cell
    removed and found again is the same cell), so a cell's truth is one value
    for the whole soak; the count must be one the device had."""

    def __init__(self, volts: dict[str, list[float]], counts: set[int]) -> None:
        self.volts, self.counts = volts, counts
        self.checked = 0
        self.checked_by: dict[str, int] = {}  # protocol -> cell voltages checked
        self.wrong: list[tuple[str, str, int, float | None, float]] = []
        self.wrong_counts: list[tuple[str, str, int | None, int]] = []

    def check(self, s: Seen) -> None:
        if not s.good:
            return
        if s.cell_count is not None and (
            s.cell_count not in self.counts or (s.proto == "rest" and len(s.cells) != s.cell_count)
        ):
            self.wrong_counts.append((s.proto, s.name, s.cell_count, len(s.cells)))
        truth = self.volts[s.name]
        for index, volts in s.cells:
            self.checked += 1
            self.checked_by[s.proto] = self.checked_by.get(s.proto, 0) + 1
            if volts != truth[index - 1]:
                self.wrong.append((s.proto, s.name, index, volts, truth[index - 1]))

    def result(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "checked_by": self.checked_by,
            "wrong": self.wrong,
            "wrong_counts": self.wrong_counts,
        }


class ValueCheck:
    """Checks served values as they come (so memory stays flat over a long soak).

    A value's "replaced at" is only ever set after it was replaced, so a value
    checked before that moment cannot be judged late later on."""

    def __init__(self, truth: Truth, window_s: float, cells: CellCheck | None = None) -> None:
        self.truth, self.window_s, self.cells = truth, window_s, cells
        self.served = self.good = 0
        self.good_by: dict[str, int] = {}  # protocol -> values served as GOOD and checked
        self.wrong: list[Seen] = []
        self.stale_fresh: list[tuple[Seen, float]] = []
        self.worst = 0.0

    def consume(self, seen: list[Seen]) -> None:
        batch = seen[:]
        del seen[: len(batch)]
        for s in batch:
            if self.cells is not None:
                self.cells.check(s)
            self.served += 1
            if s.value is None:
                continue
            span = self.truth.held[s.name].get(round(s.value, 2))
            if span is None or span[0] > s.got:
                self.wrong.append(s)
                continue
            if s.good:
                self.good += 1
                self.good_by[s.proto] = self.good_by.get(s.proto, 0) + 1
                late = s.asked - span[1]  # how long ago the device had already replaced it
                self.worst = max(self.worst, late)
                if late > self.window_s:
                    self.stale_fresh.append((s, late))

    def result(self) -> dict[str, Any]:
        out = {
            "served": self.served,
            "good": self.good,
            "good_by": self.good_by,
            "wrong": self.wrong,
            "stale_fresh": self.stale_fresh,
            "worst_late_s": self.worst,
        }
        if self.cells is not None:
            out["cells"] = self.cells.result()
        return out


CELL_COUNT_WORD = 10  # HR 10 of the string block: the cell count


def _poll_ends(log: list[Any]) -> list[Any]:
    """The string-block replies that end a poll: the gateway could take them
    (not faulty: a late one is dropped) and they report the count the cells
    just read were read for. A block reporting another count is read in the
    middle of a poll: the cells are read again for the new count and the block
    once more after them (protocols/bmsm/poller.py)."""
    ends, cells_for = [], None
    for r in log:
        if r.address != 0:
            cells_for = r.count
        elif r.words is not None and r.fault is None:
            count = r.words[CELL_COUNT_WORD]
            if count == cells_for or (count == 0 and cells_for is None):
                ends.append(r)
            cells_for = None
    return ends


def _poll_of(log: list[Any], end: Any) -> list[Any]:
    """The replies of the poll ``end`` ends: those after the block read before it."""
    at = log.index(end)
    start = next((i + 1 for i in range(at - 1, -1, -1) if log[i].address == 0), 0)
    return log[start : at + 1]


def _clean(poll: list[Any]) -> bool:
    return all(r.fault is None and r.words is not None for r in poll)


def quality_at(events: list[tuple[float, str, str]], name: str, t: float) -> str:
    q = "OFFLINE"
    for at, nm, quality in events:
        if at > t:
            break
        if nm == name:
            q = quality
    return q


class TransitionCheck:
    """Per vanish: time to leave GOOD; after restore: GOOD no later than the
    end of the poll after the first clean poll (a poll ends with the string
    block, read last; it is clean when every reply since the block read
    before it was served whole and on time).

    A vanish is judged once its outcome is settled (``settle_s`` after the
    slave came back), from what the recorder and the simulator's truth log
    hold then, so neither has to keep the whole soak (memory flat)."""

    def __init__(self, limit_stale_s: float, settle_s: float) -> None:
        self.limit_stale_s, self.settle_s = limit_stale_s, settle_s
        self.vanishes = self.recoveries = 0  # recoveries: the vanishes judged on both counts
        self.slow_stale: list[tuple[Any, ...]] = []
        self.slow_good: list[tuple[Any, ...]] = []
        self._pending: list[tuple[str, float, float]] = []

    def vanished(self, name: str, start: float, end: float) -> None:
        self._pending.append((name, start, end))

    def judge(
        self,
        events: list[tuple[float, str, str]],
        log_of: Callable[[str], list[Any]],
        now: float | None = None,
    ) -> None:
        """Judge the vanishes settled by ``now`` (every one left when None)."""
        waiting = []
        for name, start, end in self._pending:
            if now is not None and now < end + self.settle_s:
                waiting.append((name, start, end))
            else:
                self._judge(name, start, end, events, log_of(name))
        self._pending = waiting

    def _judge(
        self, name: str, start: float, end: float, events: list[Any], log: list[Any]
    ) -> None:
        self.vanishes += 1
        if quality_at(events, name, start) != "GOOD":
            left: float | None = start  # already not GOOD (a failed poll just before)
        else:
            left = next(
                (t for t, nm, q in events if nm == name and t >= start and q != "GOOD"), None
            )
        if left is None or left - start > self.limit_stale_s:
            self.slow_stale.append((name, start, None if left is None else left - start))
        since = [r for r in log if r.at >= end]
        back = next((t for t, nm, q in events if nm == name and t >= end and q == "GOOD"), None)
        ends = _poll_ends(since)
        for first, after in itertools.pairwise(ends):
            if _clean(_poll_of(since, first)):
                self.recoveries += 1
                if back is None or back > after.at:
                    self.slow_good.append((name, end, back, first.at, after.at))
                return
        # no clean poll followed by another since: no verdict (counted apart)

    def result(self) -> dict[str, Any]:
        return {
            "vanishes": self.vanishes,
            "recoveries": self.recoveries,
            "slow_stale": self.slow_stale,
            "slow_good": self.slow_good,
        }
