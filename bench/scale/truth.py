"""The soak's ground truth and its judges: the schedule of values each
simulated string held, and the checks of what the gateway served against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Truth:
    """Each string's schedule: value -> (set at, replaced at)."""

    held: dict[str, dict[float, list[float]]] = field(default_factory=dict)
    vanishes: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end

    def set(self, name: str, value: float, before: float, after: float) -> None:
        hist = self.held.setdefault(name, {})
        for span in hist.values():
            if span[1] == float("inf"):
                span[1] = after  # replaced no later than this
        hist[value] = [before, float("inf")]


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


def check_transitions(
    rec: Any, truth: Truth, logs: dict[str, list[Any]], limit_stale_s: float
) -> dict[str, Any]:
    """Per vanish: time to leave GOOD; after restore: GOOD before the second
    block read that followed a clean first poll."""
    slow_stale, slow_good, n = [], [], 0
    for name, start, end in truth.vanishes:
        n += 1
        if quality_at(rec.events, name, start) != "GOOD":
            left: float | None = start  # already not GOOD (a failed poll just before)
        else:
            left = next(
                (t for t, nm, q in rec.events if nm == name and t >= start and q != "GOOD"), None
            )
        if left is None or left - start > limit_stale_s:
            slow_stale.append((name, start, None if left is None else left - start))
        blocks = [r for r in logs[name] if r.at >= end and r.address == 0 and r.words is not None]
        back = next((t for t, nm, q in rec.events if nm == name and t >= end and q == "GOOD"), None)
        if len(blocks) < 2:
            continue
        first_poll = [r for r in logs[name] if blocks[0].at <= r.at < blocks[1].at]
        clean = all(r.fault is None and r.words is not None for r in first_poll)
        if clean and (back is None or back > blocks[1].at):
            slow_good.append((name, end, back, blocks[0].at, blocks[1].at))
    return {"vanishes": n, "slow_stale": slow_stale, "slow_good": slow_good}
