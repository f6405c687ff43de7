"""What a bus logs about its communication: lines an operator can act on.

One line when the state of the port changes (unavailable, lost, back), with
its cause; while something keeps failing, at most one summary line per
``summary_s`` for the whole bus, with counts by cause; never a line per poll.
A string's own quality transitions (GOOD -> STALE -> OFFLINE and back) are
logged by the engine, each once with its cause; a string that never answered
has no transition to log (it starts OFFLINE), so the engine says so once.

Everything here runs in the bus's own thread (core/engine.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .counters import CommCounters
from .profiles import ErrorKind

log = logging.getLogger("btms_gateway.engine")

#: at most one summary line per bus this often while something keeps failing
SUMMARY_S = 60.0


@dataclass
class _Watched:
    name: str
    counters: CommCounters
    polls: int = 0
    failed: dict[ErrorKind, int] | None = None  # polls_failed_by at the last summary


class BusLog:
    """The port's state and the summary of a bus's failed polls.

    ``port_failed`` for an open that failed or a port lost in a transaction,
    ``port_opened`` for an open that worked, ``port_working`` once a
    transaction went through an open port (a converter that accepts the
    connection and closes it never gets there), ``cycle`` after each cycle
    (it writes the summary when one is due)."""

    def __init__(
        self, bus: str, strings: Iterable[tuple[str, CommCounters]], summary_s: float | None = None
    ) -> None:
        self.bus = bus
        self.summary_s = SUMMARY_S if summary_s is None else summary_s
        self.port_ok: bool | None = None  # None: not known yet (start)
        self._down_since = 0.0
        self._down_attempts = 0  # port failures since it became unavailable
        self._attempts = 0  # of them, since the last summary
        self._opened = 0  # of them, after the port had opened
        self._causes: Counter[str] = Counter()
        self._strings = [_Watched(name, c) for name, c in strings]
        self._last_summary = time.monotonic()
        self._mark()

    def _mark(self) -> None:
        for w in self._strings:
            w.polls, w.failed = w.counters.polls, dict(w.counters.polls_failed_by)

    # -- the port ----------------------------------------------------------------
    def port_failed(self, detail: str) -> None:
        if self.port_ok is False:
            self._attempts += 1
            self._down_attempts += 1
            self._causes[detail] += 1
            return
        if self.port_ok is None:
            log.warning("bus %s: port unavailable: %s; trying again every cycle", self.bus, detail)
        else:
            log.warning("bus %s: port lost: %s; reopening every cycle", self.bus, detail)
        self.port_ok = False
        self._down_since = time.monotonic()
        self._attempts, self._opened, self._causes = 1, 0, Counter({detail: 1})
        self._down_attempts = 1

    def port_opened(self) -> None:
        if self.port_ok is False:
            self._opened += 1

    def port_working(self) -> None:
        if self.port_ok is False:
            down = time.monotonic() - self._down_since
            log.info(
                "bus %s: port working again after %.0f s (%d failed attempts)",
                self.bus,
                down,
                self._down_attempts,
            )
        self.port_ok = True

    # -- the summary ---------------------------------------------------------------
    def cycle(self) -> None:
        now = time.monotonic()
        if now - self._last_summary < self.summary_s:
            return
        span = now - self._last_summary
        parts = []
        if self.port_ok is False and self._attempts:
            causes = "; ".join(f"{d} (x{n})" for d, n in self._causes.most_common(3))
            opened = f" (it opened {self._opened} times in between)" if self._opened else ""
            parts.append(
                f"port unavailable for {now - self._down_since:.0f} s, "
                f"{self._attempts} failures{opened}: {causes}"
            )
            self._attempts, self._opened, self._causes = 0, 0, Counter()
        failing = []
        for w in self._strings:
            c, before = w.counters, w.failed or {}
            by = {k: n - before.get(k, 0) for k, n in c.polls_failed_by.items()}
            failed = sum(by.values())
            if failed:
                kinds = ", ".join(f"{k.value} {n}" for k, n in by.items() if n)
                failing.append(f"{w.name} {failed} of {c.polls - w.polls} ({kinds})")
        if failing:
            parts.append("failed polls: " + "; ".join(failing))
        self._mark()
        self._last_summary = now
        if parts:
            log.warning("bus %s: in the last %.0f s: %s", self.bus, span, "; ".join(parts))
