"""Up to 128 strings (four BM-GWs' worth): the configuration takes them and
refuses a 129th by name, and every northbound protocol addresses string 128
on its own documented address, strings 1..32 where the BM-GW has them.

The wire test runs 128 strings of 12 cells (24 V, inside the device's
20..800 V, so GOOD) on four pseudo-terminal buses of BM-SM simulators, gives
string 128 a current no other string has, and reads it with mbpoll (unit id
228), net-snmp's snmpget (index 128) and rusty-bacnet (instance 200000 +
100*128 + 2), each an independent client.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bacnet_support import PI, rid, rusty
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.model import MAX_STRINGS, MAX_UPS, Quality
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import load_config
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.bacnet.objects import (
    STRING_QUANTITIES,
    Layout,
    build_points,
    string_instance,
)
from btms_gateway.plugins.bacnet.settings import MAX_INSTANCE
from btms_gateway.plugins.modbus_tcp import plugin as modbus_plugin
from btms_gateway.plugins.modbus_tcp.map import (
    LAST_INDIVIDUAL_UNIT,
    cell_register,
    point,
    string_unit,
    ups_unit,
)
from cli_support import check
from modbus_support import mbpoll, wire
from snmp_support import V2C, agent_address, net_snmp, snmp_settings

BUSES = 4


def plant_toml(strings: int, index: int | None = None) -> str:
    """A file of ``strings`` strings on one bus (slave ids 1..n), in 32 UPS."""
    lines = ['[[buses]]\nname = "b"\nport = "/dev/null"\n']
    lines += [f'[[ups]]\nname = "U{u}"\n' for u in range(1, MAX_UPS + 1)]
    for i in range(1, strings + 1):
        extra = f"index = {index}\n" if index is not None and i == 1 else ""
        lines.append(
            f'[[strings]]\nname = "S{i}"\nbus = "b"\nslave_id = {i}\n'
            f'ups = "U{(i - 1) % MAX_UPS + 1}"\n{extra}'
        )
    return "\n".join(lines)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, create_manager())
    return str(info.value).splitlines()


# --- the configuration ---------------------------------------------------------------------
def test_a_128_string_config_is_accepted_with_indexes_1_to_128(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(plant_toml(128))
    loaded = load_config(path, create_manager())
    assert [s.index for s in loaded.gateway.strings] == list(range(1, 129))
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "128 string(s)" in result.stdout


def test_a_129th_string_is_refused_naming_file_key_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(plant_toml(129))
    assert problems(path) == [
        f"{path}: strings: expected at most 128 [[strings]] entries (indexes 1..128, each "
        "addressed on every protocol), found 129"
    ]
    result = check(path)
    assert result.returncode == 2 and "found 129" in result.stderr


def test_a_string_index_past_128_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "idx.toml"
    path.write_text(plant_toml(2, index=129))
    assert problems(path) == [
        f"{path}: strings[0].index: expected less than or equal to 128, found 129"
    ]


# --- the addresses, from the tables the servers use -----------------------------------------
def test_modbus_unit_ids_keep_the_bmgw_map_and_never_collide() -> None:
    assert [string_unit(i) for i in range(1, 33)] == list(range(101, 133))  # BM-GW v2
    assert [ups_unit(u) for u in range(1, 33)] == list(range(1, 33))
    strings = [string_unit(i) for i in range(1, MAX_STRINGS + 1)]
    assert strings[32:] == list(range(133, 229))
    units = strings + [ups_unit(u) for u in range(1, MAX_UPS + 1)]
    assert len(set(units)) == len(units)
    assert all(1 <= u <= LAST_INDIVIDUAL_UNIT for u in units)


def layout(strings: int) -> Layout:
    return Layout(
        ups=tuple((f"U{u}", u) for u in range(1, MAX_UPS + 1)),
        strings=tuple((f"S{s}", s, f"U{(s - 1) % MAX_UPS + 1}") for s in range(1, strings + 1)),
    )


def test_bacnet_instances_are_unique_at_128_strings_and_unchanged_for_1_to_32() -> None:
    big = build_points(layout(MAX_STRINGS))
    assert len({p.oid for p in big}) == len(big) and len({p.name for p in big}) == len(big)
    assert max(p.instance for p in big) <= MAX_INSTANCE
    small = {p.name: p.oid for p in build_points(layout(32))}
    by_name = {p.name: p.oid for p in big}
    assert all(by_name[name] == oid for name, oid in small.items())
    assert by_name["S128.current"] == ("analogInput", 212_802)
    assert by_name["S128.cell012.voltage"] == ("analogInput", 2_280_120)


# --- on the wire ------------------------------------------------------------------------------
def config_128(bacnet_port: int) -> dict:
    """128 strings of 12 cells over four buses (32 strings a bus, slave ids 1..32)."""
    plugins = {
        "modbus_tcp": {"port": 0},
        "snmp": snmp_settings(),
        "bacnet": {"address": f"127.0.0.1/8:{bacnet_port}", "device_instance": 4128},
    }
    config = plant_config(strings=MAX_STRINGS, ups=MAX_UPS, plugins=plugins, stale_after_s=60.0,
                          poll_interval_s=1.0)  # fmt: skip
    template = config["buses"][0]
    config["buses"] = [{**template, "name": f"bus{b}"} for b in range(1, BUSES + 1)]
    for i, s in enumerate(config["strings"]):
        s["bus"], s["slave_id"] = f"bus{i % BUSES + 1}", i // BUSES + 1
    config["history"] = {"enabled": False}  # not what this test is about: keep it light
    return config


@pytest.mark.peer
@pytest.mark.slow  # ~3.5 s on a shared 2-core box
async def test_string_128_is_read_on_its_own_address_by_independent_clients() -> None:
    bacnet_port = free_udp_port()
    h = GatewayHarness(config_128(bacnet_port), simulate=True, cells=12)
    sim, slave = h.sim_for("S128")
    sim.set_string(slave, current_a=-42.5)
    async with h:
        await h.wait_quality(Quality.GOOD, timeout=90)
        snap = h.gateway.store.string("S128")
        assert snap.index == 128 and snap.reading is not None
        assert snap.reading.current_a == -42.5 and snap.reading.voltage_v >= 20

        # Modbus TCP: unit id 228 by mbpoll; string 32 stays on the BM-GW's 132
        port = modbus_plugin.service(h.gateway).port
        rc, regs, text = await mbpoll(port, 228, 0, 15)
        assert rc == 0, text
        block = [regs[r] for r in range(15)]
        assert wire("string_current", block) == -42.5
        assert abs(wire("string_voltage", block) - snap.reading.voltage_v) < 0.006
        assert wire("string_cell_count", block) == 12
        v12 = point("cell_voltage")
        rc, regs, text = await mbpoll(port, 228, cell_register(12, v12.offset), 1)
        assert rc == 0, text
        assert regs[cell_register(12, v12.offset)] == round(snap.reading.cells[11].voltage_v * 1000)
        rc, regs, text = await mbpoll(port, 132, 4, 2)
        assert rc == 0, text
        s32 = h.gateway.store.string("S32").reading
        assert wire("string_current", [0, 0, 0, 0, regs[4], regs[5]]) == s32.current_a
        rc, _, text = await mbpoll(port, 229, 0, 1)  # past the last string: no such unit
        assert rc != 0 and "Gateway path unavailable" in text, text

        # SNMP: index 128 by net-snmp's snmpget
        want = {
            "btmsStringName.128": "STRING: S128",
            "btmsStringCurrent.128": "INTEGER: -42.50 A",
            "btmsStringQuality.128": "INTEGER: good(1)",
        }
        oids = [f"BTMS-GATEWAY-MIB::{name}" for name in want]
        r = await net_snmp("snmpget", *V2C, agent_address(), *oids)
        assert r.returncode == 0, r.stderr
        assert [f"{name} = {value}" in r.stdout for name, value in want.items()] == [True] * 3, (
            r.stdout
        )

        # BACnet: analog-input 200000 + 100*128 + 2 by rusty-bacnet
        current = next(q for q in STRING_QUANTITIES if q.key == "current")
        instance = string_instance(128, current.offset)
        assert instance == 212_802
        where = f"127.0.0.1:{bacnet_port}"
        async with rusty() as c:
            pv = await c.read_property(where, rid("analogInput", instance), PI.PRESENT_VALUE)
            name = await c.read_property(where, rid("analogInput", instance), PI.OBJECT_NAME)
        assert pv.value == pytest.approx(-42.5, abs=0.005)
        assert name.value == "S128.current"
