"""The Sparkplug payloads as Debian's protoc (C++ libprotobuf, not the
Python runtime that encoded them) decodes them against Tahu's
sparkplug_b.proto, and the generated module as protoc writes it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from btms_gateway.core.model import Quality, StringSnapshot
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.mqtt.exception import ExceptionFilter
from btms_gateway.plugins.mqtt.quantities import (
    metric_name,
)
from btms_gateway.plugins.mqtt.settings import MqttSettings
from btms_gateway.plugins.mqtt.sparkplug import payloads
from btms_gateway.plugins.mqtt.sparkplug.generate import PROTO
from conftest import require_tool

DEADBANDS = MqttSettings().deadbands()


def snapshot(reading: Any, quality: Quality = Quality.GOOD, name: str = "S1") -> StringSnapshot:
    return StringSnapshot(name, 1, "UPS1", 1, 1, "bus1", quality, reading, 1000.0)


# -- payloads through Debian's protoc ------------------------------------------------------------
def protoc_decode(payload: bytes) -> dict[str, Any]:
    """``protoc --decode`` (C++ libprotobuf) of a payload, its text format
    read into nested dicts (repeated fields as lists)."""
    protoc = require_tool("protoc", "protobuf-compiler")
    out = subprocess.run(
        [protoc, f"--proto_path={PROTO.parent}", "--decode=org.eclipse.tahu.protobuf.Payload",
         PROTO.name], input=payload, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    stack: list[dict[str, Any]] = [{}]
    for raw in out.splitlines():
        line = raw.strip()
        if line.endswith("{"):
            child: dict[str, Any] = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(child)
            stack.append(child)
        elif line == "}":
            stack.pop()
        elif line:
            key, _, value = line.partition(": ")
            stack[-1].setdefault(key, []).append(text_value(value))
    return stack[0]


def text_value(value: str) -> Any:
    """A scalar of protoc's text format (numbers, true/false, quoted strings)."""
    try:
        return json.loads(value)
    except ValueError:
        return value  # an enum name


def one(d: dict[str, Any], key: str) -> Any:
    (value,) = d[key]
    return value


def test_device_birth_and_data_as_protoc_decodes_them() -> None:
    f = ExceptionFilter(DEADBANDS)
    r = make_reading(cells=2)
    f.update(snapshot(r))
    values = list(f.current("S1"))
    raw = payloads.device_birth(5000, 7, 3, values, Quality.GOOD, 4000, 3000)
    p = protoc_decode(raw)
    assert one(p, "seq") == 7 and one(p, "timestamp") == 5000
    metrics = {one(m, "name"): m for m in p["metrics"]}
    assert set(metrics) == {metric_name(s) for s, _ in values}
    v = metrics["Voltage"]
    assert one(v, "alias") == 3 << 12 | 2 and one(v, "datatype") == 9
    assert one(v, "float_value") == pytest.approx(r.voltage_v, rel=1e-6)
    assert one(v, "timestamp") == 4000
    props = one(v, "properties")
    assert props["keys"] == ["engUnit", "Quality"]
    assert [one(x, "type") for x in props["values"]] == [12, 3]
    assert one(props["values"][0], "string_value") == "V"
    assert one(props["values"][1], "int_value") == 192
    q = metrics["Quality"]
    assert one(q, "string_value") == "good" and one(q, "timestamp") == 3000
    cell = metrics["Cells/002/Resistance"]
    assert one(cell, "float_value") == pytest.approx(r.cells[1].resistance_mohm, rel=1e-6)
    assert one(cell, "datatype") == 9 and "Quality" in one(cell, "properties")["keys"]
    assert one(metrics["Relay Closed"], "boolean_value") is False
    assert one(metrics["Alarm Word"], "datatype") == 6
    # a historical DDATA of one stale value: alias only, no name, no datatype
    raw = payloads.device_data(6000, 8, 3, [(2, 48.5)], 4500, 3000, Quality.STALE, True)
    p = protoc_decode(raw)
    (m,) = p["metrics"]
    assert "name" not in m and "datatype" not in m
    assert one(m, "alias") == 3 << 12 | 2 and one(m, "is_historical") is True
    assert one(m, "float_value") == 48.5
    assert one(one(one(m, "properties"), "values"), "int_value") == 500
    # a value that went away is null, not a number
    p = protoc_decode(payloads.device_data(6000, 9, 3, [(18, None)], 4500, 3000))
    assert one(one(p, "metrics"), "is_null") is True


def test_node_birth_death_and_alarm_payloads_as_protoc_decodes_them() -> None:
    p = protoc_decode(payloads.node_birth(1000, 42, {"Gateway": "room 1"}, 5, 2))
    assert one(p, "seq") == 0
    metrics = {one(m, "name"): m for m in p["metrics"]}
    assert one(metrics["bdSeq"], "long_value") == 42 and one(metrics["bdSeq"], "datatype") == 4
    assert one(metrics["Node Control/Rebirth"], "boolean_value") is False
    assert one(metrics["Properties/Gateway"], "string_value") == "room 1"
    assert one(metrics["Store and Forward/Dropped Readings"], "long_value") == 2
    death = protoc_decode(payloads.node_death(2000, 42))
    assert "seq" not in death
    assert one(one(death, "metrics"), "long_value") == 42
    event = {
        "seq": 12, "kind": "raised", "alarm_id": "cell_voltage_high:A1:3", "rule": "r",
        "severity": "alarm", "path": {"text": "UPS-A/A1/3"}, "value": 2.5, "limit": 2.4,
        "unit": "V", "message": "high", "by": None, "at": 1234.5,
    }  # fmt: skip
    active = {"total": 3, "critical": 1, "alarm": 2, "warning": 0, "unacknowledged": 3}
    p = protoc_decode(payloads.alarm_data(3000, 4, event, active, historical=True))
    by_alias = {one(m, "alias"): m for m in p["metrics"]}
    assert one(by_alias[64], "long_value") == 12 and one(by_alias[64], "timestamp") == 1234500
    assert one(by_alias[66], "string_value") == "cell_voltage_high:A1:3"
    assert one(by_alias[69], "string_value") == "UPS-A/A1/3"
    assert one(by_alias[70], "double_value") == 2.5
    assert one(by_alias[74], "is_null") is True
    assert one(by_alias[82], "int_value") == 2
    assert all(one(m, "is_historical") is True for m in p["metrics"])


def test_generated_module_is_exactly_protocs_output() -> None:
    require_tool("protoc", "protobuf-compiler")
    out = subprocess.run(
        [sys.executable, "-m", "btms_gateway.plugins.mqtt.sparkplug.generate", "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
