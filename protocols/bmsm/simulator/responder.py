"""From one request to the bytes a BM-SM would put on the wire, faults
included, and the ground-truth record of what was served."""

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
    (a fault, an exception); ``fault`` names the injected fault if any."""

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
        self.requests = 0
        self.faults: dict[Fault, int] = dict.fromkeys(Fault, 0)

    def handle(self, req: framing.Request) -> bytes | None:
        """The reply frame for ``req`` (None: stay silent)."""
        with self.lock:
            model = self.models.get(req.slave)
            if model is None:
                return None  # another device's address on a shared bus
            self.requests += 1
            now = time.time()
            if self.vanished_until.get(req.slave, 0.0) > now:
                self._record(req, None, Fault.VANISH)
                return None
            inj = self.plans[req.slave].next()
            if inj is not None:
                self.faults[inj.fault] += 1
            return self._reply(model, req, inj, now)

    def _reply(
        self, model: StringModel, req: framing.Request, inj: Injected | None, now: float
    ) -> bytes | None:
        fault = inj.fault if inj else None
        if fault is Fault.VANISH:
            self.vanished_until[req.slave] = now + inj.seconds  # type: ignore[union-attr]
            self._record(req, None, fault)
            return None
        if fault is Fault.NO_REPLY:
            self._record(req, None, fault)
            return None
        if fault is Fault.CELL_COUNT:
            n = inj.cells  # type: ignore[union-attr]
            if n is None:
                n = len(model.cells) + self.rng.choice((-3, -1, 1, 3))
            model.set_cell_count(n)
            fault = None  # the reply itself is good
        if fault is Fault.EXCEPTION:
            self._record(req, None, fault, inj.code)  # type: ignore[union-attr]
            return framing.exception_reply(req.slave, req.function, inj.code)  # type: ignore[union-attr]
        if req.function != framing.READ_HOLDING:
            self._record(req, None, None, ILLEGAL_FUNCTION)
            return framing.exception_reply(req.slave, req.function, ILLEGAL_FUNCTION)
        words = model.read(req.address, req.count) if 1 <= req.count <= 125 else None
        if words is None:
            self._record(req, None, None, ILLEGAL_DATA_ADDRESS)
            return framing.exception_reply(req.slave, req.function, ILLEGAL_DATA_ADDRESS)
        frame = framing.read_reply(req.slave, words)
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
        exception: int | None = None,
    ) -> None:  # fmt: skip
        self.log.append(
            TruthRecord(time.time(), req.slave, req.address, req.count, words,
                        fault.value if fault else None, exception)
        )  # fmt: skip
