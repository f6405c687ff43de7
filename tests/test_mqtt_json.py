"""The JSON mode end to end, read with mosquitto_sub and checked against the
published JSON schema (docs/mqtt-json.schema.json) with jsonschema: retained
status and per-string state, data by exception, alarm events (QoS 1), Home
Assistant discovery, a broker outage replayed as historical data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.mqtt.plugin import session
from conftest import require_tool
from mqtt_peers import OBSERVER, OBSERVER_PASSWORD, Mosquitto, Sub

pytestmark = pytest.mark.peer

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "mqtt-json.schema.json").read_text())
ROOT = "site/room1"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]}
    return jsonschema.Draft202012Validator(schema)


def kind_of(topic: str) -> str | None:
    if topic == f"{ROOT}/status":
        return "status"
    if topic == f"{ROOT}/events":
        return "event"
    if topic.startswith(f"{ROOT}/strings/"):
        return topic.rsplit("/", 1)[1]  # state | data
    return None


def retained(broker: Mosquitto, topic: str) -> dict[str, Any]:
    """The retained message of ``topic``, as a fresh mosquitto_sub gets it."""
    exe = require_tool("mosquitto_sub", "mosquitto-clients")
    out = subprocess.run(
        [exe, "-h", "127.0.0.1", "-p", str(broker.port), "-u", OBSERVER, "-P", OBSERVER_PASSWORD,
         "-t", topic, "-C", "1", "-W", "5", "--retained-only"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.slow  # ~3 s on a shared 2-core box
async def test_json_tree_with_mosquitto_sub_and_the_schema(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Sub(broker, "site/#")
    ha = Sub(broker, "homeassistant/#")
    try:
        section = broker.plugin_section(
            mode=["json"],
            node_id="room1",
            json={"topic_prefix": "site", "homeassistant": True},
            deadband={"cell_voltage_v": 0.0},
        )
        cfg = plant_config(2, 1, plugins={"mqtt": section})
        cfg["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
        async with GatewayHarness(cfg, simulate=True, cells=12, alarms=True) as h:

            def got(kind: str, pred: Any = lambda b: True) -> list[dict[str, Any]]:
                return [b for t, b in list(sub.lines) if kind_of(t) == kind and pred(b)]

            await h.wait_until(lambda: len(got("state")) >= 2, timeout=20, what="states")
            h.sim.set_cell(1, 3, voltage_v=2.271)
            await h.wait_until(
                lambda: got("data", lambda b: b["cells"].get("3", {}).get("voltage_v") == 2.271),
                timeout=20,
                what="the change on the data topic",
            )
            h.sim.set_cell(2, 1, voltage_v=2.5)  # an alarm
            await h.wait_until(lambda: got("event"), timeout=20, what="an alarm event")
            event = got("event")[0]
            assert event["alarm_id"] == "cell_voltage_high:S2:1" and event["kind"] == "raised"
            assert event["historical"] is False and event["active"]["total"] == 1

            # an outage: a change and an event buffered, replayed as historical
            svc = session(h.gateway)
            broker.wait_saved()  # the observers' sessions, so they miss nothing
            broker.kill()
            await h.wait_until(lambda: not svc.uplinks[0].connected, what="the session to end")
            h.sim.set_cell(1, 4, voltage_v=2.282)
            h.sim.set_cell(2, 1, voltage_v=2.25)  # the alarm clears
            await h.wait_until(lambda: svc.buffer.pending("json", "e") >= 1, what="the event")
            await h.wait_until(lambda: svc.buffer.pending("json", "r") >= 2, what="the readings")
            broker.start()
            await h.wait_until(
                lambda: svc.buffer.pending("json") == 0, timeout=20, what="the buffer to drain"
            )
            await h.wait_until(
                lambda: got("event", lambda b: b["kind"] == "cleared"),
                timeout=20,
                what="the replayed event",
            )
            cleared = got("event", lambda b: b["kind"] == "cleared")[0]
            assert cleared["historical"] is True and cleared["seq"] == event["seq"] + 1
            replayed = got("data", lambda b: b["historical"])
            assert any(b["cells"].get("4", {}).get("voltage_v") == 2.282 for b in replayed)

            state = retained(broker, f"{ROOT}/strings/S1/state")
            assert state["quality"] == "good" and state["reading"]["cells"][3]["voltage_v"] == 2.282
            assert retained(broker, f"{ROOT}/status")["online"] is True
        assert retained(broker, f"{ROOT}/status")["online"] is False  # the clean stop's word

        for topic, body in sub.lines:  # every message matches the published schema
            kind = kind_of(topic)
            assert kind is not None, topic
            validator(kind).validate(body)
        configs = {t: b for t, b in ha.lines if t.endswith("/config")}
        voltage = configs["homeassistant/sensor/room1/S1_voltage_v/config"]
        assert voltage["state_topic"] == f"{ROOT}/strings/S1/state"
        assert voltage["unit_of_measurement"] == "V" and voltage["device_class"] == "voltage"
        assert "value_json.reading.voltage_v" in voltage["value_template"]
    finally:
        sub.close()
        ha.close()
        broker.stop()


def test_the_schema_rejects_what_it_should() -> None:
    """The schema is a real check: a missing key or a wrong type fails it."""
    good = {"online": True, "timestamp": 1, "node": "n", "gateway": "g", "version": "1"}
    validator("status").validate(good)
    for bad in ({**good, "online": "yes"}, {k: v for k, v in good.items() if k != "node"}):
        with pytest.raises(jsonschema.ValidationError):
            validator("status").validate(bad)
