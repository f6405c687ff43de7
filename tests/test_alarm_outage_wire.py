"""A full disk under a running gateway, end to end.

``data_dir`` is a real 4 MiB tmpfs; a filler file takes its last byte, so
the event log's commits fail with SQLITE_FULL the way they do on a site.
BM-SM simulators on a pseudo-terminal raise real alarms through the real
poller and alarm engine, and every output is read by its own client:
snmptrapd (traps) and snmpwalk (alarm table), mbpoll (Modbus alarm count),
rusty-bacnet (the gateway's binary input), HTTP (REST, /health/ready,
/metrics), the example JSON-lines plugin's file and a recording plugin.
Then the filler goes, and the log must hold exactly what was delivered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bacnet_support import PI, rid, rusty
from btms_gateway.core import hookimpl
from btms_gateway.core.alarm_types import AlarmEvent, EventKind
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp import plugin as modbus_plugin
from btms_gateway.plugins.web.plugin import service as web_service
from fs_support import fill, tmpfs
from modbus_support import mbpoll
from prometheus_client.parser import text_string_to_metric_families
from snmp_support import V2C, TrapReceiver, agent_address, net_snmp, snmp_settings
from web_support import get_json

pytestmark = pytest.mark.peer

ENGINE_ID = "80001f88046274657374"
LOG_ALARM = "event_log_failing:gateway"
RAISED, CLEARED = "btmsTrapAlarmRaised", "btmsTrapAlarmCleared"


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlarmEvent] = []

    @hookimpl
    def alarm_event(self, event: AlarmEvent) -> None:
        self.events.append(event)


def gateway(data_dir: Path, out: Path, rx: TrapReceiver, bacnet_port: int) -> Any:
    plugins = {
        "snmp": snmp_settings(receivers=[rx.receiver("noc")], engine_id=ENGINE_ID),
        "web": {"port": 0},
        "modbus_tcp": {"port": 0},
        "bacnet": {"address": f"127.0.0.1/8:{bacnet_port}", "device_instance": 4321,
                   "cells_per_string": 8},
        "jsonl": {"path": str(out)},
        "rec": {},
    }  # fmt: skip
    config = plant_config(strings=2, ups=1, plugins=plugins, data_dir=str(data_dir))
    now = {"on_delay_s": 0, "off_delay_s": 0}
    config["alarms"] = {"startup_grace_s": 3600, "rules": {"cell_voltage_high": now}}
    # history off: on a 4 MiB disk it pauses from the start, and its own gateway
    # alarm (history_paused, tests/test_history_alarm.py) would count here too
    config["history"] = {"enabled": False}
    rec = Recorder()
    h = GatewayHarness(config, simulate=True, alarms=True, extra_plugins={"rec": rec})
    return h, rec


def set_cells(h: GatewayHarness, name: str, volts: float, *cells: int) -> None:
    sim, slave = h.sim_for(name)
    for c in cells:
        sim.set_cell(slave, c, voltage_v=volts)


def metric(text: str, name: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"{name} not in /metrics")


async def get_text(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.text()


@pytest.mark.slow  # ~7 s on a shared 2-core box
async def test_disk_full_alarms_reach_every_output_then_the_log_catches_up(tmp_path):
    out = tmp_path / "alarms.jsonl"
    bacnet_port = free_udp_port()
    with tmpfs(tmp_path / "data", "4m") as data_dir:
        async with TrapReceiver() as rx:
            h, rec = gateway(data_dir, out, rx, bacnet_port)
            async with h:
                await h.wait_quality(Quality.GOOD)
                url = web_service(h.gateway).url
                set_cells(h, "S1", 2.5, 1)  # before the outage: written as usual
                await rx.wait_for(RAISED, "cell_voltage_high:S1:1")
                assert rec.events[-1].persisted and rec.events[-1].seq > 0

                filler = fill(data_dir)
                set_cells(h, "S1", 2.5, *range(2, 9))
                set_cells(h, "S2", 2.5, *range(1, 9))
                set_cells(h, "S1", 2.25, 1)  # and one alarm clears during the outage
                await rx.wait_for(RAISED, f"STRING: {LOG_ALARM}", "STRING: gateway")
                await rx.wait_for(RAISED, "cell_voltage_high:S2:8")
                await rx.wait_for(CLEARED, "cell_voltage_high:S1:1")
                late = [e for e in rec.events if not e.persisted]
                assert len(late) >= 16 and {e.seq for e in late} == {0}
                health = h.gateway.alarms.log_health()
                assert health.failing and "full" in (health.error or "")

                status, ready = await get_json(url + "/health/ready")
                assert status == 503 and ready["event_log"]["failing"] is True
                assert ready["reason"].startswith("event log failing since ")
                assert ready["event_log"]["unwritten"] >= 16
                metrics = await get_text(url + "/metrics")
                assert metric(metrics, "btms_event_log_failing") == 1
                assert metric(metrics, "btms_event_log_unwritten_events") >= 16
                assert metric(metrics, "btms_event_log_write_failures_total") >= 1

                engine_active = {a.alarm_id for a in h.gateway.alarms.active()}
                assert LOG_ALARM in engine_active and "cell_voltage_high:S1:1" not in engine_active
                status, rest = await get_json(url + "/api/alarms")
                assert {a["alarm_id"] for a in rest} == engine_active
                walk = await net_snmp(
                    "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmId"
                )
                assert walk.returncode == 0, walk.stderr
                assert f"STRING: {LOG_ALARM}" in walk.stdout
                port = modbus_plugin.service(h.gateway).port
                rc, regs, text = await mbpoll(port, 1, 22, 2)  # UPS1: active alarms, severity
                assert rc == 0, text
                assert regs[22] == len(engine_active) and regs[23] == 2
                on_s2 = [a for a in h.gateway.alarms.active() if a.path.string == "S2"]
                rc, regs, text = await mbpoll(port, 102, 22, 1)  # S2: its alarms + the gateway's
                assert rc == 0, text
                assert regs[22] == len(on_s2) + 1
                async with rusty() as c:
                    bi = await c.read_property(
                        f"127.0.0.1:{bacnet_port}", rid("binaryInput", 1), PI.PRESENT_VALUE
                    )
                    assert bi.value == 1  # active: the event log is failing

                filler.unlink()  # the disk has room again: the next retry catches up
                await rx.wait_for(CLEARED, f"STRING: {LOG_ALARM}")
                await h.wait_until(lambda: not h.gateway.alarms.log_health().failing)
                status, ready = await get_json(url + "/health/ready")
                assert status == 200 and ready["event_log"]["failing"] is False
                metrics = await get_text(url + "/metrics")
                assert metric(metrics, "btms_event_log_failing") == 0
                assert metric(metrics, "btms_event_log_unwritten_events") == 0

                # the log holds exactly what was delivered, in order, with its times
                log = h.gateway.events
                logged = [(e.kind, e.alarm_id, e.at, e.message) for e in log.events()]
                delivered = [(e.kind, e.alarm_id, e.at, e.message) for e in rec.events]
                assert logged == delivered
                assert delivered[-1][:2] == (EventKind.CLEARED, LOG_ALARM)
                status, rest = await get_json(url + "/api/alarms")
                assert {a.alarm_id for a in log.active()} == {a["alarm_id"] for a in rest}
                assert {a["alarm_id"] for a in rest} == engine_active - {LOG_ALARM}
                status, page = await get_json(url + "/api/events?order=asc&limit=1000")
                assert [e["alarm_id"] for e in page["events"]] == [d[1] for d in delivered]
                async with rusty() as c:
                    bi = await c.read_property(
                        f"127.0.0.1:{bacnet_port}", rid("binaryInput", 1), PI.PRESENT_VALUE
                    )
                    assert bi.value == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    alarms = [r["event"] for r in records if r["type"] == "alarm"]
    assert len(alarms) == len(rec.events)
    assert sum(1 for a in alarms if a["persisted"] is False and a["seq"] == 0) == len(late)
