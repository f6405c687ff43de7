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
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

CLI = [sys.executable, "-m", "btms_gateway.core"]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path, *, string: str, interval: float, web: int, modbus: int, index: int = 1
) -> None:
    path.write_text(f"""
[gateway]
poll_interval_s = {interval}
data_dir = "{path.parent / "var"}"
[[buses]]
name = "b"
port = "{path.parent / "ttyNOTYET"}"
wait_for_port = true
[[strings]]
name = "{string}"
bus = "b"
slave_id = 1
index = {index}
[plugins.web]
port = {web}
[plugins.modbus_tcp]
port = {modbus}
""")


class Gateway:
    """A `btms-gateway run FILE` process whose log lines a test can wait for."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "run", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no log line with {text!r} within {timeout} s:\n" + "\n".join(self.log)
                )
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"the gateway exited ({self.proc.returncode}) before logging {text!r}:\n"
                        + "\n".join(self.log)
                    ) from None
                continue
            self.log.append(line)
            if text in line:
                return line

    def hangup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    ports = {"web": free_tcp_port(), "modbus": free_tcp_port()}
    yield tmp_path / "gw.toml", ports


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
    gateway_process: tuple[Path, dict[str, int]],
) -> None:
    config, ports = gateway_process
    web, modbus = ports["web"], ports["modbus"]
    write_config(config, string="A1", interval=0.5, web=web, modbus=modbus)
    gw = Gateway(config)
    try:
        gw.wait_for("gateway 'btms-gateway' running")
        assert string_names(web) == ["A1"]
        assert rest(web, "/api/buses")[0]["interval_s"] == 0.5
        assert modbus_string_unit_answers(modbus, 101)

        # a good file: another string name, index and poll interval
        write_config(config, string="B7", interval=1.5, web=web, modbus=modbus, index=2)
        gw.hangup()
        gw.wait_for(f"SIGHUP: reloading the configuration from {config}")
        gw.wait_for(f"configuration reloaded from {config}")
        assert string_names(web) == ["B7"]
        assert rest(web, "/api/buses")[0]["interval_s"] == 1.5
        # the Modbus port was released and bound again, with the new unit ids
        assert modbus_string_unit_answers(modbus, 102)
        assert not modbus_string_unit_answers(modbus, 101)

        # a bad file: logged, the running configuration stays
        config.write_text(config.read_text().replace("= 1.5", "= inf"))
        gw.hangup()
        line = gw.wait_for("configuration not reloaded")
        assert line.endswith(
            f"{config}: gateway.poll_interval_s: expected a finite number, found inf"
        )
        gw.wait_for("the running configuration stays in force")
        assert string_names(web) == ["B7"]
        assert gw.proc.poll() is None
    finally:
        returncode = gw.stop()
    assert returncode == 0, "\n".join(gw.log)


def test_a_reload_that_cannot_start_brings_the_previous_config_back(
    gateway_process: tuple[Path, dict[str, int]],
) -> None:
    config, ports = gateway_process
    web, modbus = ports["web"], ports["modbus"]
    write_config(config, string="A1", interval=0.5, web=web, modbus=modbus)
    gw = Gateway(config)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        try:
            gw.wait_for("gateway 'btms-gateway' running")
            write_config(config, string="B7", interval=0.5, web=web, modbus=busy)
            gw.hangup()
            line = gw.wait_for("failed to start")
            assert f"plugin 'modbus_tcp' failed to start: cannot listen on 127.0.0.1:{busy}" in line
            gw.wait_for("starting the previous configuration again")
            gw.wait_for("gateway 'btms-gateway' running")
            assert string_names(web) == ["A1"]
            assert modbus_string_unit_answers(modbus, 101)
        finally:
            returncode = gw.stop()
    assert returncode == 0, "\n".join(gw.log)
