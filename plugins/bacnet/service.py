"""The running BACnet/IP device of one gateway: start, keep current, stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from btms_gateway.core.api import ActiveAlarm, ActiveAlarms, table_of

from .decode_failures import DecodeFailures
from .device import start_device
from .image import Image
from .objects import Layout, Point, build_points
from .settings import BacnetSettings

log = logging.getLogger("btms_gateway.plugins.bacnet")


def points_for(settings: BacnetSettings, layout: Layout, source: Any = None) -> list[Point]:
    """The objects of a plant; ``source`` is the gateway (or the exporter's plant)
    whose quantity table (``quantities(level)``) the objects derive from; None:
    core's own table."""
    return build_points(
        layout,
        cells=settings.cells,
        cells_per_string=settings.cells_per_string,
        structured_views=settings.structured_views,
        table=table_of(source),
    )


class BacnetService:
    def __init__(self, settings: BacnetSettings) -> None:
        self.settings = settings
        self.app: Any = None
        #: the served objects by table oid (views, made on access; see image.py)
        self.objects: Mapping[tuple[str, int], Any] = {}
        self.points: list[Point] = []
        self.image: Image | None = None
        self.startup_s = 0.0
        self.last_apply_s = 0.0
        self.decode_failures = DecodeFailures()
        #: datagrams dropped because their sender is not in ``allow``
        self.refused_allowlist = 0
        self._applied: ActiveAlarms | None = None  # the active tuple the image shows

    async def start(
        self, plant: Any, active_alarms: Iterable[ActiveAlarm], quantities: Any = None
    ) -> None:
        """``quantities``: what has the plant's quantity table (the gateway)."""
        started = time.perf_counter()
        self.points = points_for(self.settings, Layout.from_plant(plant), quantities)
        self.app, self.image = await start_device(self.settings, self.points, self._refused)
        self.objects = self.image.objects
        self.decode_failures.install(asyncio.get_running_loop())
        self.image.apply_plant(plant)
        self.image.set_alarms(active_alarms)
        self.startup_s = time.perf_counter() - started
        log.info(
            "BACnet/IP device %d %r on %s: %d objects, ready in %.2f s",
            self.settings.device_instance,
            self.settings.device_name,
            self.settings.address,
            len(self.objects) + 2,
            self.startup_s,
        )

    def _refused(self) -> None:
        self.refused_allowlist += 1

    def stop(self) -> None:
        self.decode_failures.uninstall()
        if self.app is not None:
            self.app.close()
            self.app = None

    def on_reading(self, string: Any, plant: Any) -> None:
        if self.image is None:
            return
        started = time.perf_counter()
        self.image.apply_string(string)
        if string.ups is not None and string.ups in plant.ups:
            self.image.apply_ups(plant.ups[string.ups])
        self.last_apply_s = time.perf_counter() - started

    def on_alarm(self, active: ActiveAlarms) -> None:
        """``active``: the alarms active after an event's commit, as delivered
        (one tuple for every event of a commit: applied once)."""
        if self.image is None or active is self._applied:
            return
        self._applied = active
        self.image.set_alarms(active)
