"""The rule table (one row per alarm kind, with its defaults) and the
threshold state machine every rule shares. How the ``[alarms]`` section
changes the defaults for a string is config.py's (``rules_for``).

Voltage limits are written in volts per cell (VPC), the unit lead-acid
datasheets use, and scaled by the block type (2 V = 1 cell, 12 V = 6 cells)
and, for string voltage, by the string's cell count; so one table serves 2 V
and 12 V strings and a correction is a one-line change. Reasoning for each
default is in docs/alarms.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..alarm_types import ObjectPath, Severity
from ..model import StringAlarm

Scope = Literal["cell", "string", "ups", "gateway"]
BlockType = Literal["2V", "6V", "12V"]
Kind = Literal["high", "low", "flag"]
Scale = Literal["none", "block", "string"]

SEVERITIES = {"warning": Severity.WARNING, "alarm": Severity.ALARM, "critical": Severity.CRITICAL}
#: Lead-acid cells in series per block: limits are written in volts per cell
#: (VPC, the unit battery datasheets use) and scaled by this for each block type.
CELLS_PER_BLOCK: dict[BlockType, int] = {"2V": 1, "6V": 3, "12V": 6}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``RULES`` holds the defaults (voltage limits in volts per cell);
    :func:`resolve` gives the rule as it applies to one string, overrides
    merged and block scaling done. For ``scale == "string"`` rules the resolved
    ``limit``/``hysteresis`` are still per block and are multiplied by the cell
    count at evaluation time, because auto-addressing can change the count
    while the gateway runs."""

    name: str
    scope: Scope
    kind: Kind
    unit: str
    limit: float
    hysteresis: float
    on_delay_s: float
    off_delay_s: float
    severity: Severity
    text: str
    enabled: bool = True
    scale: Scale = "none"  # "block": x cells per block; "string": also x cell count
    #: evaluated on the negated quantity: the discharge limit is a magnitude
    #: (500 A) compared with -current, since current is served + charge, - discharge
    negated: bool = False

    @property
    def per_cell_count(self) -> bool:
        return self.scale == "string"

    @property
    def side(self) -> Kind:
        """Which side of the quantity as every protocol serves it the limit
        guards: a "high" rule on the negated current (discharge above 500 A)
        is a low limit of the served current (below -500 A)."""
        if self.negated and self.kind != "flag":
            return "low" if self.kind == "high" else "high"
        return self.kind

    def on(self, value: float, limit: float) -> bool:
        """Beyond the limit: the condition that raises."""
        return value < limit if self.kind == "low" else value > limit

    def off(self, value: float, limit: float, hysteresis: float) -> bool:
        """Back past the hysteresis band: the condition that clears."""
        if self.kind == "low":
            return value >= limit + hysteresis
        return value <= limit - hysteresis


W, A = Severity.WARNING, Severity.ALARM
# name, scope, kind, unit, limit, hysteresis, on-delay s, off-delay s, severity, scale
_TABLE: list[tuple[str, Scope, Kind, str, float, float, float, float, Severity, Scale]] = [
    ("cell_voltage_high", "cell", "high", "V", 2.40, 0.02, 10, 5, A, "block"),
    ("cell_voltage_low", "cell", "low", "V", 1.90, 0.03, 10, 5, A, "block"),
    ("cell_resistance_warning", "cell", "high", "%", 25.0, 5.0, 60, 60, W, "none"),
    ("cell_resistance_alarm", "cell", "high", "%", 50.0, 5.0, 60, 60, A, "none"),
    ("cell_resistance_median_warning", "cell", "high", "%", 25.0, 5.0, 60, 60, W, "none"),
    ("cell_resistance_median_alarm", "cell", "high", "%", 50.0, 5.0, 60, 60, A, "none"),
    ("cell_temperature_high", "cell", "high", "C", 40.0, 2.0, 30, 30, A, "none"),
    ("cell_temperature_vs_median", "cell", "high", "C", 5.0, 1.0, 60, 60, W, "none"),
    ("cell_temperature_vs_ambient", "cell", "high", "C", 10.0, 2.0, 60, 60, W, "none"),
    ("cell_soc_low", "cell", "low", "%", 30.0, 5.0, 30, 10, W, "none"),
    ("cell_soh_low", "cell", "low", "%", 80.0, 2.0, 60, 60, W, "none"),
    ("string_voltage_high", "string", "high", "V", 2.38, 0.01, 10, 5, A, "string"),
    ("string_voltage_low", "string", "low", "V", 1.85, 0.01, 10, 5, A, "string"),
    ("string_current_charge_high", "string", "high", "A", 100.0, 5.0, 10, 10, W, "none"),
    ("string_current_discharge_high", "string", "high", "A", 500.0, 10.0, 5, 10, A, "none"),
    ("string_soc_low", "string", "low", "%", 50.0, 5.0, 30, 10, W, "none"),
    ("string_soh_low", "string", "low", "%", 80.0, 2.0, 60, 60, W, "none"),
    ("string_thermal_runaway", "string", "high", "C", 3.0, 1.0, 60, 300, A, "none"),
    ("string_comm_lost", "string", "flag", "", 0.0, 0.0, 0, 0, A, "none"),
    ("ups_string_error", "ups", "flag", "strings", 0.0, 0.0, 0, 0, A, "none"),
    ("event_log_failing", "gateway", "flag", "", 0.0, 0.0, 0, 0, A, "none"),
    ("history_paused", "gateway", "flag", "", 0.0, 0.0, 0, 0, W, "none"),
]
_TEXT = {
    "cell_voltage_high": "voltage high",
    "cell_voltage_low": "voltage low",
    "cell_resistance_warning": "internal resistance above baseline",
    "cell_resistance_alarm": "internal resistance far above baseline",
    "cell_resistance_median_warning": "internal resistance above the string median",
    "cell_resistance_median_alarm": "internal resistance far above the string median",
    "cell_temperature_vs_median": "hotter than the string's median cell",
    "cell_temperature_vs_ambient": "hotter than the room",
    "cell_temperature_high": "temperature high",
    "cell_soc_low": "state of charge low",
    "cell_soh_low": "state of health low",
    "string_voltage_high": "string voltage high",
    "string_voltage_low": "string voltage low",
    "string_current_charge_high": "charge current above limit",
    "string_current_discharge_high": "discharge current above limit",
    "string_soc_low": "string state of charge low",
    "string_soh_low": "string state of health low",
    "string_thermal_runaway": "float current rising with temperature (thermal runaway)",
    "string_comm_lost": "communication lost",
    "ups_string_error": "a string of this UPS is in error",
    "event_log_failing": "event log cannot be written",
    "history_paused": "history not recording",
}
#: off by default: string SOH is derived from the weakest cell, which cell_soh_low covers
_DISABLED = {"string_soh_low"}
#: compared with the negated quantity (see Rule.negated)
_NEGATED = {"string_current_discharge_high"}
_DEFAULTS = [
    Rule(n, sc, k, u, lim, h, on, off, sev, _TEXT[n], n not in _DISABLED, scale, n in _NEGATED)
    for (n, sc, k, u, lim, h, on, off, sev, scale) in _TABLE
]

#: one flag rule per bit of the BM-SM's own alarm word (HR 13)
ALARM_WORD_RULES: dict[str, StringAlarm] = {
    f"bmsm_{bit.name.lower()}": bit
    for bit in StringAlarm
    if bit.name and bit is not StringAlarm.NONE
}
for _name, _bit in ALARM_WORD_RULES.items():
    _sev = W if _bit is StringAlarm.HALL_SENSOR_DISCONNECTED else A
    _text = "BM-SM alarm: " + (_bit.name or "").lower().replace("_", " ")
    _DEFAULTS.append(Rule(_name, "string", "flag", "", 0.0, 0.0, 0, 0, _sev, _text))

RULES: dict[str, Rule] = {r.name: r for r in _DEFAULTS}
CELL_RULES = [r.name for r in _DEFAULTS if r.scope == "cell"]


def alarm_id(rule: str, path: ObjectPath) -> str:
    """Stable across restarts: rule plus the object it applies to."""
    if path.cell is not None:
        return f"{rule}:{path.string}:{path.cell}"
    if path.string is not None:
        return f"{rule}:{path.string}"
    if path.ups is not None:
        return f"{rule}:{path.ups}"
    return f"{rule}:gateway"


def defaults_table() -> str:
    """The defaults as a Markdown table (docs/alarms.md embeds it verbatim and a
    test keeps the two equal, so the documentation cannot drift)."""
    head = (
        "| rule | scope | raises when | 2 V cell | 12 V block | hysteresis (2 V) "
        "| on / off delay | severity |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in RULES.values():
        if r.kind == "flag":
            when, two, twelve, hyst = "condition present", "-", "-", "-"
        else:
            when = ("value > limit" if r.kind == "high" else "value < limit") + f" ({r.unit})"
            f12 = 6 if r.scale != "none" else 1
            per = " x n" if r.scale == "string" else ""
            two = f"{r.limit:g}{per}"
            twelve = f"{round(r.limit * f12, 6):g}{per}"
            hyst = f"{r.hysteresis:g}{per}"
        state = "" if r.enabled else " (off)"
        rows.append(
            f"| `{r.name}`{state} | {r.scope} | {when} | {two} | {twelve} | {hyst} "
            f"| {r.on_delay_s:g} s / {r.off_delay_s:g} s | {r.severity.name.lower()} |"
        )
    return head + "\n".join(rows) + "\n"
