"""Running a whole gateway inside a test (or a benchmark), for plugin authors too.

``GatewayHarness`` builds a config, starts the gateway with the chosen plugins
and, by default, the BM-SM simulator on pseudo-terminals so readings travel
through the real RTU poller. With ``simulate=False`` no bus is ever opened
and a test publishes readings itself (``harness.publish``), for unit tests of
a plugin's image; protocol tests should use the simulator.
"""

from __future__ import annotations

import asyncio
import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from btms_gateway.core.config import BUS_TRANSPORTS, BusConfig
from btms_gateway.core.counters import CommCounters
from btms_gateway.core.gateway import Gateway
from btms_gateway.core.model import (
    CellReading,
    CellStatus,
    Quality,
    StringAlarm,
    StringReading,
    StringState,
)
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.profiles import ErrorKind, LinkFactory, PollError
from btms_gateway.core.registry import validate_config
from btms_gateway.protocols.bmsm.simulator import Simulator


def make_reading(
    cells: int = 4,
    *,
    voltage_v: float | None = None,
    current_a: float = -12.34,
    soc_pct: float = 87.0,
    state: StringState = StringState.DISCHARGE,
    alarms: StringAlarm = StringAlarm.NONE,
    read_at: float | None = None,
    cell_voltage_v: float = 2.25,
) -> StringReading:
    """A plausible reading with distinct per-cell values (cell i: voltage + i mV)."""
    cell_tuple = tuple(
        CellReading(
            index=i,
            voltage_v=round(cell_voltage_v + i / 1000, 3),
            resistance_mohm=round(0.5 + i / 1000, 3),
            temperature_c=25.0 + i / 10,
            soc_pct=90.0,
            soh_pct=95.0 - (i % 5),
            status=CellStatus.NONE,
        )
        for i in range(1, cells + 1)
    )
    total = (
        voltage_v if voltage_v is not None else round(sum(c.voltage_v or 0 for c in cell_tuple), 2)
    )
    return StringReading(
        voltage_v=total,
        current_a=current_a,
        soc_pct=soc_pct,
        balance_pct=98.5,
        state=state,
        alarms=alarms,
        cell_count=cells,
        ambient_temperature_c=23.4,
        ambient_humidity_pct=45.6,
        relay_closed=False,
        aux_input_on=True,
        cells=cell_tuple,
        read_at=time.time() if read_at is None else read_at,
    )


def plant_config(
    strings: int = 4,
    ups: int = 2,
    *,
    plugins: dict[str, Any] | None = None,
    buses: list[dict[str, Any]] | None = None,
    poll_interval_s: float = 0.2,
    stale_after_s: float = 2.0,
    offline_after_failures: int = 2,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Config data: ``strings`` strings named S1.. spread over ``ups`` UPS named UPS1..,
    all on bus "bus1" with slave ids 1..n (replace ``buses`` to point at real ports)."""
    return {
        "gateway": {
            "poll_interval_s": poll_interval_s,
            "stale_after_s": stale_after_s,
            "offline_after_failures": offline_after_failures,
            "data_dir": data_dir or tempfile.mkdtemp(prefix="btms-test-"),
            "shutdown_timeout_s": 1.0,
        },
        "buses": buses
        or [
            {
                "name": "bus1",
                "port": "/dev/null-placeholder",
                "wait_for_port": True,
                "baudrate": 115200,
                "timeout_s": 0.2,
            }
        ],
        "ups": [{"name": f"UPS{u}"} for u in range(1, ups + 1)],
        "strings": [
            {
                "name": f"S{i}",
                "bus": "bus1",
                "slave_id": i,
                "ups": f"UPS{(i - 1) % ups + 1}" if ups else None,
            }
            for i in range(1, strings + 1)
        ],
        "plugins": plugins or {},
    }


class NeverOpenLink:
    """A bus whose port never appears: its thread waits to open it until the
    gateway stops, and the engine publishes nothing, leaving the test in
    charge of what the store holds."""

    def __init__(self, bus: BusConfig) -> None:
        self.counters = CommCounters()
        self._closed = threading.Event()

    @property
    def is_open(self) -> bool:
        return False

    def open(self) -> None:
        self._closed.wait()
        raise PollError(ErrorKind.PORT, "never open")

    def close(self) -> None:
        self._closed.set()

    def read_holding_registers(
        self, slave: int, address: int, count: int, *, retries: int | None = None
    ) -> list[int]:
        raise PollError(ErrorKind.PORT, "never open")

    def read_ranges(
        self, slave: int, ranges: Sequence[tuple[int, int]], *, retries: int | None = None
    ) -> list[list[int]]:
        raise PollError(ErrorKind.PORT, "never open")

    def counters_for(self, slave: int) -> CommCounters:
        return CommCounters()


class GatewayHarness:
    """``async with GatewayHarness(config_data) as h:`` runs a gateway for a test.

    With ``simulate=True`` every bus of the config is served by a BM-SM
    simulator, a serial bus on a fresh pseudo-terminal, an RTU-over-TCP bus on
    a TCP port of 127.0.0.1 like a converter (one slave per configured string,
    ``cells`` cells each: an int for all, or a dict by string name; 12 by
    default, a 24 V string of 2 V blocks: the device measures 20..800 V), and the
    readings travel through the real RTU link, poller and engine. The
    simulators are frozen by default so a test can compare exact values;
    ``h.sim_for(name)`` gives a string's simulator and slave id, and each
    simulator's truth log keeps its last ``truth_log_size`` replies (a long
    soak bounds it so that its memory measures the gateway). Buses named in
    ``unsimulated`` get no simulator: they are polled through the real link
    as configured (a test's own device or converter, or nothing at all). With
    ``external_buses=True`` every bus is polled as configured, through the
    real link, and the test runs whatever answers there (e.g. the demo's own
    simulators, ``kit.demo.start_simulators``); otherwise, without
    ``simulate``, no bus ever opens and the test publishes readings itself.
    ``served_maps`` (by string name) makes a string's simulator serve another
    register map than the default table (a BM-SM RegisterMap, e.g. an
    override file's effective map: a firmware that differs).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        simulate: bool = False,
        alarms: bool = False,
        extra_plugins: dict[str, object] | None = None,
        cells: int | dict[str, int] = 12,
        seed: int = 1,
        frozen: bool = True,
        truth_log_size: int = 10_000,
        unsimulated: Sequence[str] = (),
        external_buses: bool = False,
        served_maps: Mapping[str, Any] | None = None,
    ) -> None:
        self.config_data = config
        self.served_maps = dict(served_maps or {})
        self.unsimulated = set(unsimulated)
        self.simulate = simulate
        self.sims: dict[str, Any] = {}
        self.pm = create_manager()
        for name, plugin in (extra_plugins or {}).items():
            self.pm.register(plugin, name=name)
        links: dict[str, LinkFactory] | None = None  # the installed transports
        if simulate:
            self._start_simulators(cells, seed, frozen, truth_log_size)
        elif not external_buses:
            links = {transport: NeverOpenLink for transport in BUS_TRANSPORTS}
        try:
            loaded = validate_config(self.config_data, "<test>", self.pm)
            self.gateway = Gateway(loaded, self.pm, links=links, alarms=alarms)
        except BaseException:
            self._stop_simulators()
            raise
        self._task: asyncio.Task[None] | None = None

    def _start_simulators(
        self, cells: int | dict[str, int], seed: int, frozen: bool, truth_log_size: int
    ) -> None:
        data = copy.deepcopy(self.config_data)
        for bus in data["buses"]:
            if bus["name"] in self.unsimulated:
                continue
            tcp = bus.get("transport", "serial") == "rtu-over-tcp"
            members = [s for s in data["strings"] if s["bus"] == bus["name"]]
            counts = {
                s["slave_id"]: cells.get(s["name"], 12) if isinstance(cells, dict) else cells
                for s in members
            }
            maps = {
                s["slave_id"]: self.served_maps[s["name"]]
                for s in members
                if s["name"] in self.served_maps
            }
            # a stable name, as /dev/serial/by-id/... on a real machine: pty numbers
            # are recycled, and an unplugged adapter must not reopen someone else's pty
            link = os.path.join(tempfile.mkdtemp(prefix="btms-sim-"), f"tty-{bus['name']}")
            sim = Simulator(
                list(counts),
                counts,
                baud=bus.get("baudrate", 9600),
                parity=bus.get("parity", "N"),
                stopbits=bus.get("stopbits", 1),
                seed=seed,
                frozen=frozen,
                transport="tcp" if tcp else "pty",
                link=None if tcp else link,
                log_size=truth_log_size,
                regmap=maps,
            )
            self.sims[bus["name"]] = sim.start()
            if tcp:
                bus["host"], bus["tcp_port"] = sim.tcp_address
            else:
                bus["port"] = sim.port
            bus.pop("wait_for_port", None)
        self.config_data = data

    def _stop_simulators(self) -> None:
        for sim in self.sims.values():
            sim.stop()

    def sim_for(self, name: str) -> tuple[Any, int]:
        """(simulator, slave id) of string ``name``."""
        cfg = next(s for s in self.config_data["strings"] if s["name"] == name)
        return self.sims[cfg["bus"]], cfg["slave_id"]

    @property
    def sim(self) -> Any:
        """The simulator of the first bus (most tests have one)."""
        return next(iter(self.sims.values()))

    async def wait_quality(self, quality: Quality, *names: str, timeout: float = 15.0) -> None:
        """Wait until the named strings (all if none named) have ``quality``."""
        store = self.gateway.store
        targets = names or tuple(store.snapshot.strings)
        await self.wait_until(
            lambda: all(store.string(n).quality is quality for n in targets),
            timeout=timeout,
            what=f"{', '.join(targets)} to be {quality.name}",
        )

    async def __aenter__(self) -> GatewayHarness:
        self._task = asyncio.create_task(self.gateway.run())
        ready = asyncio.create_task(self.gateway.ready.wait())
        done, _ = await asyncio.wait(
            {self._task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        try:
            if self._task in done:
                ready.cancel()
                self._task.result()  # raises the startup error
            if ready not in done:
                raise TimeoutError("gateway did not start within 30 s")
        except BaseException:
            self._stop_simulators()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gateway.request_stop()
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, 10)
        finally:
            self._stop_simulators()

    def publish(
        self, name: str, reading: StringReading | None, quality: Quality = Quality.GOOD
    ) -> None:
        """Put a reading into the store as the engine would after a poll."""
        current = self.gateway.store.string(name)
        self.gateway._publish(
            replace(current, reading=reading, quality=quality, changed_at=time.time())
        )

    @staticmethod
    async def wait_until(
        predicate: Callable[[], Any],
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> Any:
        """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(interval)
