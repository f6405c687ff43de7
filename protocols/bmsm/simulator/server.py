"""The Simulator: string models + faults + an endpoint, served by a background
thread with blocking I/O so it never shares the gateway's event loop.

Timing is the wire's: a request is taken as complete 8 characters after its
first byte arrived, the reply starts one frame gap (3.5 characters, 1.75 ms
above 19200 baud) later, and reply bytes are released no earlier than their
wire time at the configured baud. Nothing else is added but processing time,
unless a slave is set to answer late (``reply_delay_s``, ``set_reply_delay``)
or a LATE fault delays one reply: the simulator then holds the line that much
longer, as a slow device would (requests that arrive meanwhile wait their turn).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import random
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Literal

from btms_gateway.core.api import BusConfig, StringReading
from btms_gateway.protocols.rtu import framing

from ..regmap import DEFAULT_MAP, RegisterMap
from .discharge import DischargeRun
from .endpoints import Endpoint, PtyEndpoint, SerialEndpoint, TcpEndpoint
from .faults import Fault, FaultPlan, Injected
from .model import Mode, StringModel
from .responder import Responder, TruthRecord

__all__ = ["Simulator", "TruthRecord"]

Transport = Literal["pty", "serial", "tcp"]
CHUNK_S = 0.002  # reply bytes are released in chunks of about this much wire time


class Simulator:
    """One bus of simulated BM-SM slaves. Use as a context manager::

    with Simulator(slaves=[1, 2], cells=120, baud=115200, seed=1) as sim:
        bus = sim.bus_config()          # a BusConfig pointing at sim.port
        sim.set_cell(1, 5, voltage_v=2.271)

    ``regmap``: the register map the slaves serve (one for all, or one per
    slave id; the default table when not given), e.g. an override's effective
    map, to serve a firmware whose registers are elsewhere. ``weak_cells``
    (1-based; for all slaves or per slave id): the weak cells, less capacity
    and more resistance (None: one drawn per slave, as always); ``rated_ah``:
    each string's capacity to 1.75 V at its 10-hour rate.
    """

    def __init__(
        self,
        slaves: Iterable[int] = (1,),
        cells: int | dict[int, int] = 120,
        *,
        baud: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        seed: int = 0,
        mode: Mode = "float",
        transport: Transport = "pty",
        port: str | None = None,
        link: str | None = None,
        host: str = "127.0.0.1",
        tcp_port: int = 0,
        rates: dict[Fault, float] | None = None,
        vanish_s: float = 5.0,
        late_s: float = 0.25,
        unmeasured_s: float = 0.0,
        reply_delay_s: float = 0.0,
        past_count: Literal["zero", "exception"] = "zero",
        frozen: bool = False,
        step_s: float = 1.0,
        log_size: int = 10_000,
        regmap: RegisterMap | Mapping[int, RegisterMap] | None = None,
        weak_cells: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
        rated_ah: float = 100.0,
    ) -> None:
        self.baud, self.parity, self.stopbits, self.bytesize = baud, parity, stopbits, bytesize
        self.transport: Transport = transport
        self._ep_args = (port, link, host, tcp_port)
        self.step_s = step_s
        bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        self.char_s = bits / baud
        self.gap_s = 0.00175 if baud > 19200 else 3.5 * self.char_s
        rng = random.Random(seed)
        models, plans = {}, {}
        for s in slaves:
            n = cells[s] if isinstance(cells, dict) else cells
            served = regmap.get(s, DEFAULT_MAP) if isinstance(regmap, Mapping) else regmap
            weak = weak_cells.get(s) if isinstance(weak_cells, Mapping) else weak_cells
            models[s] = StringModel.create(
                s, n, seed, mode, weak, past_count=past_count, frozen=frozen,
                regmap=served or DEFAULT_MAP, rated_ah=rated_ah,
            )  # fmt: skip
            plans[s] = FaultPlan(
                random.Random(seed * 7919 + s), dict(rates or {}), vanish_s, late_s, unmeasured_s
            )
        self.responder = Responder(models, plans, rng, log_size)
        if reply_delay_s:
            self.responder.delay_s = dict.fromkeys(models, reply_delay_s)
        self.endpoint: Endpoint | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._wake_r, self._wake_w = -1, -1

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Simulator:
        port, link, host, tcp_port = self._ep_args
        if self.transport == "pty":
            self.endpoint = PtyEndpoint(link)
        elif self.transport == "serial":
            if not port:
                raise ValueError("transport 'serial' needs port=")
            self.endpoint = SerialEndpoint(
                port, self.baud, self.parity, self.stopbits, self.bytesize
            )
        else:
            self.endpoint = TcpEndpoint(host, tcp_port)
        self._wake_r, self._wake_w = os.pipe()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bmsm-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._thread = None
        if self.endpoint is not None:
            self.endpoint.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where clients connect ---------------------------------------------------
    @property
    def port(self) -> str:
        """The serial path a client opens (the pty's slave or its symlink), or
        HOST:PORT for TCP."""
        return self._started().client_path

    def _started(self) -> Endpoint:
        assert self.endpoint is not None, "start() the simulator first"
        return self.endpoint

    @property
    def tcp_address(self) -> tuple[str, int]:
        assert isinstance(self.endpoint, TcpEndpoint), "not a TCP simulator"
        return self.endpoint.address

    def bus_config(self, name: str = "bus1", **overrides: Any) -> BusConfig:
        """A BusConfig with this simulator's line settings."""
        kw: dict[str, Any] = {
            "name": name, "baudrate": self.baud, "parity": self.parity,
            "stopbits": self.stopbits, "bytesize": self.bytesize,
        }  # fmt: skip
        if self.transport == "tcp":
            kw |= {"transport": "rtu-over-tcp", "host": self.tcp_address[0],
                   "tcp_port": self.tcp_address[1]}  # fmt: skip
        else:
            kw["port"] = self.port
        return BusConfig(**(kw | overrides))

    # -- ground truth and control (thread-safe) --------------------------------
    def model(self, slave: int) -> StringModel:
        return self.responder.models[slave]

    def _locked(self, fn: Callable[[], Any]) -> Any:
        with self.responder.lock:
            return fn()

    def set_cell(self, slave: int, index: int, **values: Any) -> None:
        self._locked(lambda: self.model(slave).set_cell(index, **values))

    def set_string(self, slave: int, **values: Any) -> None:
        self._locked(lambda: self.model(slave).set_string(**values))

    def set_cell_count(self, slave: int, count: int, unmeasured_s: float = 0.0) -> None:
        """Auto-addressing finds ``count`` cells; added ones read 0 for
        ``unmeasured_s`` seconds (not measured yet)."""
        self._locked(lambda: self.model(slave).set_cell_count(count, unmeasured_s))

    def set_reply_delay(self, slave: int, seconds: float) -> None:
        """Every reply of ``slave`` leaves this much later than the wire allows
        (0: on time again), like a slow device or converter."""
        self._locked(lambda: self.responder.delay_s.__setitem__(slave, seconds))

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) the slow dynamics so values stay exactly as set."""
        for m in self.responder.models.values():
            self._locked(functools.partial(setattr, m, "frozen", frozen))

    def poke(self, slave: int, address: int, words: Sequence[int | None]) -> None:
        """Serve these raw words from ``address`` on instead of the truth's (a
        corrupted register, a firmware bug); None: the truth's word again."""
        self._locked(lambda: self.model(slave).poke(address, words))

    def registers(self, slave: int, address: int, count: int) -> list[int] | None:
        """The words a read would get now (None: the device answers exception 02)."""
        return self._locked(lambda: self.model(slave).read(address, count))

    def expected(self, slave: int) -> StringReading:
        """The reading a correct poller publishes now (read_at = 0)."""
        return self._locked(lambda: self.model(slave).expected_reading())

    def inject(
        self, slave: int, fault: Fault, times: int = 1, *, after: int = 0, **kw: Any
    ) -> None:
        """Queue ``fault`` for ``times`` requests to ``slave``, after ``after``
        clean replies (after=1: the second request of the next poll)."""
        plan = self.responder.plans[slave]
        items = [None] * after + [Injected(Fault(fault), **kw)] * times
        self._locked(lambda: plan.queued.extend(items))

    def set_rates(
        self,
        slave: int,
        rates: dict[Fault, float],
        *,
        late_s: float | None = None,
        unmeasured_s: float | None = None,
    ) -> None:
        """Random faults for ``slave`` from now on (probability per request);
        ``late_s``: how late a LATE fault's reply is, ``unmeasured_s``: how long
        cells a CELL_COUNT fault adds read 0."""
        plan = self.responder.plans[slave]

        def apply() -> None:
            plan.rates = dict(rates)
            if late_s is not None:
                plan.late_s = late_s
            if unmeasured_s is not None:
                plan.unmeasured_s = unmeasured_s

        self._locked(apply)

    def start_discharge(self, slave: int, current_a: float, **kw: Any) -> DischargeRun:
        """Run a lead-acid discharge on ``slave`` (StringModel.start_discharge)."""
        return self._locked(lambda: self.model(slave).start_discharge(current_a, **kw))

    def stop_discharge(self, slave: int) -> DischargeRun | None:
        return self._locked(lambda: self.model(slave).stop_discharge())

    def set_runaway(self, slave: int, cell: int | None) -> None:
        """Start (a 1-based cell) or end (None) a thermal runaway on float charge."""
        self._locked(lambda: setattr(self.model(slave), "runaway", cell))

    def runs(self, slave: int) -> list[DischargeRun]:
        """The discharges ``slave`` ran (the last one may still run): their truth."""
        return self._locked(lambda: list(self.model(slave).runs))

    def vanish(self, slave: int, seconds: float | None = None) -> None:
        """The slave stops answering (for ``seconds``, or until restore())."""
        until = float("inf") if seconds is None else time.time() + seconds
        self._locked(lambda: self.responder.vanished_until.__setitem__(slave, until))

    def restore(self, slave: int) -> None:
        self._locked(lambda: self.responder.vanished_until.pop(slave, None))

    @property
    def truth_log(self) -> list[TruthRecord]:
        """What each reply contained, oldest first (bounded)."""
        return self._locked(lambda: list(self.responder.log))

    def unplug(self) -> None:
        """Pull the "adapter": the pty (and its symlink) disappears."""
        self._call(lambda: self._started().unplug())

    def replug(self) -> None:
        self._call(lambda: self._started().replug())

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self._thread is None:
            return fn()
        fut: Future[Any] = Future()
        self._calls.put((fn, fut))
        os.write(self._wake_w, b"c")
        return fut.result(timeout=5)

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        buf = bytearray()
        first_at = 0.0
        next_step = time.monotonic() + self.step_s
        while not self._stop.is_set():
            ep = self.endpoint
            assert ep is not None
            timeout = max(0.0, next_step - time.monotonic())
            readable, _, _ = select.select([self._wake_r, *ep.fds()], [], [], timeout)
            now = time.monotonic()
            for fd in readable:
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                    self._run_calls()
                    buf.clear()
                    continue
                data = ep.readable(fd)
                if data:
                    if not buf:
                        first_at = now
                    buf += data
            while len(buf) >= framing.REQUEST_LENGTH:
                req = framing.parse_request(bytes(buf[: framing.REQUEST_LENGTH]))
                if req is None:
                    buf.clear()  # not a request frame: noise, drop it whole
                    break
                del buf[: framing.REQUEST_LENGTH]
                reply, delay = self.responder.handle(req)
                if reply is not None:
                    start = first_at + framing.REQUEST_LENGTH * self.char_s + self.gap_s
                    self._send_paced(ep, reply, start + delay)
                first_at = time.monotonic()
            if now >= next_step:
                self._locked(self._step_models)
                next_step = now + self.step_s

    def _step_models(self) -> None:
        for m in self.responder.models.values():
            m.step(self.step_s)

    def _run_calls(self) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except Exception as exc:
                fut.set_exception(exc)

    def _send_paced(self, ep: Endpoint, data: bytes, start: float) -> None:
        """Release each chunk no earlier than the time its last byte would have
        left a UART at this baud rate."""
        chunk = max(1, int(CHUNK_S / self.char_s))
        for i in range(0, len(data), chunk):
            piece = data[i : i + chunk]
            due = start + (i + len(piece)) * self.char_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ep.write(piece)
