"""The BACnet/IP device as BACnet clients see it: discovery, reads, writes, EDE.

The gateway polls BM-SM simulators over pseudo-terminals through the real
RTU poller. Two clients: rusty-bacnet (an independent Rust stack from PyPI
that no one here wrote) and bacpypes3's own client. Server and clients bind
127.0.0.1 on different UDP ports; discovery is a Who-Is sent to the device's
address (see kit/bacnet_client.py for why broadcast cannot work on
loopback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rusty_bacnet as rb
from bacnet_support import (
    DEVICE,
    OT,
    PI,
    _by_name,
    _pv,
    _toml,
    config,
    device,
    poll,
    rid,
    rusty,
    served_ids,
    truth,
)
from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.pdu import Address
from btms_gateway.core.cli import build_cli
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.gateway import GatewayStartError
from btms_gateway.kit.bacnet_client import make_client, oid, read_values
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness
from btms_gateway.plugins.bacnet.plugin import service
from click.testing import CliRunner


async def test_who_is_and_who_has_find_the_device() -> None:
    async with device() as (_h, address), rusty() as c:
        await c.who_is_directed(address)
        found = await poll(c.discovered_devices, what="an I-Am")
        assert [(d.object_identifier.instance, d.vendor_id) for d in found] == [(DEVICE, 999)]
        app = make_client(free_udp_port())
        try:
            i_ams = await app.who_is(DEVICE, DEVICE, address=Address(address), timeout=2)
            assert [i.iAmDeviceIdentifier[1] for i in i_ams] == [DEVICE]
            i_haves = await app.who_has(
                object_name="S1.cell003.voltage", address=Address(address), timeout=2
            )
            assert [(str(i.objectIdentifier[0]), i.objectIdentifier[1]) for i in i_haves] == [
                ("analog-input", 1_010_030)
            ]
        finally:
            app.close()


async def test_values_units_and_names_equal_the_gateways() -> None:
    async with device() as (h, address), rusty() as c:
        s1 = truth(h, "S1")
        ups1 = h.gateway.store.snapshot.ups["UPS1"]
        cell3 = s1.cells[2]
        expected = {
            "S1.voltage": (s1.voltage_v, 5),
            "S1.current": (s1.current_a, 3),
            "S1.ambient_humidity": (s1.ambient_humidity_pct, 29),
            "S1.cell003.voltage": (cell3.voltage_v, 5),
            "S1.cell003.resistance": (cell3.resistance_mohm, 145),
            "S1.cell003.temperature": (cell3.temperature_c, 62),
            "S1.cell003.soh": (cell3.soh_pct, 98),
            "UPS1.voltage": (ups1.voltage_v, 5),
        }
        points = _by_name(h)
        specs = [
            (rid(*points[n].oid), [(PI.PRESENT_VALUE, None), (PI.UNITS, None),
                                   (PI.OBJECT_NAME, None), (PI.STATUS_FLAGS, None)])
            for n in expected
        ]  # fmt: skip
        results = await c.read_property_multiple(address, specs)
        for name, result in zip(expected, results, strict=True):
            value, units, object_name, flags = (r["value"].value for r in result["results"])
            assert value == pytest.approx(expected[name][0], rel=1e-6), name
            assert (units, object_name, flags["data"]) == (expected[name][1], name, b"\x00")
        # one of each kind through the bacpypes3 client
        app = make_client(free_udp_port())
        try:
            ids = [oid(*points[n].oid) for n in ("S1.current", "S1.state", "S1.aux", "S1.relay")]
            got = await read_values(app, address, ids)
            assert list(got.values()) == [pytest.approx(-42.5), 3, 1, 0]  # discharge, on, open
            names = await read_values(app, address, ids, "objectName")
            assert list(names.values()) == ["S1.current", "S1.state", "S1.aux", "S1.relay"]
            state_text = await app.read_property(Address(address), ids[1], "stateText")
            assert list(state_text)[2] == "discharge"
        finally:
            app.close()


async def test_never_read_string_is_served_with_communication_failure() -> None:
    async with device() as (h, address), rusty() as c:
        points = _by_name(h)
        for name in ("S4.voltage", "S4.cell001.soc", "UPS2.current"):  # S4 never answered
            flags = await c.read_property(address, rid(*points[name].oid), PI.STATUS_FLAGS)
            reliability = await c.read_property(address, rid(*points[name].oid), PI.RELIABILITY)
            assert (flags.value["data"], reliability.value) == (b"\x40", 12), name  # fault
        # S3 has 10 cells: cells 11 and 12 have no sensor, cell 10 is fine
        for name, expected in (("S3.cell010.voltage", 0), ("S3.cell011.voltage", 1)):
            reliability = await c.read_property(address, rid(*points[name].oid), PI.RELIABILITY)
            assert reliability.value == expected, name


async def test_rpm_reads_the_whole_object_list_and_all_properties() -> None:
    async with device() as (h, address), rusty() as c:
        served = served_ids(h)
        whole = await c.read_property(address, rid("device", DEVICE), PI.OBJECT_LIST)
        assert {(_kind(o), o.instance) for o in whole.value} == served
        count = await c.read_property(address, rid("device", DEVICE), PI.OBJECT_LIST, 0)
        assert count.value == len(served)
        # ALL over every object of the device in one segmented request
        specs = [(rid(*o), [(PI.ALL, None)]) for o in sorted(served)]
        results = await c.read_property_multiple(address, specs)
        assert len(results) == len(served)
        assert all(not r["error"] for res in results for r in res["results"])
        required = await c.read_property_multiple(
            address, [(rid(*o), [(PI.REQUIRED, None)]) for o in sorted(served)]
        )
        assert len(required) == len(served)
        app = make_client(free_udp_port())
        try:
            [(_, _, _, object_list)] = await app.read_property_multiple(
                Address(address), [oid("device", DEVICE), ["objectList"]]
            )
            assert {(_bp_kind(o), o[1]) for o in object_list} == served
        finally:
            app.close()


def _kind(o: Any) -> str:
    return next(k for k, v in OT.items() if v == o.object_type)


def _bp_kind(o: Any) -> str:
    return {"analog-input": "analogInput", "binary-input": "binaryInput",
            "multi-state-input": "multiStateInput", "structured-view": "structuredView",
            "device": "device", "network-port": "networkPort"}[str(o[0])]  # fmt: skip


async def test_writes_are_refused_with_write_access_denied() -> None:
    async with device() as (h, address), rusty() as c:
        volts = rid(*_by_name(h)["S1.voltage"].oid)
        for prop, value in (
            (PI.PRESENT_VALUE, rb.PropertyValue.real(1.0)),
            (PI.OUT_OF_SERVICE, rb.PropertyValue.boolean(True)),
        ):
            with pytest.raises(rb.BacnetProtocolError) as err:
                await c.write_property(address, volts, prop, value)
            assert (err.value.error_class, err.value.error_code) == (2, 40)  # property, denied
        with pytest.raises(rb.BacnetProtocolError) as wpm:
            await c.write_property_multiple(
                address,
                [(volts, [(PI.DESCRIPTION, rb.PropertyValue.character_string("x"), None, None)])],
            )
        assert (wpm.value.error_class, wpm.value.error_code) == (2, 40)
        app = make_client(free_udp_port())
        try:
            for prop, value in (("presentValue", 5.0), ("outOfService", True)):
                with pytest.raises(ErrorRejectAbortNack) as bp_err:
                    await app.write_property(
                        Address(address), oid("analogInput", 200101), prop, value
                    )
                assert str(bp_err.value.errorCode) == "write-access-denied"
        finally:
            app.close()
        assert _pv(service(h.gateway), "S1.voltage") == pytest.approx(truth(h, "S1").voltage_v)


async def test_ede_export_lists_every_object_the_device_serves(tmp_path: Path) -> None:
    async with device() as (h, address), rusty() as c:
        whole = await c.read_property(address, rid("device", DEVICE), PI.OBJECT_LIST)
        served = {(int(o.object_type.to_raw()), o.instance) for o in whole.value}
        cfg = tmp_path / "gw.toml"
        cfg.write_text(_toml(h.config_data))
        out = tmp_path / "plant_EDE.csv"
        result = CliRunner().invoke(build_cli(), ["export", "ede", "-c", str(cfg), "-o", str(out)])
        assert result.exit_code == 0, result.output
        rows = [
            line.split(";")
            for line in out.read_text().splitlines()
            if line and not line.startswith("#") and line.count(";") == 15
        ]
        assert {(int(r[3]), int(r[4])) for r in rows} == served
        assert all(r[1] == str(DEVICE) for r in rows)


async def test_bac0_reads_the_device_with_the_pinned_bacpypes3() -> None:
    """BAC0 talks to the device too: the BAC0 of the test extra works with the
    pinned bacpypes3 (BAC0 is an integrator's interactive client, docs/bacnet.md;
    the device itself is built on bacpypes3 directly)."""
    import BAC0

    async with device() as (h, address):
        bacnet = BAC0.lite(ip="127.0.0.1/8", port=free_udp_port(), deviceId=4_194_001)
        try:
            value = await bacnet.read(f"{address} analogInput 200101 presentValue")
            units = await bacnet.read(f"{address} analogInput 200101 units")
        finally:
            bacnet.disconnect()
        expected = truth(h, "S1").voltage_v
        assert (value, str(units)) == (pytest.approx(expected), "volts")


async def test_summary_mode_serves_min_max_mean_instead_of_cells() -> None:
    async with device(cells="summary") as (h, address), rusty() as c:
        points = _by_name(h)
        assert not [n for n in points if ".cell0" in n]
        cells = truth(h, "S1").cells
        volts = [x.voltage_v for x in cells]
        names = ("S1.cells.voltage.min", "S1.cells.voltage.max", "S1.cells.voltage.mean")
        specs = [(rid(*points[n].oid), [(PI.PRESENT_VALUE, None)]) for n in names]
        got = [
            r["results"][0]["value"].value for r in await c.read_property_multiple(address, specs)
        ]
        assert got == pytest.approx([min(volts), max(volts), sum(volts) / len(volts)], rel=1e-6)


async def test_start_up_errors_name_the_setting() -> None:
    port = free_udp_port()
    # unknown string names are caught when the config is validated, before any start
    with pytest.raises(ConfigError, match=r"plugins.bacnet.cells: .*\['S9'\]"):
        async with GatewayHarness(config(port, cells=["S1", "S9"])):
            pass
    async with device() as (_h, address):
        taken = int(address.rsplit(":", 1)[1])
        with pytest.raises(GatewayStartError, match=f"cannot bind 127.0.0.1:{taken}"):
            async with GatewayHarness(config(taken)):
                pass


async def test_structured_views_list_their_subordinates() -> None:
    async with device() as (h, address), rusty() as c:
        points = _by_name(h)
        for name in ("plant", "UPS1", "S1", "S1.cell003"):
            view = points[name]
            got = await c.read_property(address, rid(*view.oid), PI.SUBORDINATE_LIST)
            assert [(_kind(o), o.instance) for o in got.value] == list(view.children), name
        app = make_client(free_udp_port())
        try:
            refs = await app.read_property(
                Address(address), oid(*points["S1.cell003"].oid), "subordinateList"
            )
            assert [r.objectIdentifier[1] for r in refs] == [1_010_030 + q for q in range(5)]
        finally:
            app.close()
