"""The gateway a plugin receives offers what ``api.Gateway`` promises, each
member doing what docs/plugin_hooks.md ("The gateway object") says."""

from __future__ import annotations

import time
from pathlib import Path

from btms_gateway.core import api
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config


class Flaky:
    """Raises in every string_reading: counted under plugin_failures()."""

    @api.hookimpl
    def string_reading(self, string: api.StringSnapshot) -> None:
        raise RuntimeError("broken on purpose")


async def test_the_members_of_api_gateway(tmp_path: Path) -> None:
    data = plant_config(strings=2, ups=1, plugins={"flaky": {}}, data_dir=str(tmp_path))
    data["gateway"]["name"] = "room-7"
    data["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0}}}
    async with GatewayHarness(data, alarms=True, extra_plugins={"flaky": Flaky()}) as h:
        g: api.Gateway = h.gateway
        assert (g.name, g.version, g.data_dir) == ("room-7", api.__version__, tmp_path)
        assert not g.demo
        assert g.is_ready
        assert [b.name for b in g.bus_status()] == ["bus1"]
        h.publish("S1", make_reading(4, cell_voltage_v=2.5, read_at=time.time()))
        await h.wait_until(lambda: len(g.alarms.active()) == 4, what="four active alarms")
        await h.wait_until(
            lambda: g.plugin_failures().get(("flaky", "string_reading")), what="a failure"
        )
        events = g.events
        assert events is not None and events.last_seq() == 4
        assert [e.alarm_id for e in events.events()] == [a.alarm_id for a in g.alarms.active()]
        first = g.alarms.active()[0].alarm_id
        assert g.alarms.acknowledge(first, "ann") == "ann"
        assert g.alarms.acknowledge(first, "bob") == "ann"  # the first is recorded
        assert g.alarms.acknowledge("no-such-alarm", "bob") is None
        assert g.store.string("S1").reading is not None


async def test_without_the_alarm_engine_there_is_no_event_log() -> None:
    async with GatewayHarness(plant_config(strings=1, ups=1)) as h:
        g: api.Gateway = h.gateway
        assert g.events is None
        assert g.alarms.acknowledge("anything", "ann") is None
