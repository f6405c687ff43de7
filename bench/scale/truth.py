"""The soak's ground truth and its judges: the schedule of values each
simulated string held, and the checks of what the gateway served against it."""

from __future__ import annotations

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


class ValueCheck:
    """Checks served values as they come (so memory stays flat over a long soak).

    A value's "replaced at" is only ever set after it was replaced, so a value
    checked before that moment cannot be judged late later on."""

    def __init__(self, truth: Truth, window_s: float) -> None:
        self.truth, self.window_s = truth, window_s
        self.served = self.good = 0
        self.wrong: list[Seen] = []
        self.stale_fresh: list[tuple[Seen, float]] = []
        self.worst = 0.0

    def consume(self, seen: list[Seen]) -> None:
        batch = seen[:]
        del seen[: len(batch)]
        for s in batch:
            self.served += 1
            if s.value is None:
                continue
            span = self.truth.held[s.name].get(round(s.value, 2))
            if span is None or span[0] > s.got:
                self.wrong.append(s)
                continue
            if s.good:
                self.good += 1
                late = s.asked - span[1]  # how long ago the device had already replaced it
                self.worst = max(self.worst, late)
                if late > self.window_s:
                    self.stale_fresh.append((s, late))

    def result(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "good": self.good,
            "wrong": self.wrong,
            "stale_fresh": self.stale_fresh,
            "worst_late_s": self.worst,
        }


def quality_at(events: list[tuple[float, str, str]], name: str, t: float) -> str:
    q = "OFFLINE"
    for at, nm, quality in events:
        if at > t:
            break
        if nm == name:
            q = quality
    return q


class TransitionCheck:
    """Per vanish: time to leave GOOD; after restore: GOOD before the second
    block read that followed a clean first poll.

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
        blocks = [r for r in log if r.at >= end and r.address == 0 and r.words is not None]
        back = next((t for t, nm, q in events if nm == name and t >= end and q == "GOOD"), None)
        if len(blocks) < 2:
            return  # not polled twice since: no verdict on the recovery (counted apart)
        self.recoveries += 1
        first_poll = [r for r in log if blocks[0].at <= r.at < blocks[1].at]
        clean = all(r.fault is None and r.words is not None for r in first_poll)
        if clean and (back is None or back > blocks[1].at):
            self.slow_good.append((name, end, back, blocks[0].at, blocks[1].at))

    def result(self) -> dict[str, Any]:
        return {
            "vanishes": self.vanishes,
            "recoveries": self.recoveries,
            "slow_stale": self.slow_stale,
            "slow_good": self.slow_good,
        }
