"""pytest fixtures for testing a btms-gateway plugin (docs/plugin_hooks.md,
"Testing your plugin").

Installed with btms-gateway as the pytest plugin ``btms_gateway`` (entry point
group ``pytest11``), so a plugin's own tests use the fixtures without a
conftest or an import:

- ``start_gateway``: starts gateways on the BM-SM simulator (real
  pseudo-terminals, the real RTU poller) with the plugins a test names, every
  listener on a free port; stops them when the test ends.
- ``make_reading``, ``make_event``: a ``StringReading`` or an ``AlarmEvent``
  in one call.
- ``free_ports``: free loopback TCP and UDP ports, never the same one twice
  in a test.

The fixture of an async test needs pytest-asyncio (``pip install
btms-gateway[test]``); the fixtures work in its strict and auto modes alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from btms_gateway.core.plugin_manager import FailureLog, create_manager
from btms_gateway.core.registry import config_sections

from .events import make_event as _make_event
from .ports import FreePorts, listen_port, with_free_ports
from .testing import GatewayHarness, plant_config
from .testing import make_reading as _make_reading


class RunningGateway(GatewayHarness):
    """A ``GatewayHarness`` (``gateway``, ``sim_for``, ``wait_quality``,
    ``wait_until``, ``publish``) whose plugins listen on free ports."""

    def port(self, plugin: str) -> int:
        """The port plugin ``plugin`` listens on."""
        return listen_port(self.config_data["plugins"][plugin])


class GatewayStarter:
    """What ``start_gateway`` gives a test: call it to start a gateway; the
    fixture stops every gateway it started when the test ends."""

    def __init__(self, ports: FreePorts) -> None:
        self.ports = ports
        self.started: list[RunningGateway] = []

    async def __call__(
        self,
        plugins: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        strings: int = 2,
        ups: int = 1,
        cells: int | dict[str, int] = 12,
        simulate: bool = True,
        alarms: bool = False,
        extra_plugins: dict[str, object] | None = None,
        frozen: bool = True,
        **gateway: Any,
    ) -> RunningGateway:
        pm = create_manager()  # the sections' models say which keys are listeners' ports
        for name, plugin in (extra_plugins or {}).items():
            pm.register(plugin, name=name)
        sections = with_free_ports(plugins or {}, config_sections(pm, FailureLog()), self.ports)
        harness = RunningGateway(
            plant_config(strings, ups, plugins=sections, **gateway),
            simulate=simulate,
            alarms=alarms,
            extra_plugins=extra_plugins,
            cells=cells,
            frozen=frozen,
        )
        await harness.__aenter__()
        self.started.append(harness)
        return harness

    async def stop_all(self) -> None:
        while self.started:
            await self.started.pop().__aexit__(None, None, None)


@pytest.fixture
def free_ports() -> FreePorts:
    """``free_ports.tcp()``, ``.udp()``, ``.both()``: a free port of 127.0.0.1,
    a different one at each call within the test."""
    return FreePorts()


@pytest.fixture
def make_reading() -> Callable[..., Any]:
    """``make_reading(cells=4, *, voltage_v=None, current_a=-12.34, soc_pct=87.0,
    state=DISCHARGE, alarms=NONE, read_at=None, cell_voltage_v=2.25)``."""
    return _make_reading


@pytest.fixture
def make_event() -> Callable[..., Any]:
    """``make_event(kind="raised", rule="cell_voltage_high", *, ups="UPS1",
    string="S1", cell=7, **fields)``: ``fields`` sets any other AlarmEvent field."""
    return _make_event


async def _start_gateway(free_ports: FreePorts) -> AsyncIterator[GatewayStarter]:
    """``await start_gateway(plugins, *, strings=2, ups=1, cells=12, simulate=True,
    alarms=False, extra_plugins=None, frozen=True, **gateway)``: a started
    ``RunningGateway``, stopped when the test ends."""
    starter = GatewayStarter(free_ports)
    try:
        yield starter
    finally:
        await starter.stop_all()


def _async_fixture(fn: Callable[..., Any]) -> Any:
    """``fn`` as an async fixture of pytest-asyncio (strict or auto mode), or,
    where that is not installed, a fixture that says so."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover

        def missing() -> None:
            pytest.fail("start_gateway needs pytest-asyncio: pip install 'btms-gateway[test]'")

        return pytest.fixture(missing, name=fn.__name__.lstrip("_"))
    return pytest_asyncio.fixture(fn, name=fn.__name__.lstrip("_"))


start_gateway = _async_fixture(_start_gateway)
