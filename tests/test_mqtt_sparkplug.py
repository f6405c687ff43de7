"""Sparkplug B end to end: the simulator over a real pty, the gateway, a
Mosquitto broker of the test's own (TLS with client certificates and a
password), and a Sparkplug host application we did not write (pysparkplug,
in its own virtualenv) that decodes every message. The host checks every seq
and every value against the simulator's truth, through a broker killed and
restarted mid-run, a primary host that goes offline, a string that dies and
returns, a rebirth command, and alarm events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.mqtt.plugin import session
from mqtt_peers import Mosquitto, SparkplugHost
from sparkplug_view import HostView, f32

pytestmark = pytest.mark.peer

NODE = "room1"
ZERO_DEADBANDS = dict.fromkeys(
    ["voltage_v", "current_a", "soc_pct", "soh_pct", "balance_pct", "ambient_temperature_c",
     "ambient_humidity_pct", "cell_voltage_v", "cell_resistance_mohm", "cell_temperature_c",
     "cell_soc_pct", "cell_soh_pct"], 0.0,
)  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def config(broker: Mosquitto, strings: int = 2, **sparkplug: Any) -> dict[str, Any]:
    section = broker.plugin_section(
        node_id=NODE,
        deadband=ZERO_DEADBANDS,
        sparkplug={"group_id": "plant", **sparkplug},
    )
    cfg = plant_config(strings, 1, plugins={"mqtt": section}, poll_interval_s=0.2)
    cfg["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    return cfg


async def settled(h: GatewayHarness, host: SparkplugHost, names: list[str], t: float = 20) -> None:
    """Wait until the host's live picture of each string equals the truth."""

    def ok() -> bool:
        view = HostView.build(host.messages, NODE)
        return all(not view.mismatches(n, h.sim_for(n)[0].expected(h.sim_for(n)[1])) for n in names)

    try:
        await h.wait_until(ok, timeout=t, what="the host to see the simulator's values")
    except AssertionError:
        view = HostView.build(host.messages, NODE)
        for n in names:
            print(view.mismatches(n, h.sim_for(n)[0].expected(h.sim_for(n)[1]))[:5])
        raise


@pytest.mark.slow  # ~7 s on a shared 2-core box
async def test_host_checks_every_seq_and_value_through_a_broker_restart(
    broker: Mosquitto,
) -> None:
    host = SparkplugHost(broker, "plant", host_id="scada")
    try:
        cfg = config(broker, primary_host_id="scada")
        async with GatewayHarness(cfg, simulate=True, cells=12) as h:
            names = ["S1", "S2"]
            sim = h.sim
            await settled(h, host, names)
            first = sim.expected(1).cells[0].voltage_v  # cell 1's truth before the outage
            for step in range(3):  # live changes, each checked
                sim.set_cell(1, 2 + step, voltage_v=2.2 + step / 100)
                sim.set_string(2, current_a=-10.0 - step)
                await settled(h, host, names)

            broker.wait_saved()  # the observers' sessions, so they miss nothing
            broker.kill()  # mid-run, no goodbye
            svc = session(h.gateway)
            await h.wait_until(lambda: not svc.uplinks[0].connected, what="the session to end")
            outage = [2.301, 2.302, 2.303]
            for v in outage:  # values the host can only get from the buffer
                sim.set_cell(1, 1, voltage_v=v)
                await h.wait_until(
                    lambda v=v: h.gateway.store.string("S1").reading.cells[0].voltage_v == v,
                    what="the gateway to poll the change",
                )
            await h.wait_until(lambda: svc.buffer.pending("spb") >= 3, what="buffered records")
            broker.start()  # same ports; the host and the gateway reconnect by themselves
            await settled(h, host, names, t=30)
            await h.wait_until(lambda: svc.buffer.pending("spb") == 0, timeout=20, what="replay")
            await asyncio.sleep(0.5)

            view = HostView.build(host.messages, NODE)
            assert view.seq_problems() == []
            assert len(view.sessions) >= 2
            history = [
                v for d, n, _, v in view.historical if d == "S1" and n == "Cells/001/Voltage"
            ]
            assert [f32(v) for v in outage] == [v for v in history if v in map(f32, outage)]
            # (the Quality metric carries the time of the quality change, not of the values)
            replay_ts = [t for d, n, t, _ in view.historical if d == "S1" and n != "Quality"]
            assert replay_ts == sorted(replay_ts)  # in order, with their original times
            # every value the host ever saw for cell 1 was its truth at some time
            seen = {
                v for d, n, _, v, _ in view.values_seen if (d, n) == ("S1", "Cells/001/Voltage")
            }
            assert seen == {f32(x) for x in (first, *outage)}
    finally:
        host.close()


async def test_primary_host_offline_buffers_then_replays_as_historical(
    broker: Mosquitto,
) -> None:
    host = SparkplugHost(broker, "plant", host_id="scada")
    try:
        async with GatewayHarness(config(broker, 1, primary_host_id="scada"), simulate=True,
                                  cells=12) as h:  # fmt: skip
            await settled(h, host, ["S1"])
            svc = session(h.gateway)
            host.command("offline")
            await h.wait_until(lambda: host.of_type("NDEATH"), what="the node's NDEATH")
            assert not svc.uplinks[0].ready()
            h.sim.set_cell(1, 3, temperature_c=31.5)
            await h.wait_until(lambda: svc.buffer.pending("spb") > 0, what="a buffered record")
            births = len(host.of_type("NBIRTH"))
            host.command("online")
            await h.wait_until(lambda: len(host.of_type("NBIRTH")) > births, what="a new NBIRTH")
            await settled(h, host, ["S1"])
            await h.wait_until(lambda: svc.buffer.pending("spb") == 0, what="the replay")
            view = HostView.build(host.messages, NODE)
            assert view.seq_problems() == []
            assert ("S1", "Cells/003/Temperature") in {(d, n) for d, n, _, _ in view.historical}
            # the NDEATH it sent was the one of its session
            assert view.sessions[0].ended_by == view.sessions[0].bdseq
    finally:
        host.close()


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_string_death_birth_rebirth_command_and_alarm_events(broker: Mosquitto) -> None:
    host = SparkplugHost(broker, "plant")
    try:
        async with GatewayHarness(config(broker), simulate=True, cells=12, alarms=True) as h:
            await settled(h, host, ["S1", "S2"])
            sim, slave = h.sim_for("S2")
            sim.vanish(slave)
            await h.wait_quality(Quality.OFFLINE, "S2")
            await h.wait_until(lambda: HostView.build(host.messages, NODE).deaths.get("S2"))
            sim.restore(slave)
            await h.wait_until(
                lambda: HostView.build(host.messages, NODE).births.get("S2", 0) >= 2,
                what="a DBIRTH when S2 returns",
            )
            await settled(h, host, ["S1", "S2"])

            nbirths = len(host.of_type("NBIRTH"))
            host.command("rebirth", "plant", NODE)
            await h.wait_until(lambda: len(host.of_type("NBIRTH")) > nbirths, what="rebirth")
            view = HostView.build(host.messages, NODE)
            assert view.sessions[-1].bdseq == view.sessions[-2].bdseq  # same MQTT session

            h.sim.set_cell(1, 2, voltage_v=2.5)  # over the 2.40 V limit: an alarm

            def raised(alarm_id: str) -> list[dict[str, Any]]:
                events = [
                    {x["name"]: x for x in m["metrics"]}
                    for m in host.of_type("DDATA") if m["device"] == "Alarms"
                ]  # fmt: skip
                return [
                    e for e in events
                    if e["Event/Kind"]["value"] == "raised"
                    and e["Event/Alarm Id"]["value"] == alarm_id
                ]  # fmt: skip

            assert raised("string_comm_lost:S2")  # S2's death was an alarm too
            alarm = "cell_voltage_high:S1:2"
            await h.wait_until(lambda: raised(alarm), what="the alarm event on the Alarms device")
            metrics = raised(alarm)[0]
            assert metrics["Event/Severity"]["value"] == "alarm"
            assert metrics["Event/Value"]["value"] == pytest.approx(2.5)
            assert metrics["Active/Total"]["value"] >= 1
            assert metrics["Event/Seq"]["value"] >= 1
            assert HostView.build(host.messages, NODE).seq_problems() == []
    finally:
        host.close()
