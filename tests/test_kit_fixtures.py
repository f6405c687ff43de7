"""The plugin test kit (btms_gateway.kit.pytest_plugin): the fixtures a third
party's tests get from btms-gateway's pytest plugin, as documented in
docs/plugin_hooks.md, "Testing your plugin"."""

from __future__ import annotations

import inspect
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from btms_gateway.core.api import EventKind, Quality, Severity, event_dict
from btms_gateway.core.plugin_manager import FailureLog, create_manager
from btms_gateway.core.registry import config_sections
from btms_gateway.kit import events, pytest_plugin, testing
from btms_gateway.kit.ports import FreePorts, listen_port, with_free_ports
from cli_support import port_free


def test_free_ports_are_free_and_never_handed_out_twice(free_ports):
    tcp = [free_ports.tcp() for _ in range(20)]
    udp = [free_ports.udp() for _ in range(20)]
    both = [free_ports.both() for _ in range(20)]
    assert len(set(tcp + udp + both)) == 60
    assert all(port_free("tcp", p) for p in tcp)
    assert all(port_free("udp", p) for p in udp)
    assert all(port_free("tcp", p) and port_free("udp", p) for p in both)


def test_every_listener_gets_a_port_and_a_stated_one_is_kept():
    models = config_sections(create_manager(), FailureLog())
    plugins = {
        "modbus_tcp": {},
        "snmp": {"v2c": True},
        "web": {},
        "bacnet": {"device_instance": 7},
        "mqtt": {"port": 1883},  # a broker's port: the test states it
        "jsonl": {"path": "/tmp/x.jsonl"},  # listens on nothing
    }
    out = with_free_ports(plugins, models, FreePorts())
    ports = [listen_port(out[name]) for name in ("modbus_tcp", "snmp", "web", "bacnet")]
    assert len(set(ports)) == 4 and not {502, 5020, 161, 1161, 8080, 47808} & set(ports)
    assert out["bacnet"]["address"] == f"127.0.0.1/8:{ports[3]}"
    assert out["snmp"]["v2c"] is True and out["bacnet"]["device_instance"] == 7
    assert out["mqtt"] == {"port": 1883} and out["jsonl"] == plugins["jsonl"]
    assert plugins["modbus_tcp"] == {}  # the test's own tables are left alone


async def test_start_gateway_serves_the_simulators_readings_on_free_ports(start_gateway):
    h = await start_gateway({"modbus_tcp": {}, "snmp": {}, "web": {}}, strings=2, ups=1)
    await h.wait_quality(Quality.GOOD)
    for name in ("S1", "S2"):
        sim, slave = h.sim_for(name)
        reading = h.gateway.store.string(name).reading
        assert reading is not None and reading.voltage_v == sim.expected(slave).voltage_v
        assert reading.cell_count == 12
    modbus, snmp, web = (h.port(n) for n in ("modbus_tcp", "snmp", "web"))
    assert len({modbus, snmp, web}) == 3
    for port in (modbus, web):
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    assert not port_free("udp", snmp)  # the agent holds it


async def test_two_gateways_side_by_side_get_their_own_ports(start_gateway):
    one = await start_gateway({"modbus_tcp": {}}, strings=1)
    two = await start_gateway({"modbus_tcp": {}}, strings=1, simulate=False)
    assert one.port("modbus_tcp") != two.port("modbus_tcp")
    assert one.gateway is not two.gateway


def test_make_event_is_a_plausible_alarm_and_takes_any_field(make_event):
    raised = make_event()
    assert raised.kind is EventKind.RAISED and raised.alarm_id == "cell_voltage_high:S1:7"
    assert (raised.severity, raised.unit, raised.limit) == (Severity.ALARM, "V", 2.40)
    assert raised.value is not None and raised.value > raised.limit and raised.persisted
    after = make_event("cleared")
    assert after.seq > raised.seq and after.alarm_id == raised.alarm_id
    assert make_event("acknowledged").by == "operator"
    gateway = make_event(rule="event_log_failing", ups=None, string=None, cell=None)
    assert gateway.path.is_gateway and gateway.alarm_id == "event_log_failing:gateway"
    unwritten = make_event(persisted=False, message="disk full")
    assert unwritten.seq == 0 and unwritten.message == "disk full"
    assert event_dict(make_event(string="S2", cell=None))["path"]["text"] == "UPS1/S2"


def test_make_reading_is_the_kits_reading(make_reading):
    reading = make_reading(12, current_a=5.0)
    assert reading.cell_count == len(reading.cells) == 12 and reading.current_a == 5.0
    assert reading.voltage_v == round(sum(c.voltage_v for c in reading.cells), 2)


THIRD_PARTY = """
import socket
import threading

import pytest
from btms_gateway.core.api import Quality

PORTS = []


@pytest.mark.asyncio
async def test_uses_the_fixtures_without_importing_them(start_gateway, make_event):
    h = await start_gateway({"modbus_tcp": {}}, strings=1)
    await h.wait_quality(Quality.GOOD)
    h.gateway.emit(make_event())
    PORTS.append(h.port("modbus_tcp"))


def test_the_gateway_was_stopped_when_the_test_ended():
    with socket.socket() as s:
        s.bind(("127.0.0.1", PORTS[0]))  # the listener is closed
    simulators = [t for t in threading.enumerate() if t.name == "bmsm-simulator"]
    assert simulators == []  # and the simulator stopped
"""


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_a_third_partys_tests_get_the_fixtures_from_the_entry_point(tmp_path):
    """What a plugin author's repository has: a test file, pytest-asyncio in its
    default strict mode, no conftest and no import of the kit."""
    (tmp_path / "test_my_plugin.py").write_text(textwrap.dedent(THIRD_PARTY))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"


def documented_fixtures() -> dict[str, str]:
    """Fixture name -> the cell that documents it, from "Testing your plugin"."""
    text = DOC.read_text()
    section = text[text.index("\n## Testing your plugin\n") :]
    return dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section, flags=re.M))


def argument_names(call: str) -> list[str]:
    """The parameter names of ``name(a=1, *, b=None, **gateway)`` as a doc writes it."""
    inner = call[call.index("(") + 1 : call.rindex(")")]
    return [p.split("=")[0].strip("* ") for p in inner.split(", ") if p.strip() != "*"]


def test_every_fixture_of_the_kit_is_documented_with_its_arguments():
    fixtures = [
        name for name, value in vars(pytest_plugin).items()
        if type(value).__name__ == "FixtureFunctionDefinition"
    ]  # fmt: skip
    documented = documented_fixtures()
    assert sorted(fixtures) == sorted(n for n in documented if n in fixtures) != []
    assert {"start_gateway", "make_reading", "make_event", "free_ports"} <= set(fixtures)
    signatures = {
        "start_gateway": inspect.signature(pytest_plugin.GatewayStarter.__call__),
        "make_reading": inspect.signature(testing.make_reading),
        "make_event": inspect.signature(events.make_event),
    }
    for name, signature in signatures.items():
        call = re.search(rf"`(?:await )?{name}\((.*?)\)`", documented[name])
        assert call, f"{name}: no `{name}(...)` call in its row"
        params = [p for p in signature.parameters if p != "self"]
        assert argument_names(call.group(0)) == params, f"{name}: documented arguments differ"
