"""The gateway alarm ``history_paused``: raised while history is not recording
(a disk under ``min_free_mb`` or full, a file served read-only after damage),
cleared when it records again, and delivered like every alarm.

The engine tests feed writer states directly; the wire test runs a gateway
on a real 16 MiB tmpfs that a filler file brings under ``min_free_mb`` (the
event log, on the same disk, still has room to write), polling BM-SM
simulators on a pseudo-terminal, and reads the alarm with snmptrapd and
snmpwalk, mbpoll, rusty-bacnet and REST; then the filler goes and the alarm
clears on every one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alarm_support import Rig, settings
from bacnet_support import PI, rid, rusty
from btms_gateway.core.alarm_types import EventKind, Severity
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp import plugin as modbus_plugin
from btms_gateway.plugins.modbus_tcp.map import string_unit
from btms_gateway.plugins.web.plugin import service as web_service
from fs_support import fill_but, tmpfs
from modbus_support import mbpoll
from snmp_support import V2C, TrapReceiver, agent_address, net_snmp, snmp_settings
from web_support import get_json

ALARM = "history_paused:gateway"
RAISED, CLEARED = "btmsTrapAlarmRaised", "btmsTrapAlarmCleared"
HISTORY_BI = 2  # binary-input instance of gateway.history_paused (docs/bacnet-objects.md)


# --- the engine, fed with the writer's states ------------------------------------------------
def test_paused_raises_with_the_reason_and_recording_clears(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "e.sqlite", settings())
    rig.engine.history_state("recording", "", 1.0)
    assert rig.events == []
    rig.engine.history_state("paused", "disk full (database or disk is full)", 2.0)
    rig.engine.history_state("paused", "disk full (database or disk is full)", 3.0)
    [raised] = rig.events
    assert (raised.kind, raised.alarm_id, raised.severity) == (
        EventKind.RAISED, ALARM, Severity.WARNING,
    )  # fmt: skip
    assert raised.path.is_gateway and raised.persisted and raised.seq > 0
    assert raised.message == (
        "gateway: history not recording (paused: disk full (database or disk is full))"
    )
    assert [a.alarm_id for a in rig.engine.active()] == [ALARM]
    assert [a.alarm_id for a in rig.log.active()] == [ALARM]
    rig.engine.history_state("recording", "", 9.0)
    assert rig.kinds(ALARM) == [EventKind.RAISED, EventKind.CLEARED]
    assert rig.events[-1].at == 9.0 and rig.engine.active() == [] and rig.log.active() == []


def test_read_only_and_a_failed_writer_raise_it_too(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "e.sqlite", settings())
    rig.engine.history_state("read_only", "integrity check failed: malformed", 1.0)
    assert rig.events[-1].message.endswith("(read-only: integrity check failed: malformed)")
    rig.engine.history_state("stopped", "writer failed: see the log", 2.0)
    assert rig.kinds(ALARM) == [EventKind.RAISED]  # still the one alarm


def test_an_alarm_active_at_a_stop_holds_while_starting_and_clears_when_recording(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path / "e.sqlite", settings())
    rig.engine.history_state("paused", "disk full", 1.0)
    rig.log.close()
    rig2 = Rig(tmp_path / "e.sqlite", settings())
    assert [a.alarm_id for a in rig2.engine.active()] == [ALARM] and rig2.events == []
    rig2.engine.history_state("starting", "", 5.0)  # the writer has not opened the file yet
    assert rig2.events == [] and [a.alarm_id for a in rig2.engine.active()] == [ALARM]
    rig2.engine.history_state("paused", "disk full", 6.0)  # still paused: not raised again
    assert rig2.events == []
    rig2.engine.history_state("recording", "", 7.0)
    assert rig2.kinds(ALARM) == [EventKind.CLEARED]


def test_history_switched_off_clears_it_and_the_rule_can_be_switched_off(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "e.sqlite", settings())
    rig.engine.history_state("paused", "disk full", 1.0)
    rig.engine.history_state("disabled", "", 2.0)
    assert rig.kinds(ALARM) == [EventKind.RAISED, EventKind.CLEARED]
    off = Rig(tmp_path / "off.sqlite", settings(history_paused={"enabled": False}))
    off.engine.history_state("paused", "disk full", 1.0)
    assert off.events == []


# --- a running gateway, every output read by its own client ----------------------------------
def gateway(data_dir: Path, rx: TrapReceiver, bacnet_port: int) -> GatewayHarness:
    plugins = {
        "snmp": snmp_settings(receivers=[rx.receiver("noc")]),
        "web": {"port": 0},
        "modbus_tcp": {"port": 0},
        "bacnet": {"address": f"127.0.0.1/8:{bacnet_port}", "device_instance": 4322,
                   "cells_per_string": 4},
    }  # fmt: skip
    config = plant_config(strings=2, ups=1, plugins=plugins, data_dir=str(data_dir))
    config["alarms"] = {"startup_grace_s": 3600}
    config["history"] = {"commit_interval_s": 0.3, "min_free_mb": 8}
    return GatewayHarness(config, simulate=True, alarms=True)


async def served(port: int, bacnet_port: int) -> tuple[int, int, int]:
    """(S1's active-alarm count and severity by mbpoll, gateway.history_paused by rusty-bacnet)."""
    rc, regs, text = await mbpoll(port, string_unit(1), 22, 2)
    assert rc == 0, text
    async with rusty() as c:
        bi = await c.read_property(
            f"127.0.0.1:{bacnet_port}", rid("binaryInput", HISTORY_BI), PI.PRESENT_VALUE
        )
    return regs[22], regs[23], bi.value


def active_ids(h: GatewayHarness) -> set[str]:
    return {a.alarm_id for a in h.gateway.alarms.active()}


@pytest.mark.peer
@pytest.mark.slow  # ~8 s on a shared 2-core box
async def test_a_disk_under_min_free_raises_history_paused_everywhere_and_it_clears(
    tmp_path: Path,
) -> None:
    bacnet_port = free_udp_port()
    with tmpfs(tmp_path / "data", "16m") as disk:
        async with TrapReceiver() as rx:
            h = gateway(disk, rx, bacnet_port)
            async with h:
                await h.wait_quality(Quality.GOOD)
                history = h.gateway.history
                assert history is not None
                await h.wait_until(lambda: history.status().counters["recorded"] >= 4, 30,
                                   what="history recording")  # fmt: skip
                url = web_service(h.gateway).url
                port = modbus_plugin.service(h.gateway).port
                assert ALARM not in active_ids(h)
                before = await served(port, bacnet_port)
                assert before[2] == 0

                filler = fill_but(disk, leave=3 << 20)  # 3 MB free, min_free_mb = 8
                await h.wait_until(lambda: history.status().state == "paused", 30, what="pause")
                await rx.wait_for(RAISED, f"STRING: {ALARM}", "less than min_free_mb")
                await h.wait_until(lambda: ALARM in active_ids(h), what="the alarm active")
                [raised] = [e for e in h.gateway.events.events() if e.alarm_id == ALARM]
                assert raised.kind is EventKind.RAISED and "min_free_mb = 8" in raised.message
                status, rest = await get_json(url + "/api/alarms")
                assert status == 200 and ALARM in {a["alarm_id"] for a in rest}
                walk = await net_snmp(
                    "snmpwalk", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsAlarmId"
                )
                assert walk.returncode == 0, walk.stderr
                assert f"STRING: {ALARM}" in walk.stdout
                count, severity, bi = await served(port, bacnet_port)
                assert count == before[0] + 1 and severity >= int(Severity.WARNING)
                assert bi == 1
                # acquisition goes on meanwhile
                read_at = h.gateway.store.string("S1").reading.read_at
                await h.wait_until(
                    lambda: h.gateway.store.string("S1").reading.read_at > read_at,
                    what="polling to go on",
                )

                filler.unlink()  # space returns: history resumes, the alarm clears
                await rx.wait_for(CLEARED, f"STRING: {ALARM}")
                assert history.status().state == "recording"
                assert ALARM not in active_ids(h)
                count, severity, bi = await served(port, bacnet_port)
                assert (count, bi) == (before[0], 0)
                kinds = [e.kind for e in h.gateway.events.events() if e.alarm_id == ALARM]
                assert kinds == [EventKind.RAISED, EventKind.CLEARED]
