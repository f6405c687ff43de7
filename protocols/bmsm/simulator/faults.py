"""Fault injection: on demand (tests queue exactly the fault they check) and at
configured rates (seeded, so a run with the same seed fails the same way)."""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field


class Fault(enum.StrEnum):
    BAD_CRC = "bad_crc"  # the reply's CRC is wrong
    NO_REPLY = "no_reply"  # the request is ignored
    TRUNCATED = "truncated"  # the reply stops part-way
    GARBAGE = "garbage"  # noise bytes glued before or after the reply, in the same burst
    EXCEPTION = "exception"  # a Modbus exception reply (code 04 unless given)
    VANISH = "vanish"  # the slave stops answering for a while, then comes back
    CELL_COUNT = "cell_count"  # auto-addressing finds more or fewer cells
    LATE = "late"  # the reply is good but leaves ``delay_s`` later than it would
    SWAPPED = "swapped"  # the reply this slave gave to its previous request, again


@dataclass(frozen=True, slots=True)
class Injected:
    fault: Fault
    code: int = 4  # EXCEPTION: the exception code
    cells: int | None = None  # CELL_COUNT: the new count (None: random +-)
    seconds: float = 5.0  # VANISH: how long the slave is gone
    delay_s: float = 0.25  # LATE: how much later than the wire allows the reply leaves
    unmeasured_s: float = 0.0  # CELL_COUNT: added cells read 0 this long (not yet measured)


@dataclass
class FaultPlan:
    """Faults for one slave: queued ones first, then random ones at ``rates``
    (probability per request, 0..1; they add up, so at most one per request)."""

    rng: random.Random
    rates: dict[Fault, float] = field(default_factory=dict)
    vanish_s: float = 5.0
    late_s: float = 0.25
    unmeasured_s: float = 0.0
    queued: deque[Injected | None] = field(default_factory=deque)  # None: a clean reply

    def next(self) -> Injected | None:
        if self.queued:
            return self.queued.popleft()
        draw, acc = self.rng.random(), 0.0  # one draw per request: rates add up
        for fault, rate in self.rates.items():
            acc += rate
            if draw < acc:
                return Injected(
                    fault,
                    seconds=self.vanish_s,
                    delay_s=self.late_s,
                    unmeasured_s=self.unmeasured_s,
                )
        return None


def parse_rates(items: list[str] | tuple[str, ...]) -> dict[Fault, float]:
    """``["bad_crc=0.01", "no_reply=0.02"]`` -> rates; clear errors for typos."""
    rates: dict[Fault, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            fault = Fault(name.strip())
        except ValueError:
            names = ", ".join(f.value for f in Fault)
            raise ValueError(f"unknown fault {name!r}; one of {names}") from None
        try:
            rate = float(value) if sep else float("nan")
        except ValueError:
            rate = float("nan")
        if not 0 <= rate <= 1:
            raise ValueError(f"{item!r}: expected NAME=RATE with RATE between 0 and 1")
        rates[fault] = rate
    return rates
