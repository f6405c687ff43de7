"""The quantity table (core/quantities.py): each quantity once, in agreement
with the device's documented resolutions and with the JSON shapes, and
extended by plugins through ``register_quantities``."""

from __future__ import annotations

import re
import time
from pathlib import Path

from btms_gateway.core import api
from btms_gateway.core.quantities import QUANTITIES, Level
from btms_gateway.kit import synthetic as sy
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config

DEVICE_DOC = Path(__file__).resolve().parents[1] / "docs" / "device.md"
#: docs/device.md's "Measurement ranges and resolutions" rows -> (level, key)
DOCUMENTED = {
    "string voltage": (Level.STRING, "voltage"),
    "string current": (Level.STRING, "current"),
    "string SOC": (Level.STRING, "soc"),
    "string balance": (Level.STRING, "balance"),
    "ambient temperature": (Level.STRING, "ambient_temperature"),
    "ambient humidity": (Level.STRING, "ambient_humidity"),
    "cell voltage, 2 V battery": (Level.CELL, "voltage"),
    "cell internal resistance": (Level.CELL, "resistance"),
    "cell temperature": (Level.CELL, "temperature"),
    "cell SOC, SOH": (Level.CELL, "soc"),
}


def test_each_quantity_once_per_level():
    keys = [(q.level, q.key) for q in QUANTITIES]
    assert len(keys) == len(set(keys))
    assert all(isinstance(q.level, Level) for q in QUANTITIES)


def test_resolutions_and_units_are_the_devices():
    rows = re.findall(r"^\| ([^|]+?) \| [^|]+ \| ([0-9.]+) (\S+) \|", DEVICE_DOC.read_text(), re.M)
    found = {name: (float(res), unit) for name, res, unit in rows}
    assert set(DOCUMENTED) <= set(found), set(DOCUMENTED) - set(found)
    for name, (level, key) in DOCUMENTED.items():
        q = api.quantity(level, key)
        resolution, unit = found[name]
        assert q.resolution == resolution, name
        assert unit == q.unit, (name, q.unit, unit)


def test_measured_numbers_have_a_resolution_and_enums_their_names():
    for q in QUANTITIES:
        if q.kind == "number" and q.read is not None:
            assert q.resolution is not None, q.key
        if q.kind in ("enum", "bits"):
            assert q.values, q.key


def test_read_agrees_with_the_json_shapes():
    """What a quantity reads is what the REST API serves under its json_key."""
    reading = make_reading(6, voltage_v=13.6)
    string = api.StringSnapshot("S1", 1, "U1", 1, 1, "b", api.Quality.GOOD, reading, time.time())
    plant = sy.plant(string)
    ups = plant.ups["U1"]
    as_json = {
        Level.UPS: (ups, api.ups_dict(ups)),
        Level.STRING: (string, api.string_dict(string) | api.reading_dict(reading)),
        Level.CELL: (reading.cells[2], api.cell_dict(reading.cells[2])),
    }
    checked = 0
    for q in QUANTITIES:
        obj, shape = as_json[q.level]
        if q.read is None or not q.json_key:
            continue
        value, served = q.read(obj), shape[q.json_key]
        if q.kind == "enum" and isinstance(served, str):
            assert q.values[int(value)] == served, q.key  # enums serve their names
        else:
            assert value == served, (q.level, q.key)
        checked += 1
    assert checked >= 20


def test_state_and_alarm_bit_names_are_the_models():
    assert api.STATE_NAMES[int(api.StringState.DISCHARGE)] == "discharge"
    assert list(api.STATE_NAMES.values()) == [s.name.lower() for s in api.StringState]
    assert api.ALARM_BIT_NAMES[6] == "hall_sensor_disconnected"
    assert api.CELL_FLAG_NAMES == {0: "sensor_lost", 1: "balancing"}


class Runtime:
    """Registers a string quantity (and, wrongly, one core already has)."""

    @api.hookimpl
    def register_quantities(self, register):
        register(
            api.Quantity(
                "remaining_runtime", Level.STRING, "s", 1, False, "number", api.Role.MEASURED,
                "runtime left", lambda s: 3600.0, source="derived",
            )
        )  # fmt: skip
        register(api.Quantity("voltage", Level.STRING, "V", 0.01, False, "number",
                              api.Role.MEASURED, "a second string voltage", None))  # fmt: skip


async def test_a_registered_quantity_joins_the_gateways_table_and_a_clash_is_refused():
    plugin = Runtime()
    async with GatewayHarness(plant_config(strings=1, ups=1), extra_plugins={"rt": plugin}) as h:
        g: api.Gateway = h.gateway
        strings = g.quantities(Level.STRING)
        assert strings[: len(api.of_level(Level.STRING))] == api.of_level(Level.STRING)
        assert [q.key for q in strings].count("voltage") == 1  # the clash was left out
        assert strings[-1].key == "remaining_runtime"
        assert g.plugin_failures()[("rt", "register_quantities")] == 1
        assert g.quantities(Level.CELL) == api.of_level(Level.CELL)
