"""The plant's Prometheus series, derived from the quantity table.

Each quantity of a UPS, a string or a cell shows as one metric family: a
gauge (the value in the metric's base unit), a state set (one series a
member, value 0/1) or bits (one series a bit). ``PLACEMENTS`` holds the
names on the wire today, keyed by ``(level, key)``; a quantity without one
(a plugin's, a gap) is named ``btms_<level>_<key>[_<unit>]`` in base units
(ratios 0..1 instead of percentages, ohms instead of milliohms). A measured
value is exported only while its string (for a UPS: all of its strings) is
GOOD; a status value always (docs/web.md, "Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from btms_gateway.core.api import DeviceStatus, Level, Quantity, placed

Shape = Literal["gauge", "stateset", "bits"]
U, S, C = Level.UPS, Level.STRING, Level.CELL


@dataclass(frozen=True, slots=True)
class Series:
    """How one quantity shows: its metric name and help, the factor to its base
    unit, its shape (with the label naming a member or a bit), and a read of the
    level's object when the table's read does not give what the metric shows."""

    name: str
    help: str
    scale: float = 1.0
    shape: Shape = "gauge"
    label: str = ""
    read: Callable[[Any], Any] | None = None


def _last_read(s: Any) -> float | None:
    return None if s.reading is None else s.reading.read_at


def _ups_read_at(u: Any) -> float | None:
    return u.read_at  # the collector hands a UPS with a never-read string without one


def _sensor_lost(c: Any) -> int:
    return 1 if c.device_status is DeviceStatus.ERROR else 0


# fmt: off
#: today's metric names, keyed by (level, key) of the quantity table
PLACEMENTS: dict[tuple[Level, str], Series] = {
    (S, "quality"): Series("btms_string_quality", "Data quality state set.", shape="stateset",
                           label="quality"),
    (S, "data_age"): Series("btms_string_last_read_timestamp_seconds",
                            "When the values were last read successfully (age = now - this).",
                            read=_last_read),
    (S, "voltage"): Series("btms_string_voltage_volts", "String voltage."),
    (S, "current"): Series("btms_string_current_amperes",
                           "String current, + charge, - discharge."),
    (S, "soc"): Series("btms_string_soc_ratio", "String state of charge (0..1).", 0.01),
    (S, "soh"): Series("btms_string_soh_ratio", "String SOH: the lowest cell SOH (0..1).", 0.01),
    (S, "runtime_remaining"): Series(
        "btms_string_runtime_remaining_seconds",
        "Estimated runtime left to the end voltage while discharging."),
    (S, "depth_of_discharge"): Series(
        "btms_string_depth_of_discharge_ratio",
        "Depth of discharge of the running discharge (0..1, Peukert-corrected).", 0.01),
    (S, "balance"): Series("btms_string_balance_ratio", "String balance (0..1).", 0.01),
    (S, "cell_count"): Series("btms_string_cells", "Cells found by auto-addressing."),
    (S, "ambient_temperature"): Series("btms_string_ambient_temperature_celsius",
                                       "Ambient temperature."),
    (S, "ambient_humidity"): Series("btms_string_ambient_humidity_ratio",
                                    "Ambient relative humidity (0..1).", 0.01),
    (S, "state"): Series("btms_string_state", "String state set.", shape="stateset",
                         label="state"),
    (S, "alarm_word"): Series("btms_string_device_alarm", "BM-SM alarm word bits (1 = set).",
                              shape="bits", label="alarm"),
    (U, "quality"): Series("btms_ups_quality", "Worst quality of the UPS's strings.",
                           shape="stateset", label="quality"),
    (U, "voltage"): Series("btms_ups_voltage_volts", "UPS voltage: mean of string voltages."),
    (U, "current"): Series("btms_ups_current_amperes", "UPS current: sum of string currents."),
    (U, "soc"): Series("btms_ups_soc_ratio", "UPS state of charge: mean of strings (0..1).",
                       0.01),
    (C, "voltage"): Series("btms_cell_voltage_volts", "Cell voltage."),
    (C, "resistance"): Series("btms_cell_resistance_ohms", "Cell internal resistance.", 1e-3),
    (C, "temperature"): Series("btms_cell_temperature_celsius", "Cell temperature."),
    (C, "soc"): Series("btms_cell_soc_ratio", "Cell state of charge (0..1).", 0.01),
    (C, "soh"): Series("btms_cell_soh_ratio", "Cell state of health (0..1).", 0.01),
    (C, "status"): Series("btms_cell_sensor_lost", "1 when the cell sensor is lost.",
                          read=_sensor_lost),
    # gaps filled by the quantity table (issue 25): these names are fixed from now on
    (S, "status"): Series("btms_string_status",
                          "String status state set (error: data not GOOD, state abnormal or an "
                          "alarm bit set).", shape="stateset", label="status"),
    (S, "relay_closed"): Series("btms_string_relay_closed", "1 while the relay is closed."),
    (S, "aux_input_on"): Series("btms_string_aux_input_on", "1 while the auxiliary input is on."),
    (U, "status"): Series("btms_ups_status",
                          "UPS status state set (error if any of its strings errs).",
                          shape="stateset", label="status"),
    (U, "string_count"): Series("btms_ups_strings", "Strings in this UPS."),
    (U, "data_age"): Series("btms_ups_last_read_timestamp_seconds",
                            "When its oldest string values were read (age = now - this; absent "
                            "while a string of it was never read).", read=_ups_read_at),
    (C, "flags"): Series("btms_cell_flags", "Cell status bits (1 = set).", shape="bits",
                         label="flag"),
}
# fmt: on

#: quantities without a family of their own, and why: btms_alarms_active counts
#: the active alarms by severity and acknowledgement
NOT_SERVED: dict[tuple[Level, str], str] = {
    (U, "active_alarms"): "btms_alarms_active",
    (U, "alarm_severity"): "btms_alarms_active",
    (S, "active_alarms"): "btms_alarms_active",
    (S, "alarm_severity"): "btms_alarms_active",
}
#: a unit's base-unit suffix, and the factor to it
UNIT_SUFFIX: dict[str, tuple[str, float]] = {
    "V": ("volts", 1.0),
    "A": ("amperes", 1.0),
    "%": ("ratio", 0.01),
    "%RH": ("ratio", 0.01),
    "C": ("celsius", 1.0),
    "mOhm": ("ohms", 1e-3),
    "s": ("seconds", 1.0),
}
SHAPES: dict[str, Shape] = {"enum": "stateset", "bits": "bits"}


def automatic(q: Quantity) -> Series:
    """``btms_<level>_<key>[_<unit>]``, in base units; the help is the table's description."""
    suffix, scale = UNIT_SUFFIX.get(q.unit, ("", 1.0))
    name = f"btms_{q.level.value}_{q.key}" + (f"_{suffix}" if suffix else "")
    words = q.description[:1].upper() + q.description[1:]
    return Series(name, f"{words}.", scale, SHAPES.get(q.kind, "gauge"), q.key)


@dataclass(frozen=True, slots=True)
class Family:
    """One quantity's metric family: its series and how to read its samples."""

    series: Series
    quantity: Quantity

    def samples(self, obj: Any) -> Iterator[tuple[tuple[str, ...], float]]:
        """(extra label values, value) of ``obj`` (the level's object); none when
        the value is unknown."""
        read = self.series.read or self.quantity.read
        if read is None:
            return
        value = read(obj)
        if value is None:
            return
        shape = self.series.shape
        if shape == "gauge":
            yield (), float(value) * self.series.scale
            return
        if shape == "stateset":
            for member, name in self.quantity.values.items():
                yield (name,), 1.0 if int(value) == member else 0.0
            return
        for bit, name in self.quantity.values.items():
            yield (name,), 1.0 if int(value) >> bit & 1 else 0.0

    @property
    def measured(self) -> bool:
        return self.quantity.measured

    @property
    def labels(self) -> list[str]:
        return [self.series.label] if self.series.shape != "gauge" else []


def families(level: Level, table: Iterable[Quantity]) -> tuple[Family, ...]:
    """The families of one level in table order: each quantity at its placement,
    one without a placement named automatically; none for one that is not
    served, or that the serving code computes and has no placement here."""
    return tuple(
        Family(series or automatic(q), q)
        for q, series in placed(level, table, PLACEMENTS, NOT_SERVED)
    )
