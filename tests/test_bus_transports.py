"""Bus transports come from plugins (``register_bus_transports``): the engine
opens each bus with the link its transport's plugin registered, the core
itself opening none, and a transport no installed plugin provides is a
configuration problem with its key path, not a traceback at start."""

from __future__ import annotations

import pytest
from btms_gateway.core import hookimpl
from btms_gateway.core.config import BusConfig
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.model import Quality
from btms_gateway.core.plugin_manager import FailureLog, create_manager, load_entrypoints_isolated
from btms_gateway.core.registry import bus_transports, validate_config
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.protocols.rtu import RtuLink


class SpyTransport:
    """Registers ``serial`` with a factory that records each bus it opens and
    hands it the real RTU link."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    @hookimpl
    def register_bus_transports(self, register):
        register("serial", self.link)

    def link(self, bus: BusConfig) -> RtuLink:
        self.opened.append(bus.name)
        return RtuLink(bus)


def test_the_rtu_plugin_registers_both_transports():
    transports = bus_transports(create_manager(), FailureLog())
    assert {"serial", "rtu-over-tcp"} <= set(transports)


async def test_the_engine_opens_a_bus_with_the_link_its_transport_plugin_registered():
    spy = SpyTransport()
    config = plant_config(strings=2, ups=1)
    async with GatewayHarness(config, simulate=True, extra_plugins={"spy": spy}) as h:
        await h.wait_quality(Quality.GOOD)
        assert spy.opened == ["bus1"]  # a later plugin's registration comes first


def test_a_transport_no_plugin_provides_is_a_config_problem():
    pm = create_manager(load_entrypoints=False)
    pm.set_blocked("rtu")  # as if the RTU plugin were not installed
    load_entrypoints_isolated(pm)
    with pytest.raises(ConfigError) as caught:
        validate_config(plant_config(strings=1, ups=1), "<test>", pm)
    assert "buses[0].transport: expected a bus transport an installed plugin provides" in str(
        caught.value
    )
    assert "found 'serial'" in str(caught.value)
