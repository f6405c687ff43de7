"""Every protocol derives its table from the quantity table (issue 25).

Each quantity of core's table is placed on every protocol, or the protocol
says where it shows it instead (``NOT_SERVED``: the alarm summary in an alarm
table, a cell's status in its objects' reliability); and a quantity a plugin
registers through ``register_quantities`` is read back over the wire by the
independent clients: mbpoll (Modbus), snmpget (SNMP), rusty-bacnet (BACnet),
and over HTTP from REST and /metrics, on a gateway polling the simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import urllib.request
from typing import Any

import pytest
import rusty_bacnet as rb
from btms_gateway.core import api
from btms_gateway.plugins.bacnet import objects as bacnet
from btms_gateway.plugins.modbus_tcp import map as modbus
from btms_gateway.plugins.modbus_tcp.map import string_unit, ups_unit
from btms_gateway.plugins.snmp import tables as snmp
from btms_gateway.plugins.snmp.tables import DEFAULT_BASE
from btms_gateway.plugins.web import data, openapi, series
from btms_gateway.plugins.web.openapi import openapi_document
from conftest import require_tool
from modbus_support import mbpoll

COMMUNITY = "quantity-table"


def _placed_or_said(q: api.Quantity, placed: Any, not_served: Any) -> bool:
    key = (q.level, q.key)
    return key in placed or key in not_served


@pytest.mark.parametrize("q", api.QUANTITIES, ids=lambda q: f"{q.level.value}.{q.key}")
def test_every_quantity_appears_on_every_protocol(q: api.Quantity) -> None:
    """Placed (its wire position fixed), or the protocol's NOT_SERVED says where
    the value shows instead; REST serves it under its JSON key or elsewhere."""
    assert (q.level, q.key) in modbus.PLACEMENTS
    assert _placed_or_said(q, snmp.COLUMNS, snmp.NOT_SERVED)
    assert _placed_or_said(q, bacnet.PLACEMENTS, bacnet.NOT_SERVED)
    assert _placed_or_said(q, series.PLACEMENTS, series.NOT_SERVED)
    assert q.json_key or (q.level, q.key) in data.ELSEWHERE
    names = {p.name for p in modbus.POINTS}
    assert modbus.PLACEMENTS[(q.level, q.key)].name in names
    mib = {c.name for t in snmp.TABLES for c in t.columns}
    if (q.level, q.key) in snmp.COLUMNS:
        assert snmp.COLUMNS[(q.level, q.key)].name in mib
    rows = {api.Level.UPS: bacnet.UPS_QUANTITIES, api.Level.STRING: bacnet.STRING_QUANTITIES,
            api.Level.CELL: bacnet.CELL_QUANTITIES}[q.level]  # fmt: skip
    if (q.level, q.key) in bacnet.PLACEMENTS:
        assert bacnet.PLACEMENTS[(q.level, q.key)].offset in {r.offset for r in rows}


#: the OpenAPI schema that holds each level's quantities, by role (a string's measured
#: values are in its reading)
SCHEMA_OF = {(api.Level.UPS, api.Role.STATUS): "Ups", (api.Level.UPS, api.Role.MEASURED): "Ups",
             (api.Level.STRING, api.Role.STATUS): "String",
             (api.Level.STRING, api.Role.MEASURED): "Reading",
             (api.Level.CELL, api.Role.STATUS): "Cell",
             (api.Level.CELL, api.Role.MEASURED): "Cell"}  # fmt: skip


@pytest.mark.parametrize(
    "q", [q for q in api.QUANTITIES if q.json_key], ids=lambda q: f"{q.level.value}.{q.key}"
)
def test_the_openapi_properties_of_core_quantities_derive_from_the_table(q: api.Quantity) -> None:
    """Each core quantity the JSON shapes serve is a property of its schema made
    from the table: change its kind, or let the shape withhold it, and the
    document follows (issue 25: the schemas were written by hand)."""
    name = SCHEMA_OF[(q.level, q.role)]
    schema = openapi_document()["components"]["schemas"][name]["properties"][q.json_key]
    json_type = "string" if q.kind == "enum" else openapi.KIND_TYPES[q.kind]
    assert schema["type"] in (json_type, [json_type, "null"])
    other = "bool" if q.kind != "bool" else "count"
    changed = dataclasses.replace(q, kind=other)
    table = tuple(changed if x is q else x for x in api.QUANTITIES)
    derived = openapi.schemas_of(table)[name]["properties"][q.json_key]
    want = openapi.KIND_TYPES[other]
    assert derived["type"] in (want, [want, "null"]), derived
    assert (derived["type"] == want) == (schema["type"] == json_type)  # nullability kept


def test_the_filled_gaps_are_served() -> None:
    """The gaps the table revealed, now placed: BACnet string SOH, cell count,
    data age (and status, quality; the UPS's status, quality, string count, data
    age), SNMP's UPS data age, the metrics of statuses, relay and aux input."""
    string = {r.key for r in bacnet.STRING_QUANTITIES}
    assert {"soh", "cell_count", "data_age", "status", "quality"} <= string
    assert {"status", "quality", "string_count", "data_age"} <= {
        r.key for r in bacnet.UPS_QUANTITIES
    }
    assert "btmsUpsDataAge" in {c.name for c in snmp.UPS_TABLE.columns}
    metric_keys = {(lv, k) for (lv, k) in series.PLACEMENTS}
    assert {(api.Level.STRING, "status"), (api.Level.STRING, "relay_closed"),
            (api.Level.UPS, "status"), (api.Level.CELL, "flags")} <= metric_keys  # fmt: skip


def _string_runtime(s: api.StringSnapshot) -> float | None:
    return None if s.reading is None else 3600.0 + s.index


def _ups_runtime(u: api.UpsSnapshot) -> float | None:
    return None if u.read_at is None else 7200.0 + u.index


def _cell_balancing(c: api.CellReading) -> float:
    return 500.0 + c.index


class RuntimePlugin:
    """A third party's quantities: a runtime estimate of each string and UPS, and
    the time each cell spent balancing."""

    @api.hookimpl
    def register_quantities(self, register: Any) -> None:
        for level, read in ((api.Level.STRING, _string_runtime), (api.Level.UPS, _ups_runtime)):
            register(api.Quantity("remaining_runtime", level, "s", 1, False, "number",
                                  api.Role.MEASURED, "estimated runtime left", read,
                                  source="derived"))  # fmt: skip
        register(api.Quantity("balancing_time", api.Level.CELL, "s", 1, False, "number",
                              api.Role.MEASURED, "time spent balancing", _cell_balancing,
                              source="derived"))  # fmt: skip


def _http(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return str(r.read().decode())


async def _snmpget(port: int, oid: str) -> str:
    exe = require_tool("snmpget", "snmp")
    cmd = [exe, "-v2c", "-c", COMMUNITY, "-Oqv", "-t", "2", "-r", "2", f"udp:127.0.0.1:{port}",
           oid]  # fmt: skip
    r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.peer
async def test_a_registered_quantity_is_read_over_every_protocol(start_gateway: Any) -> None:
    """A UPS, a string and a cell quantity: the cell one on every cell of every
    protocol (issue 25: BACnet gave it no object, REST did not serve it)."""
    h = await start_gateway(
        {"modbus_tcp": {}, "snmp": {"community": COMMUNITY}, "bacnet": {"device_instance": 4242},
         "web": {"cell_metrics": True}},
        strings=2, ups=1, extra_plugins={"runtime": RuntimePlugin()},
    )  # fmt: skip
    await h.wait_quality(api.Quality.GOOD)
    s1, ups = h.gateway.store.string("S1"), h.gateway.store.snapshot.ups["UPS1"]
    want_s, want_u = _string_runtime(s1), _ups_runtime(ups)
    assert (want_s, want_u) == (3601.0, 7201.0)

    cell2 = h.gateway.store.string("S2").reading.cells[1]  # type: ignore[union-attr]
    assert (cell2.index, _cell_balancing(cell2)) == (2, 502.0)

    # Modbus: the next free extension register of each block (string 29: 26-28 hold
    # core's remaining runtime and depth of discharge; UPS 25; cell 8: register
    # 100 * ci + 8 of the string's unit)
    rmap = modbus.RegisterMap(api.table_of(h.gateway))
    ours = ("_remaining_runtime", "_balancing_time")
    at = {p.block: p.offset for p in rmap.points if p.name.endswith(ours)}
    assert at == {"string": 29, "ups": 25, "cell": 8}
    port = h.port("modbus_tcp")
    rc, values, text = await mbpoll(port, string_unit(1), 29, 1)
    assert rc == 0 and values == {29: 3601}, text
    rc, values, text = await mbpoll(port, ups_unit(1), 25, 1)
    assert rc == 0 and values == {25: 7201}, text
    rc, values, text = await mbpoll(port, string_unit(2), 208, 1)
    assert rc == 0 and values == {208: 502}, text

    # SNMP: the next column of each table (string 24, after core's 22 and 23; UPS 10;
    # cell 9: string 2, cell 2)
    base = DEFAULT_BASE
    cell_table = snmp.quantity_tables(api.table_of(h.gateway))[2]
    assert {c.name: c.subid for c in cell_table.columns}["btmsCellBalancingTime"] == 9
    assert await _snmpget(h.port("snmp"), f"{base}.1.3.1.24.1") == "3601"
    assert await _snmpget(h.port("snmp"), f"{base}.1.2.1.10.1") == "7201"
    assert await _snmpget(h.port("snmp"), f"{base}.1.4.1.9.2.2") == "502"

    # BACnet: an analog input at the next offset of each block (string 24, after core's
    # 22 and 23; UPS 8; cell 5: 1000000 + 10000 * s + 10 * c + 5)
    async with rb.BACnetClient(interface="127.0.0.1", port=0,
                               broadcast_address="127.255.255.255") as client:  # fmt: skip
        address = f"127.0.0.1:{h.port('bacnet')}"
        for instance, want in ((200124, 3601.0), (100108, 7201.0), (1020025, 502.0)):
            oid = rb.ObjectIdentifier(rb.ObjectType.ANALOG_INPUT, instance)
            value = await client.read_property(address, oid, rb.PropertyIdentifier.PRESENT_VALUE)
            assert float(getattr(value, "value", value)) == want, (instance, value)
            name = await client.read_property(address, oid, rb.PropertyIdentifier.OBJECT_NAME)
            assert str(getattr(name, "value", name)).endswith(
                ("remaining_runtime", "S2.cell002.balancing_time")
            ), name

    # REST (and its OpenAPI document) and /metrics
    web = h.port("web")
    string = json.loads(await asyncio.to_thread(_http, web, "/api/strings/S1"))
    assert string["remaining_runtime"] == 3601.0
    unit = json.loads(await asyncio.to_thread(_http, web, "/api/ups/UPS1"))
    assert unit["remaining_runtime"] == 7201.0
    cells = json.loads(await asyncio.to_thread(_http, web, "/api/strings/S2"))["reading"]["cells"]
    assert [c["balancing_time"] for c in cells] == [500.0 + c["index"] for c in cells]
    document = json.loads(await asyncio.to_thread(_http, web, "/api/openapi.json"))
    schemas = document["components"]["schemas"]
    detail = schemas["StringDetail"]["allOf"][-1]["properties"]
    assert "remaining_runtime" in detail and "balancing_time" in schemas["Cell"]["properties"]
    assert "balancing_time" not in schemas["Cell"]["required"]  # the plant's cells lack it
    core = json.dumps(openapi_document())
    assert "remaining_runtime" not in core and "balancing_time" not in core
    metrics = await asyncio.to_thread(_http, web, "/metrics")
    assert 'btms_string_remaining_runtime_seconds{string="S1"} 3601.0' in metrics
    assert 'btms_ups_remaining_runtime_seconds{ups="UPS1"} 7201.0' in metrics
    assert 'btms_cell_balancing_time_seconds{cell="2",string="S2"} 502.0' in metrics
