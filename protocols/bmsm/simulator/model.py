"""The ground truth of one simulated BM-SM: SI values a test can read and set,
and the register image encoded from them through the one register table.

Dynamics are slow on purpose (as a real battery room): temperature and SOC
drift, one weak cell's resistance creeps up. ``frozen`` stops them so a test
can compare exact values.

Each cell also has its own capacity (seeded, from a random stream of its
own, so the values the first draws give are what they always were), and
weak cells (``weak_cells``, 1-based; by default one drawn at random) have
less capacity and more resistance. ``start_discharge`` runs a lead-acid
discharge at a constant current (discharge.py): a commanded scenario, so it
advances even when the model is frozen; its truth (Ah, Wh, when each cell
reached the cutoff) is kept in ``runs``.

Auto-addressing (``set_cell_count``) keeps each cell's values: a sensor that
drops out and is found again is the same cell, so a cell's truth does not
depend on how often the count changed. Cells it adds can be "not yet
measured" for a while: their registers read 0 until then, as a device that
has addressed a sensor but not read it yet.

The image is laid out by a register map: the default table, or an
override's effective map (a firmware that keeps its values elsewhere), so a
test can serve a map the gateway's default does not expect. ``pokes`` put raw
words over the image (a firmware bug, a corrupted register) without touching
the truth. Registers the map does not define read 0 inside the string block's
read and, with ``past_count = "zero"``, inside the cell register area (past
the count, between the arrays, where the default table has its arrays);
elsewhere they answer exception 02.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from btms_gateway.core.api import CellStatus, StringReading

from ..decode import decode_reading, encode_block, encode_value
from ..registers import MAX_CELLS
from ..regmap import DEFAULT_MAP, RegisterMap
from .discharge import DischargeRun, cell_voltage, charge_for

Mode = Literal["float", "discharge"]
#: the weak cell drawn by default: +35 % resistance (what every seed has always given)
DRAWN_RESISTANCE = 1.35
#: an injected weak cell (weak_cells): +45 % resistance, 80 % capacity; +45 % keeps it
#: clear of the +25 % median limit even when its own draw was 3 sigma low
WEAK_RESISTANCE = 1.45
WEAK_CAPACITY = 0.80
RUNAWAY_A_PER_S = 0.002
RUNAWAY_C_PER_S = 0.01
CAPACITY_SPREAD = 0.02  # relative standard deviation of healthy cells' capacity


@dataclass(slots=True)
class CellTruth:
    voltage_v: float
    resistance_mohm: float
    temperature_c: float
    soc_pct: float
    soh_pct: float
    status: int = 0
    #: Ah to 1.75 V at the string's rated rate (the truth a capacity test finds)
    capacity_ah: float = 100.0
    #: the charge Q of its discharge curve, and what the running discharge used of it
    charge_ah: float = 0.0
    used_ah: float = 0.0


@dataclass(slots=True)
class StringModel:
    """One slave. Mutate through the Simulator's setters (they lock)."""

    slave: int
    rng: random.Random
    mode: Mode = "float"
    cells: list[CellTruth] = field(default_factory=list)
    string: dict[str, Any] = field(default_factory=dict)
    past_count: Literal["zero", "exception"] = "zero"
    frozen: bool = False
    weak_cell: int = 0  # 0-based index of the cell whose resistance drifts up
    #: 0-based indexes of the weak cells (less capacity, more resistance)
    weak: frozenset[int] = frozenset()
    explicit_weak: bool = False  # weak cells given (else the one drawn: weak_cell)
    rated_ah: float = 100.0  # to 1.75 V at the rated_hours rate
    rated_hours: float = 10.0
    peukert: float = 1.12
    run: DischargeRun | None = None
    #: 1-based cell heating up in a thermal runaway (float current rising with it)
    runaway: int | None = None
    runs: list[DischargeRun] = field(default_factory=list)
    #: cells removed by a smaller count, last removed last: found again as they were
    spares: list[CellTruth] = field(default_factory=list)
    #: 0-based indexes of cells added but not measured yet (their registers read 0)
    unmeasured: frozenset[int] = frozenset()
    unmeasured_until: float = 0.0  # time.time() when they are measured
    #: the register map the image is laid out by
    regmap: RegisterMap = DEFAULT_MAP
    #: address -> raw word served instead of the image's (corrupted registers)
    pokes: dict[int, int] = field(default_factory=dict)
    _image: dict[int, int] | None = None

    @classmethod
    def create(
        cls,
        slave: int,
        cells: int,
        seed: int,
        mode: Mode = "float",
        weak_cells: Sequence[int] | None = None,
        **kw: Any,
    ) -> StringModel:
        """``weak_cells``: 1-based indexes of the weak cells; None: one drawn at
        random (what every seed has always given)."""
        m = cls(slave=slave, rng=random.Random(seed * 1000 + slave), mode=mode, **kw)
        m.cells = [m._new_cell() for _ in range(cells)]
        m.weak_cell = m.rng.randrange(cells) if cells else 0
        if weak_cells is None:
            weak = {m.weak_cell} if cells else set()
        else:
            weak = {i - 1 for i in weak_cells if 1 <= i <= cells}
            m.weak_cell = min(weak) if weak else m.weak_cell
            m.explicit_weak = True
        m.weak = frozenset(weak)
        factor = DRAWN_RESISTANCE if weak_cells is None else WEAK_RESISTANCE
        for i in sorted(weak):
            c = m.cells[i]
            c.resistance_mohm = round(c.resistance_mohm * factor, 3)
        capacities = random.Random(seed * 1000 + slave + 7_919_000)
        for i, c in enumerate(m.cells):
            c.capacity_ah = m.rated_ah * (1 + capacities.gauss(0, CAPACITY_SPREAD))
            if i in weak:
                c.capacity_ah *= WEAK_CAPACITY
        m.string = {
            "soc_pct": 100.0 if mode == "float" else 80.0,
            "state": 0 if mode == "float" else 2,
            "current_a": 0.8 if mode == "float" else -42.5,
            "alarms": 0,
            "ambient_temperature_c": 23.5,
            "ambient_humidity_pct": 45.0,
            "relay_closed": False,
            "aux_input_on": False,
        }
        m._derive()
        return m

    def _new_cell(self) -> CellTruth:
        r = self.rng
        base = 2.25 if self.mode == "float" else 2.02
        return CellTruth(
            voltage_v=round(base + r.gauss(0, 0.008), 3),
            resistance_mohm=round(0.45 * (1 + r.gauss(0, 0.04)), 3),
            temperature_c=round(24.0 + r.gauss(0, 0.4), 1),
            soc_pct=float(round(min(100.0, 100.0 if self.mode == "float" else 80 + r.gauss(0, 1)))),
            soh_pct=float(round(min(100.0, 97 + r.gauss(0, 1.5)))),
        )

    def _derive(self) -> None:
        """String values that follow from the cells, as the BM-SM computes them."""
        vs = [c.voltage_v for c in self.cells if not c.status & CellStatus.SENSOR_LOST]
        s = self.string
        s["voltage_v"] = round(sum(vs), 2) if vs else 0.0
        mean = sum(vs) / len(vs) if vs else 0.0
        s["balance_pct"] = round(100 * (1 - (max(vs) - min(vs)) / mean), 2) if vs else 100.0
        s["cell_count"] = len(self.cells)
        self._image = None

    def step(self, dt: float) -> None:
        """Advance the slow dynamics by dt seconds (no-op when frozen), or the
        running discharge (frozen or not: it was commanded)."""
        if self.run is not None:
            self._discharge_step(dt)
            return
        if self.runaway is not None:
            self._runaway_step(dt)
        if self.frozen or not self.cells:
            return
        r, s = self.rng, self.string
        # Unrounded on purpose: slow drifts accumulate; the register encoding rounds.
        for c in self.cells:
            c.temperature_c += r.gauss(0, 0.01) * dt
            c.voltage_v += r.gauss(0, 0.0003) * dt
        for i in sorted(self.weak) if self.explicit_weak else [self.weak_cell]:
            if i < len(self.cells):
                self.cells[i].resistance_mohm *= 1 + 0.0002 * dt  # about +1 % a minute
        if self.mode == "discharge":
            s["soc_pct"] = max(0.0, s["soc_pct"] - 0.01 * dt)
            for c in self.cells:
                c.soc_pct = s["soc_pct"]
        s["ambient_temperature_c"] += r.gauss(0, 0.005) * dt
        self._derive()

    # --- a discharge run ---------------------------------------------------------------
    @property
    def rated_current_a(self) -> float:
        return self.rated_ah / self.rated_hours

    def start_discharge(
        self,
        current_a: float,
        *,
        duration_s: float | None = None,
        cutoff_v: float = 1.75,
        stop_at_cutoff: bool = True,
        now: float | None = None,
    ) -> DischargeRun:
        """Discharge at ``current_a`` (a magnitude, A) until the string voltage
        reaches cells x ``cutoff_v`` (if ``stop_at_cutoff``), ``duration_s``
        has passed, or ``stop_discharge``; the string then returns to float."""
        if not self.cells:
            raise ValueError("a string without cells cannot discharge")
        if current_a <= 0:
            raise ValueError(f"a discharge current above 0 A, found {current_a:g}")
        if self.run is not None:
            self.stop_discharge()
        rated = self.rated_current_a
        for c in self.cells:
            c.charge_ah = charge_for(c.capacity_ah, rated, c.resistance_mohm)
            c.used_ah = 0.0
        run = DischargeRun(
            current_a, time.time() if now is None else now, duration_s, cutoff_v, stop_at_cutoff
        )
        run.before = {
            "string": dict(self.string),
            "cells": [(c.voltage_v, c.soc_pct) for c in self.cells],
        }
        self.run = run
        self.runs.append(run)
        self.string.update(state=2, current_a=-current_a)
        self._discharge_step(0.0)
        return run

    def stop_discharge(self) -> DischargeRun | None:
        """End the running discharge: the charger takes over (float values back)."""
        run, self.run = self.run, None
        if run is None:
            return None
        run.ended = True
        before = run.before
        self.string.update(before["string"])
        for c, (v, soc) in zip(self.cells, before["cells"], strict=False):
            c.voltage_v, c.soc_pct, c.used_ah = v, soc, 0.0
        self._derive()
        return run

    def _discharge_step(self, dt: float) -> None:
        """One step of the run; it ends one step after its end condition, so
        the reading at the end voltage (or the end of the duration) is served."""
        run = self.run
        assert run is not None
        done = run.duration_s is not None and run.elapsed_s >= run.duration_s
        if done or (run.stop_at_cutoff and run.string_cutoff_s is not None):
            self.stop_discharge()
            return
        current, rated = run.current_a, self.rated_current_a
        use = current * (current / rated) ** (self.peukert - 1) * dt / 3600.0
        volts = 0.0
        for i, c in enumerate(self.cells, start=1):
            c.used_ah += use
            f = c.used_ah / c.charge_ah if c.charge_ah else 1.0
            c.voltage_v = cell_voltage(f, current, rated, c.resistance_mohm)
            c.soc_pct = float(max(0, round(100 * (1 - c.used_ah / c.capacity_ah))))
            volts += c.voltage_v
            if c.voltage_v <= run.cutoff_v and i not in run.cutoff_s:
                run.cutoff_s[i] = run.elapsed_s
        start_v = self.string.get("voltage_v", volts)
        run.ah += current * dt / 3600.0
        run.wh += current * (start_v + volts) / 2 * dt / 3600.0
        run.elapsed_s += dt
        run.lowest_string_v = min(run.lowest_string_v, volts)
        self.string["soc_pct"] = float(
            max(0, round(100 * (1 - use_total(self.cells) / self.rated_ah)))
        )
        self._derive()
        end_v = run.cutoff_v * len(self.cells)
        if self.string["voltage_v"] <= end_v and run.string_cutoff_s is None:
            run.string_cutoff_s = run.elapsed_s

    def _runaway_step(self, dt: float) -> None:
        """Thermal runaway on float: the current the charger pushes rises with
        the temperature (+0.12 A and +0.6 C a minute at the hot cell)."""
        self.string["current_a"] = round(self.string["current_a"] + RUNAWAY_A_PER_S * dt, 4)
        for i, c in enumerate(self.cells, start=1):
            rise = RUNAWAY_C_PER_S if i == self.runaway else RUNAWAY_C_PER_S / 5
            c.temperature_c = round(c.temperature_c + rise * dt, 4)
        self._derive()

    def set_cell(self, index: int, **values: Any) -> None:
        """Set truth values of cell ``index`` (1-based), e.g. voltage_v=2.271."""
        self.cells[index - 1] = replace(self.cells[index - 1], **values)
        self._derive()

    def set_string(self, **values: Any) -> None:
        """Set string-block values (StringReading field names); derived ones are
        recomputed from the cells unless given here."""
        self.string.update(values)
        derived = {k: v for k, v in values.items() if k in ("voltage_v", "balance_pct")}
        self._derive()
        self.string.update(derived)

    def set_cell_count(self, count: int, unmeasured_s: float = 0.0) -> None:
        """Auto-addressing found more or fewer sensors; the ones it adds read 0
        for ``unmeasured_s`` seconds (not measured yet)."""
        count = max(0, min(MAX_CELLS, count))
        before = len(self.cells)
        while len(self.cells) > count:
            self.spares.append(self.cells.pop())
        while len(self.cells) < count:
            self.cells.append(self.spares.pop() if self.spares else self._new_cell())
        self.weak_cell = min(self.weak_cell, max(0, count - 1))
        kept = {i for i in self.unmeasured if i < count}
        if unmeasured_s > 0 and count > before:
            kept |= set(range(before, count))
            self.unmeasured_until = time.time() + unmeasured_s
        self.unmeasured = frozenset(kept)
        self._derive()

    def measuring(self) -> frozenset[int]:
        """The cells not measured yet (0-based); empty once their time has come."""
        if self.unmeasured and time.time() >= self.unmeasured_until:
            self.unmeasured = frozenset()
            self._image = None
        return self.unmeasured

    def image(self) -> dict[int, int]:
        """Address -> word for everything the device answers (cached)."""
        unmeasured = self.measuring()
        if self._image is None:
            regmap = self.regmap
            block = encode_block(self.string, regmap)
            img = dict(enumerate(block, regmap.block_read.address))
            for arr in regmap.cells:
                for i, c in enumerate(self.cells):
                    word = 0 if i in unmeasured else encode_value(arr, getattr(c, arr.field))[0]
                    img[arr.base + i] = word
            img.update(self.pokes)
            self._image = img
        return self._image

    def poke(self, address: int, words: Sequence[int | None]) -> None:
        """Serve these raw words from ``address`` on, whatever the truth says
        (None words: back to the image's)."""
        for i, w in enumerate(words):
            if w is None:
                self.pokes.pop(address + i, None)
            else:
                self.pokes[address + i] = w & 0xFFFF
        self._image = None

    def zero_filled(self, address: int, count: int) -> str | None:
        """Why a read of these registers holds zeros that are no cell's values:
        "past_count" (cells past the count, read as 0), "unmeasured" (cells not
        measured yet), or None."""
        end, n = address + count, len(self.cells)
        for a in self.regmap.cells:
            if address < a.base + MAX_CELLS and end > a.base + n:
                return "past_count"
        unmeasured = self.measuring()
        if any(address <= a.base + i < end for i in unmeasured for a in self.regmap.cells):
            return "unmeasured"
        return None

    def read(self, address: int, count: int) -> list[int] | None:
        """Words for a function-03 read, or None for exception 02."""
        img, out = self.image(), []
        block, zero_cells = self.regmap.block_read, self.past_count == "zero"
        for a in range(address, address + count):
            if a in img:
                out.append(img[a])
            elif block.address <= a < block.end or (zero_cells and self._in_cell_area(a)):
                out.append(0)
            else:
                return None
        return out

    def _in_cell_area(self, address: int) -> bool:
        """The device's cell register area: the served map's arrays and the
        default table's (a firmware that moved its arrays still reads 0 where
        the table has them), holes between them included."""
        return self.regmap.in_cell_area(address) or DEFAULT_MAP.in_cell_area(address)

    def expected_reading(self, read_at: float = 0.0) -> StringReading:
        """What a correct poller must publish for the current truth."""
        img, regmap = self.image(), self.regmap
        n = len(self.cells)
        block = [img.get(a, 0) for a in range(regmap.block_read.address, regmap.block_read.end)]
        arrays = {a.base: [img[a.base + i] for i in range(n)] for a in regmap.cells}
        return decode_reading(block, arrays, read_at, regmap)


def use_total(cells: Sequence[CellTruth]) -> float:
    """The mean charge the cells have used (Ah at the rated rate)."""
    return sum(c.used_ah for c in cells) / len(cells) if cells else 0.0
