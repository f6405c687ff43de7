"""From one request to the bytes a BM-SM would put on the wire, faults
included, and the ground-truth record of what was served.

A reply leaves when the wire allows plus a delay: the slave's own lateness
(``delay_s``, every reply of that slave: a slow device or converter) and a
LATE fault's (that reply only). A SWAPPED fault sends the frame this slave
sent for its previous request instead of this one's, as a reply that has
fallen one transaction behind would arrive."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from btms_gateway.protocols.rtu import framing

from .faults import Fault, FaultPlan, Injected
from .model import StringModel

ILLEGAL_FUNCTION, ILLEGAL_DATA_ADDRESS = 1, 2


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """What one reply contained: ``words`` is None when no data was served
    (a fault, an exception); ``fault`` names the injected fault if any.
    A late reply keeps its words (fault "late"), and so does one holding
    zeros that are no cell's values: cells not measured yet ("unmeasured") or
    past the count, read as 0 ("past_count")."""

    at: float
    slave: int
    address: int
    count: int
    words: tuple[int, ...] | None
    fault: str | None = None
    exception: int | None = None


class Responder:
    def __init__(
        self, models: dict[int, StringModel], plans: dict[int, FaultPlan], rng: random.Random,
        log_size: int,
    ) -> None:  # fmt: skip
        self.models = models
        self.plans = plans
        self.rng = rng
        self.lock = threading.RLock()
        self.log: deque[TruthRecord] = deque(maxlen=log_size)
        self.vanished_until: dict[int, float] = {}
        #: per slave: how much later than the wire allows every reply leaves
        self.delay_s: dict[int, float] = {}
        self._previous: dict[int, bytes] = {}  # per slave: the last frame it sent
        self.requests = 0
        self.faults: dict[Fault, int] = dict.fromkeys(Fault, 0)

    def handle(self, req: framing.Request) -> tuple[bytes | None, float]:
        """The reply frame for ``req`` (None: stay silent) and how much later
        than the wire allows it leaves."""
        with self.lock:
            model = self.models.get(req.slave)
            if model is None:
                return None, 0.0  # another device's address on a shared bus
            self.requests += 1
            now = time.time()
            if self.vanished_until.get(req.slave, 0.0) > now:
                self._record(req, None, Fault.VANISH)
                return None, 0.0
            inj = self.plans[req.slave].next()
            if inj is not None:
                self.faults[inj.fault] += 1
            delay = self.delay_s.get(req.slave, 0.0)
            if inj is not None and inj.fault is Fault.LATE:
                delay += inj.delay_s
            frame = self._reply(model, req, inj, now, late=delay > 0)
            if frame is not None and inj is not None and inj.fault is Fault.SWAPPED:
                frame, self._previous[req.slave] = self._previous.get(req.slave, frame), frame
            elif frame is not None:
                self._previous[req.slave] = frame
            return frame, delay

    def _reply(
        self, model: StringModel, req: framing.Request, inj: Injected | None, now: float,
        late: bool = False,
    ) -> bytes | None:  # fmt: skip
        fault = inj.fault if inj else None
        if inj is not None and fault is Fault.VANISH:  # (a fault comes with its injection)
            self.vanished_until[req.slave] = now + inj.seconds
            self._record(req, None, fault)
            return None
        if fault is Fault.NO_REPLY:
            self._record(req, None, fault)
            return None
        if inj is not None and fault is Fault.CELL_COUNT:
            n = inj.cells
            if n is None:
                n = len(model.cells) + self.rng.choice((-3, -1, 1, 3))
            model.set_cell_count(n, inj.unmeasured_s)
            fault = None  # the reply itself is good
        if fault is Fault.LATE:
            fault = None  # the reply is good, only late (recorded as such below)
        if inj is not None and fault is Fault.EXCEPTION:
            self._record(req, None, fault, inj.code)
            return framing.exception_reply(req.slave, req.function, inj.code)
        if req.function != framing.READ_HOLDING:
            self._record(req, None, None, ILLEGAL_FUNCTION)
            return framing.exception_reply(req.slave, req.function, ILLEGAL_FUNCTION)
        words = model.read(req.address, req.count) if 1 <= req.count <= 125 else None
        if words is None:
            self._record(req, None, None, ILLEGAL_DATA_ADDRESS)
            return framing.exception_reply(req.slave, req.function, ILLEGAL_DATA_ADDRESS)
        frame = framing.read_reply(req.slave, words)
        zeros = model.zero_filled(req.address, req.count) if fault is None else None
        if fault is None and late:
            self._record(req, tuple(words), Fault.LATE)
        elif zeros is not None:
            self._record(req, tuple(words), None, zeros=zeros)
        else:
            self._record(req, None if fault else tuple(words), fault)
        if fault is Fault.BAD_CRC:
            return frame[:-1] + bytes([frame[-1] ^ 0x5A])
        if fault is Fault.TRUNCATED:
            return frame[: self.rng.randrange(1, len(frame) - 1)]
        if fault is Fault.GARBAGE:  # noise glued before or after the frame, same burst
            noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 9)))
            return noise + frame if self.rng.random() < 0.5 else frame + noise
        return frame

    def _record(
        self, req: framing.Request, words: tuple[int, ...] | None, fault: Fault | None,
        exception: int | None = None, zeros: str | None = None,
    ) -> None:  # fmt: skip
        name = zeros or (fault.value if fault else None)
        self.log.append(
            TruthRecord(time.time(), req.slave, req.address, req.count, words, name, exception)
        )  # fmt: skip
