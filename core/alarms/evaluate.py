"""Evaluating one string's readings against its rules, fast when nothing changes.

At full scale (32 strings x 120 cells) every poll hands the engine a whole
string, and most polls change no alarm. So each cell first meets a handful of
precomputed float comparisons (the raise limits of every cell rule, the
resistance limit already multiplied out from the cell's baseline); only a cell
beyond a limit or with a condition in progress ("busy") takes the slow path
through the generic state machine. No object is allocated for a healthy cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..alarm_types import EventKind, ObjectPath
from ..model import (
    SENSOR_LOST_BIT,
    CellReading,
    DeviceStatus,
    Quality,
    StringReading,
    StringSnapshot,
)
from .baseline import BaselineRow, CellBaselines
from .rules import ALARM_WORD_RULES, CELL_RULES, Rule, alarm_id
from .state import PENDING_ON, Condition

INF = math.inf
Transition = tuple[EventKind, Condition, float]
Key = tuple[str, int]  # (rule name, cell index; 0 for string/UPS rules)

CELL_VALUE_RULES = (
    ("cell_voltage_high", "voltage_v"),
    ("cell_voltage_low", "voltage_v"),
    ("cell_temperature_high", "temperature_c"),
    ("cell_soc_low", "soc_pct"),
    ("cell_soh_low", "soh_pct"),
)
#: cell rules on a per-cell value analytics derives (StringSnapshot.cell_derived)
CELL_DERIVED_RULES = (
    ("cell_resistance_median_warning", "resistance_vs_median_pct"),
    ("cell_resistance_median_alarm", "resistance_vs_median_pct"),
    ("cell_temperature_vs_median", "temperature_vs_median_c"),
    ("cell_temperature_vs_ambient", "temperature_vs_ambient_c"),
)
#: string rules on a value analytics derives (StringSnapshot.derived)
STRING_DERIVED_RULES = (("string_thermal_runaway", "thermal_rise_c"),)
WORD_BITS = [(name, int(bit)) for name, bit in ALARM_WORD_RULES.items()]
COMM_LOST = "string_comm_lost"


class Tracker:
    """The conditions in progress (pending or active) of one group of objects."""

    def __init__(self) -> None:
        self.conds: dict[Key, Condition] = {}

    def feed(
        self,
        key: Key,
        rule: Rule,
        path: ObjectPath,
        value: float,
        limit: float,
        hysteresis: float,
        t: float,
        out: list[Transition],
    ) -> None:
        c = self.conds.get(key)
        on = rule.on(value, limit)
        if c is None:
            if not on:
                return
            lim = None if rule.kind == "flag" else limit
            c = Condition(alarm_id(rule.name, path), rule, path, PENDING_ON, t, value, lim)
            self.conds[key] = c
            off = False
        else:
            off = rule.off(value, limit, hysteresis)
            c.value = value
            if rule.kind != "flag":
                c.limit = limit
        self._after(key, c, c.step(on, off, t), t, out)

    def hold(self, key: Key) -> None:
        c = self.conds.get(key)
        if c is not None:
            c.hold()
            if c.state == 0:
                del self.conds[key]

    def hold_all(self, except_rule: str) -> None:
        for key in [k for k in self.conds if k[0] != except_rule]:
            self.hold(key)

    def tick(self, now: float, out: list[Transition]) -> None:
        for key, c in list(self.conds.items()):
            self._after(key, c, c.advance(now), now, out)

    def _after(
        self, key: Key, c: Condition, kind: EventKind | None, t: float, out: list[Transition]
    ) -> None:
        if c.state == 0:
            del self.conds[key]
        if kind is not None:
            out.append((kind, c, t))


class StringEval:
    """One string's rules, baselines and conditions in progress."""

    def __init__(
        self, name: str, ups: str | None, rules: dict[str, Rule], baselines: CellBaselines
    ) -> None:
        self.name = name
        self.ups = ups
        self.path = ObjectPath(ups, name)
        self.rules = rules
        self.tracker = Tracker()
        self.baselines = baselines
        self.busy: set[int] = set()
        self.seen = False  # published at least once since start
        self.device_error = False  # BM-GW "string in error", from the last GOOD reading
        self.good = False
        self.last_reading: StringReading | None = None
        self.learn_pending = True
        self.cell_total = -1

        def on_limit(name: str, off: float) -> float:
            return rules[name].limit if rules[name].enabled else off

        self.v_hi = on_limit("cell_voltage_high", INF)
        self.v_lo = on_limit("cell_voltage_low", -INF)
        self.t_hi = on_limit("cell_temperature_high", INF)
        self.soc_lo = on_limit("cell_soc_low", -INF)
        self.soh_lo = on_limit("cell_soh_low", -INF)
        self.r_rules = [
            r
            for r in (rules["cell_resistance_warning"], rules["cell_resistance_alarm"])
            if r.enabled
        ]
        self.r_factor = 1 + min((r.limit for r in self.r_rules), default=INF) / 100
        self.r_on: dict[int, float] = {}
        #: (rule, cell_derived key) of the enabled derived cell rules, and per key
        #: the lowest raise limit (the fast path's one comparison per key and cell)
        self.d_rules = [(rules[n], key) for n, key in CELL_DERIVED_RULES if rules[n].enabled]
        self.d_on: dict[str, float] = {}
        for rule, key in self.d_rules:
            self.d_on[key] = min(self.d_on.get(key, INF), rule.limit)
        self.cell_derived: Mapping[str, Sequence[float | None]] = {}
        self.refresh_baselines()

    @property
    def in_error(self) -> bool:
        """For the UPS rule: communication lost (raised, not merely OFFLINE for a
        moment) or the last GOOD reading in error; a STALE string keeps what it had."""
        lost = self.tracker.conds.get((COMM_LOST, 0))
        return (lost is not None and lost.is_active) or self.device_error

    def refresh_baselines(self) -> None:
        """Recompute the per-cell resistance raise limits after baselines changed."""
        f = self.r_factor
        self.r_on = {c: b * f for c, b in self.baselines.values.items()} if self.r_rules else {}
        self.learn_pending = bool(self.r_rules)

    # --- entry point ---------------------------------------------------------------
    def evaluate(
        self, s: StringSnapshot, out: list[Transition], learned: list[BaselineRow]
    ) -> None:
        self.seen = True
        q = s.quality
        rule = self.rules[COMM_LOST]
        if rule.enabled and q is not Quality.STALE:
            value = 1.0 if q is Quality.OFFLINE else 0.0
            self.tracker.feed((COMM_LOST, 0), rule, self.path, value, 0.0, 0.0, s.changed_at, out)
        r = s.reading
        if q is not Quality.GOOD or r is None:
            if self.good:  # stale values neither raise nor clear: freeze transitions
                self.tracker.hold_all(COMM_LOST)
                self.busy = {k[1] for k in self.tracker.conds if k[1]}
            self.good = False
            return
        self.good = True
        self.device_error = s.device_status is DeviceStatus.ERROR
        if r is self.last_reading:
            return  # a quality change only; these values were already evaluated
        self.last_reading = r
        if len(r.cells) != self.cell_total:  # auto-addressing: new cells learn a baseline
            self.cell_total = len(r.cells)
            self.learn_pending = bool(self.r_rules)
        t = r.read_at
        self.cell_derived = s.cell_derived
        self._string(r, t, out, s.derived)
        self._cells(r.cells, t, out)
        if self.learn_pending:
            self._learn(r.cells, t, learned)

    # --- string rules --------------------------------------------------------------
    def _string(
        self,
        r: StringReading,
        t: float,
        out: list[Transition],
        derived: Mapping[str, float | None],
    ) -> None:
        rules, tr, path = self.rules, self.tracker, self.path
        for name, key in STRING_DERIVED_RULES:
            rule = rules[name]
            if not rule.enabled:
                continue
            x = derived.get(key)
            if x is None:
                tr.hold((name, 0))
            else:
                tr.feed((name, 0), rule, path, x, rule.limit, rule.hysteresis, t, out)
        n = r.cell_count or len(r.cells)
        for name, value in (
            ("string_voltage_high", r.voltage_v),
            ("string_voltage_low", r.voltage_v),
            ("string_current_charge_high", r.current_a),
            ("string_current_discharge_high", r.current_a),
            ("string_soc_low", r.soc_pct),
            ("string_soh_low", None),
        ):
            rule = rules[name]
            if not rule.enabled:
                continue
            if name == "string_soh_low":
                value = r.soh_pct  # derived from all cells: only computed when enabled
            elif rule.negated and value is not None:
                value = -value
            limit, hyst = rule.limit, rule.hysteresis
            if rule.per_cell_count:
                limit, hyst = round(limit * n, 6), round(hyst * n, 6)
            if value is None or (rule.per_cell_count and n == 0):
                tr.hold((name, 0))
            else:
                tr.feed((name, 0), rule, path, value, limit, hyst, t, out)
        word = int(r.alarms)
        for name, bit in WORD_BITS:
            rule = rules[name]
            if rule.enabled and (word & bit or (name, 0) in tr.conds):
                tr.feed((name, 0), rule, path, 1.0 if word & bit else 0.0, 0.0, 0.0, t, out)

    # --- cell rules ----------------------------------------------------------------
    def _cells(self, cells: Sequence[CellReading], t: float, out: list[Transition]) -> None:
        busy, r_on, slow = self.busy, self.r_on, self._cell_slow
        v_hi, v_lo, t_hi, soc_lo, soh_lo = self.v_hi, self.v_lo, self.t_hi, self.soc_lo, self.soh_lo
        beyond: set[int] = set()  # positions past a derived rule's limit
        for key, limit in self.d_on.items():
            values = self.cell_derived.get(key)
            if values is not None:
                beyond.update(p for p, x in enumerate(values) if x is not None and x > limit)
        for pos, c in enumerate(cells):
            if c.index in busy or pos in beyond:
                slow(c, t, out, pos)
                continue
            x = c.voltage_v
            if x is not None and (x > v_hi or x < v_lo):
                slow(c, t, out, pos)
                continue
            x = c.temperature_c
            if x is not None and x > t_hi:
                slow(c, t, out, pos)
                continue
            x = c.soc_pct
            if x is not None and x < soc_lo:
                slow(c, t, out, pos)
                continue
            x = c.soh_pct
            if x is not None and x < soh_lo:
                slow(c, t, out, pos)
                continue
            x = c.resistance_mohm
            if x is not None and x > r_on.get(c.index, INF):
                slow(c, t, out, pos)

    def _cell_slow(self, c: CellReading, t: float, out: list[Transition], pos: int) -> None:
        i, tr, rules = c.index, self.tracker, self.rules
        path = ObjectPath(self.ups, self.name, i)
        lost = bool(int(c.status) & SENSOR_LOST_BIT)
        for name, attr in CELL_VALUE_RULES:
            rule = rules[name]
            if not rule.enabled:
                continue
            value = getattr(c, attr)
            if value is None or lost:
                tr.hold((name, i))
            else:
                tr.feed((name, i), rule, path, value, rule.limit, rule.hysteresis, t, out)
        base = self.baselines.values.get(i)
        r = c.resistance_mohm
        for rule in self.r_rules:
            if r is None or lost or not base:
                tr.hold((rule.name, i))
            else:
                pct = round((r / base - 1.0) * 100.0, 3)
                tr.feed((rule.name, i), rule, path, pct, rule.limit, rule.hysteresis, t, out)
        derived = self.cell_derived
        for rule, key in self.d_rules:
            values = derived.get(key)
            x = values[pos] if values is not None and pos < len(values) else None
            if x is None or lost:
                tr.hold((rule.name, i))
            else:
                tr.feed((rule.name, i), rule, path, x, rule.limit, rule.hysteresis, t, out)
        if any((name, i) in tr.conds for name in CELL_RULES):
            self.busy.add(i)
        else:
            self.busy.discard(i)

    def _learn(self, cells: Sequence[CellReading], t: float, learned: list[BaselineRow]) -> None:
        values, f = self.baselines.values, self.r_factor
        missing = False
        for c in cells:
            i = c.index
            if i in values:
                continue
            r = c.resistance_mohm
            if r is None or r <= 0 or int(c.status) & SENSOR_LOST_BIT:
                missing = True
                continue
            row = self.baselines.sample(i, r, t)
            if row is None:
                missing = True
            else:
                learned.append(row)
                self.r_on[i] = row.mohm * f
        self.learn_pending = missing
