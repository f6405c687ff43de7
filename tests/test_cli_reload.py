"""SIGHUP reloads the configuration of a real `btms-gateway run` process.

The file is validated first: a good one stops the running gateway cleanly
and starts one with the new settings in the same process, on the same ports;
a bad one is logged and the running configuration stays; one that cannot
start (its port is taken) brings the previous configuration back. Each step
is seen the way an operator sees it: the REST API and Modbus TCP of the
running process (pymodbus's client), and its log.
"""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.kit.ports import FreePorts
from cli_support import RunningGateway
from conftest import waiting_gateway_config
from pymodbus.client import ModbusTcpClient


def write_config(
    tmp_path: Path, *, string: str, interval: float, web: int, modbus: int, index: int = 1
) -> Path:
    """The hardware-less config of the CLI tests, with this string name, index
    and poll interval, and web and Modbus on the given ports."""
    config = waiting_gateway_config(tmp_path)
    text = config.read_text()
    text = text.replace("poll_interval_s = 0.5", f"poll_interval_s = {interval}")
    text = text.replace('name = "A1"', f'name = "{string}"\nindex = {index}')
    config.write_text(f"{text}[plugins.web]\nport = {web}\n[plugins.modbus_tcp]\nport = {modbus}\n")
    return config


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[RunningGateway, Path, int, int]]:
    """`btms-gateway run FILE` with string A1 polled every 0.5 s, web and
    Modbus on free ports: (process, FILE, web port, Modbus port). It must
    still stop cleanly at the end."""
    ports = FreePorts()
    web, modbus = ports.tcp(), ports.tcp()
    config = write_config(tmp_path, string="A1", interval=0.5, web=web, modbus=modbus)
    gw = RunningGateway(str(config))
    try:
        gw.wait_for("gateway 'btms-gateway' running")
        yield gw, config, web, modbus
    finally:
        returncode = gw.stop()
    assert returncode == 0, "\n".join(gw.log)


def rest(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return json.load(reply)


def string_names(port: int) -> list[str]:
    return [s["name"] for s in rest(port, "/api/strings")]


def modbus_string_unit_answers(port: int, unit: int) -> bool:
    """Unit 100 + string index answers register 0 (the string's UPS index)."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert client.connect()
    try:
        reply = client.read_holding_registers(0, count=1, device_id=unit)
        return not reply.isError()
    finally:
        client.close()


def test_sighup_reloads_a_good_file_and_keeps_the_running_config_on_a_bad_one(
    running: tuple[RunningGateway, Path, int, int],
) -> None:
    gw, config, web, modbus = running
    assert string_names(web) == ["A1"]
    assert rest(web, "/api/buses")[0]["interval_s"] == 0.5
    assert modbus_string_unit_answers(modbus, 101)

    # a good file: another string name, index and poll interval
    write_config(config.parent, string="B7", interval=1.5, web=web, modbus=modbus, index=2)
    gw.signal(signal.SIGHUP)
    gw.wait_for(f"SIGHUP: reloading the configuration from {config}")
    gw.wait_for(f"configuration reloaded from {config}")
    assert string_names(web) == ["B7"]
    assert rest(web, "/api/buses")[0]["interval_s"] == 1.5
    # the Modbus port was released and bound again, with the new unit ids
    assert modbus_string_unit_answers(modbus, 102)
    assert not modbus_string_unit_answers(modbus, 101)

    # a bad file: logged, the running configuration stays
    config.write_text(config.read_text().replace("= 1.5", "= inf"))
    gw.signal(signal.SIGHUP)
    line = gw.wait_for("configuration not reloaded")
    assert line.endswith(f"{config}: gateway.poll_interval_s: expected a finite number, found inf")
    gw.wait_for("the running configuration stays in force")
    assert string_names(web) == ["B7"]
    assert gw.proc.poll() is None


@pytest.mark.slow  # ~5 s on a shared 2-core box
def test_a_reload_that_cannot_start_brings_the_previous_config_back(
    running: tuple[RunningGateway, Path, int, int],
) -> None:
    gw, config, web, modbus = running
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        write_config(config.parent, string="B7", interval=0.5, web=web, modbus=busy)
        gw.signal(signal.SIGHUP)
        line = gw.wait_for("failed to start")
        assert f"plugin 'modbus_tcp' failed to start: cannot listen on 127.0.0.1:{busy}" in line
        gw.wait_for("starting the previous configuration again")
        gw.wait_for("gateway 'btms-gateway' running")
        assert string_names(web) == ["A1"]
        assert modbus_string_unit_answers(modbus, 101)
