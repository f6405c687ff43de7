"""The exports of the plant actually configured, read back against a live
gateway of that plant: the Modbus tag list (``export modbus-map --format csv``)
row by row with pymodbus, the EDE file and the BACnet object CSV object by
object with rusty-bacnet.

Two plants: the demo's (``--demo``: ``kit.demo``'s own simulators, frozen,
polled over a pseudo-terminal and RTU over TCP, with the demo's plugin
sections on free ports) and a configuration file (``-c FILE``) with a
string index set by hand and the low word first. Expected values come from
the simulators' truth and are decoded with the row's own type, scale and
word order, never with the server's map.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bacnet_support import OT, PI, _toml, rusty
from btms_gateway.core.cli import build_cli
from btms_gateway.core.demo_plant import demo_config, demo_plant
from btms_gateway.core.model import Quality
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.kit.demo import start_simulators
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from click.testing import CliRunner
from modbus_support import port_of
from pymodbus.client import AsyncModbusTcpClient

GATEWAY_BUSY = 0x0B
NO_VALUE = {0, 0x8000, 0xFFFF}  # what a register without a value may hold (map.py "missing")


def export(*args: str) -> str:
    result = CliRunner().invoke(build_cli(), ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def tags(text: str) -> list[dict[str, str]]:
    """The tag list's rows, its ``#`` comment lines skipped."""
    return list(
        csv.DictReader(io.StringIO("".join(ln for ln in text.splitlines(True) if ln[0] != "#")))
    )


def decode(row: dict[str, str], regs: list[int]) -> float:
    """A value as a SCADA reads it from the row alone: type, word order, scale."""
    if row["words"] == "2":
        hi, lo = regs if row["word_order"] == "high_first" else regs[::-1]
        raw = hi << 16 | lo
        if row["type"] == "s32" and raw & 0x8000_0000:
            raw -= 1 << 32
    else:
        raw = regs[0]
        if row["type"] == "s16" and raw & 0x8000:
            raw -= 1 << 16
    return raw * float(row["scale"] or 1)


def truth(row: dict[str, str], h: GatewayHarness, sims: dict[str, Any]) -> Any:
    """What the row's value must be: the simulator's reading of the string
    (UPS: the BM-GW rules over its strings), None for a value not measured,
    or a predicate for the values the gateway makes up (age, status)."""
    name = row["name"]
    if row["string"] == "":
        readings = [s.reading() for s in sims.values() if s.ups == row["ups"]]
        ups = {
            "ups_voltage": sum(r.voltage_v for r in readings) / len(readings),
            "ups_current": sum(r.current_a for r in readings),
            "ups_soc": sum(r.soc_pct for r in readings) / len(readings),
            "ups_string_count": len(readings),
            "ups_status": int(h.gateway.store.snapshot.ups[row["ups"]].status),
        }
        return ups[name] if name in ups else _made_up(name)
    string = sims[row["string"]]
    r = string.reading()
    if row["cell"]:
        ci = int(row["cell"])
        if ci > r.cell_count:
            return (lambda v: v == 0) if name == "cell_status" else None
        c = r.cells[ci - 1]
        return {
            "cell_status": int(c.device_status),
            "cell_voltage": c.voltage_v,
            "cell_resistance": c.resistance_mohm,
            "cell_temperature": c.temperature_c,
            "cell_soc": c.soc_pct,
            "cell_soh": c.soh_pct,
            "cell_alarm_bits": int(c.status),
        }[name]
    values = {
        "string_ups_index": string.ups_index,
        "string_status": int(h.gateway.store.string(row["string"]).device_status),
        "string_voltage": r.voltage_v,
        "string_current": r.current_a,
        "string_soc": r.soc_pct,
        "string_balance": r.balance_pct,
        "string_state": int(r.state),
        "string_alarm_word": int(r.alarms),
        "string_cell_count": r.cell_count,
        "ambient_temperature": r.ambient_temperature_c,
        "ambient_humidity": r.ambient_humidity_pct,
        "relay_status": None if r.relay_closed is None else int(r.relay_closed),
        "aux_input": None if r.aux_input_on is None else int(r.aux_input_on),
        "string_soh": r.soh_pct,
        # the simulator runs no discharge here: no estimate (analytics.md)
        "string_runtime_remaining": None,
        "string_depth_of_discharge": None,
    }
    return values[name] if name in values else _made_up(name)


def _made_up(name: str) -> Any:
    """Values the gateway makes: quality GOOD, a few seconds of age, no alarm
    (the gateway runs without the alarm engine)."""
    if name.endswith("_data_age"):
        return lambda v: 0 <= v <= 10
    assert name.endswith(("_quality", "_active_alarms", "_alarm_severity")), name
    return 0


class StringSim:
    """A string's simulator, slave id, UPS and UPS index, as the test knows them."""

    def __init__(self, sim: Any, slave: int, ups: str | None, ups_index: int) -> None:
        self.sim, self.slave, self.ups, self.ups_index = sim, slave, ups, ups_index

    def reading(self) -> Any:
        """The reading a correct poller publishes now (the simulator's truth)."""
        return self.sim.expected(self.slave)


async def read_all(port: int, rows: list[dict[str, str]]) -> dict[tuple[int, int], int]:
    """Every register the rows name, by (unit id, register): a unit's rows are
    read in runs of at most 100 adjacent registers."""
    wanted: dict[int, set[int]] = {}
    for row in rows:
        unit, reg = int(row["unit_id"]), int(row["register"])
        wanted.setdefault(unit, set()).update(range(reg, reg + int(row["words"])))
    got: dict[tuple[int, int], int] = {}
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    assert await client.connect()
    try:
        for unit, regs in wanted.items():
            ordered = sorted(regs)
            start = 0
            while start < len(ordered):
                end = start
                while end + 1 < len(ordered) and ordered[end + 1] - ordered[start] < 100:
                    end += 1
                first, count = ordered[start], ordered[end] - ordered[start] + 1
                rr = await client.read_holding_registers(first, count=count, device_id=unit)
                assert not rr.isError(), (unit, first, count, rr)
                got.update({(unit, first + i): v for i, v in enumerate(rr.registers)})
                start = end + 1
    finally:
        client.close()
    return got


def check_rows(
    rows: list[dict[str, str]],
    regs: dict[tuple[int, int], int],
    h: GatewayHarness,
    sims: dict[str, Any],
) -> None:
    for row in rows:
        unit, reg, words = int(row["unit_id"]), int(row["register"]), int(row["words"])
        raw = [regs[unit, r] for r in range(reg, reg + words)]
        value = decode(row, raw)
        want = truth(row, h, sims)
        if want is None:
            assert set(raw) <= NO_VALUE, row
        elif callable(want):
            assert want(value), (row, value)
        else:
            tolerance = float(row["scale"] or 1) / 2 + 1e-9
            assert abs(value - want) <= tolerance, (row["tag"], value, want)


async def check_roles(port: int, rows: list[dict[str, str]]) -> None:
    """Each row read on its own: a measured one answers 0x0B, a status one its value."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    assert await client.connect()
    try:
        for row in rows:
            rr = await client.read_holding_registers(
                int(row["register"]), count=int(row["words"]), device_id=int(row["unit_id"])
            )
            if row["role"] == "measured":
                assert rr.isError() and rr.exception_code == GATEWAY_BUSY, row["tag"]
            else:
                assert not rr.isError(), row["tag"]
    finally:
        client.close()


async def check_ede(address: str, ede: str, objects_csv: str) -> int:
    """Every EDE row is an object the device serves, with the EDE's name and
    unit code; the device serves nothing else; the object CSV lists the same."""
    rows = [ln.split(";") for ln in ede.splitlines() if ln and ln[0] != "#" and ln.count(";") == 15]
    by_id = {(int(r[3]), int(r[4])): r for r in rows}
    listed = {
        (int(OT[r["object_type"]].to_raw()), int(r["instance"])): r["object_name"]
        for r in csv.DictReader(io.StringIO(objects_csv))
    }
    async with rusty() as c:
        device = next(k for k in by_id if k[0] == int(OT["device"].to_raw()))
        device_id = (OT["device"], device[1])
        served = await c.read_property(address, _rid(*device_id), PI.OBJECT_LIST)
        assert {(int(o.object_type.to_raw()), o.instance) for o in served.value} == set(by_id)
        assert set(listed) | {device, next(k for k in by_id if by_id[k][3] == "56")} == set(by_id)
        ids = sorted(by_id)
        for start in range(0, len(ids), 40):
            batch = ids[start : start + 40]
            specs = [
                (
                    _rid(_kind(k), i),
                    [(PI.OBJECT_NAME, None)] + ([(PI.UNITS, None)] if k == 0 else []),
                )
                for k, i in batch
            ]
            for (k, i), result in zip(
                batch, await c.read_property_multiple(address, specs), strict=True
            ):
                values = [r["value"].value for r in result["results"]]
                row = by_id[k, i]
                assert values[0] == row[2], (k, i)
                if k == 0:  # analog input: EDE unit-code = the object's units
                    assert values[1] == int(row[14]), row[2]
                if (k, i) in listed:
                    assert listed[k, i] == row[2]
    return len(rows)


def _kind(raw: int) -> Any:
    return next(t for t in OT.values() if int(t.to_raw()) == raw)


def _rid(kind: Any, instance: int) -> Any:
    import rusty_bacnet as rb

    return rb.ObjectIdentifier(kind, instance)


@asynccontextmanager
async def demo_gateway(tmp_path: Path) -> AsyncIterator[tuple[GatewayHarness, dict[str, Any]]]:
    """The demo's plant with its own simulators (frozen) and its Modbus TCP and
    BACnet sections, on free ports; (harness, StringSim by string name)."""
    pm = create_manager()
    demo = demo_plant(pm)
    sims, buses = start_simulators(1, tmp_path, frozen=True)
    try:
        data = demo_config(buses, str(tmp_path / "var"), pm)
        modbus = demo.plugins["modbus_tcp"].model_dump(mode="json") | {"port": 0}
        bacnet = demo.plugins["bacnet"].model_dump(mode="json")
        bacnet["address"] = f"127.0.0.1/8:{free_udp_port()}"
        data["plugins"] = {"modbus_tcp": modbus, "bacnet": bacnet}
        cfg = demo.gateway.with_indexes()
        index = {u.name: u.index for u in cfg.ups}
        bus_sim = dict(zip((b["name"] for b in buses), sims, strict=True))
        strings = {
            s.name: StringSim(bus_sim[s.bus], s.slave_id, s.ups, index[s.ups] if s.ups else 0)
            for s in cfg.strings
        }
        async with GatewayHarness(data, external_buses=True) as h:
            await h.wait_quality(Quality.GOOD, timeout=30)
            yield h, strings
    finally:
        for sim in sims:
            sim.stop()


@pytest.mark.slow  # ~3 s on a shared 2-core box
async def test_the_demos_tag_list_is_what_its_modbus_server_serves(tmp_path: Path) -> None:
    text = export("modbus-map", "--format", "csv", "--demo")
    assert "positions 1..120 of every string" in text  # the cell rule, said in the file
    rows = tags(text)
    assert len(rows) == 2 * 9 + 4 * (20 + 120 * 7)  # points: UPS 9, string 20, cell 7
    async with demo_gateway(tmp_path) as (h, sims):
        port = port_of(h)
        check_rows(rows, await read_all(port, rows), h, sims)  # every row, every cell position
        # roles: B2 stops answering; its rows and UPS-B's measured ones are withheld
        b2 = sims["B2"]
        b2.sim.vanish(b2.slave)
        await h.wait_quality(Quality.STALE, "B2", timeout=20)
        await check_roles(
            port, [r for r in rows if r["string"] == "B2" or r["tag"].startswith("UPS-B.")]
        )


async def test_the_demos_ede_file_lists_the_objects_its_device_serves(tmp_path: Path) -> None:
    ede = export("ede", "--demo")
    objects = export("bacnet-objects", "--format", "csv", "--demo")
    async with demo_gateway(tmp_path) as (h, _):
        bind = h.config_data["plugins"]["bacnet"]["address"]  # 127.0.0.1/8:PORT
        checked = await check_ede(f"127.0.0.1:{bind.rsplit(':', 1)[1]}", ede, objects)
    assert checked > 4 * 120 * 6  # every cell position of every string has objects


async def test_a_config_files_exports_are_what_its_gateway_serves(tmp_path: Path) -> None:
    """-c FILE: unit ids from the configured indexes (S3 set to 7 -> unit 107),
    the configured word order, --cells N positions (S3 has fewer: its last
    positions are empty), BACnet cells_per_string. Strings of >= 10 cells: the
    device measures 20..800 V."""
    bacnet_port = free_udp_port()
    config = plant_config(
        strings=3,
        ups=2,
        plugins={
            "modbus_tcp": {"port": 0, "word_order": "low_first"},
            "bacnet": {"address": f"127.0.0.1/8:{bacnet_port}", "cells_per_string": 8},
        },
        stale_after_s=60.0,
        data_dir=str(tmp_path),
    )
    config["strings"][2]["index"] = 7
    async with GatewayHarness(config, simulate=True, cells={"S1": 12, "S2": 12, "S3": 10}) as h:
        await h.wait_quality(Quality.GOOD)
        path = tmp_path / "gw.toml"
        path.write_text(_toml(h.config_data))
        # 12 positions: S3's cells 11 and 12 are past its count (10)
        rows = tags(export("modbus-map", "--format", "csv", "-c", str(path), "--cells", "12"))
        assert len(rows) == 2 * 9 + 3 * (20 + 12 * 7)
        assert {r["unit_id"] for r in rows} == {"1", "2", "101", "102", "107"}
        assert {r["word_order"] for r in rows if r["words"] == "2"} == {"low_first"}
        sims = {
            s["name"]: StringSim(*h.sim_for(s["name"]), s["ups"], int(s["ups"][3:]))
            for s in h.config_data["strings"]
        }
        check_rows(rows, await read_all(port_of(h), rows), h, sims)
        ede = export("ede", "-c", str(path))
        objects = export("bacnet-objects", "--format", "csv", "-c", str(path))
        assert await check_ede(f"127.0.0.1:{bacnet_port}", ede, objects) > 3 * 8 * 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["modbus-map", "--format", "md", "--demo"], "use csv for one plant"),
        (["bacnet-objects", "--format", "md", "--demo"], "use csv for one plant"),
        (["ede", "--demo", "-c", "pyproject.toml"], "not both"),
    ],
)
def test_a_plant_and_the_generic_table_are_not_mixed_up(args: list[str], message: str) -> None:
    result = CliRunner().invoke(build_cli(), ["export", *args])
    assert result.exit_code == 2 and message in result.output
