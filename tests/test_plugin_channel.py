"""The order a plugin's inbox delivers readings in, under coalescing.

A reading carries the plant of its own instant. If the inbox delivered a
string's newer reading before another string's older one, a plugin would be
handed a plant older than one it already had (S1 at t1, S2 at t2, S1 at t3
delivered as t3 then t2 brings back S1's t1 values in the UPS aggregate).
Both kinds of worker (a thread for plain hooks, a task on the loop for
``async def`` hooks) are held up by a slow first call while the engine's
publishes pile up and coalesce, then must deliver plants never older than
one delivered before.
"""

from __future__ import annotations

import asyncio
import random
import threading
from itertools import pairwise
from typing import Any

from btms_gateway.core import hookimpl
from btms_gateway.core.model import PlantSnapshot, StringSnapshot
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config

STRINGS = ("S1", "S2", "S3", "S4")
PUBLISHES = 300


class SlowThreadPlugin:
    """A plain hook: its worker thread is held on the first reading."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[tuple[StringSnapshot, PlantSnapshot]] = []

    @hookimpl
    def string_reading(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        if not self.seen:
            self.release.wait(30)
        self.seen.append((string, plant))


class SlowLoopPlugin:
    """An ``async def`` hook: its task on the loop is held on the first reading."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[tuple[StringSnapshot, PlantSnapshot]] = []

    @hookimpl
    async def string_reading(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        if not self.seen:
            await self.release.wait()
        self.seen.append((string, plant))


async def _deliveries_in_order(plugin: Any) -> None:
    data = plant_config(strings=len(STRINGS), ups=2, plugins={"slow": {}})
    async with GatewayHarness(data, extra_plugins={"slow": plugin}) as h:
        published: dict[int, int] = {}  # id(plant) -> publish number

        def publish(name: str, n: int) -> None:
            h.publish(name, make_reading(3, current_a=float(n)))
            plant = h.gateway.store.snapshot
            published[id(plant)] = n

        publish("S1", 0)
        await h.wait_until(lambda: h.gateway.channels["slow"].stats.busy_since is not None)
        rng = random.Random(7)
        for n in range(1, PUBLISHES):  # S1 at t1, S2 at t2, S1 at t3, ... in a random mix
            publish(rng.choice(STRINGS), n)
            if n % 50 == 0:
                await asyncio.sleep(0)  # let the loop breathe; the slow call still holds
        plugin.release.set()
        stats = h.gateway.channels["slow"].stats
        await h.wait_until(
            lambda: stats.readings_delivered + stats.readings_coalesced == PUBLISHES,
            what="every reading to be delivered or coalesced",
        )
        order = [published[id(plant)] for _, plant in plugin.seen]
        assert stats.readings_coalesced >= PUBLISHES - 10, stats
        assert all(a < b for a, b in pairwise(order)), order
        assert order[-1] == PUBLISHES - 1
        # every plant is the one published with its reading
        assert all(plant.strings[s.name] is s for s, plant in plugin.seen)
        # and every string's newest reading got through
        newest = {s.name: s for s, _ in plugin.seen}
        assert newest == h.gateway.store.snapshot.strings


async def test_a_thread_worker_delivers_plants_in_time_order_under_coalescing() -> None:
    await _deliveries_in_order(SlowThreadPlugin())


async def test_a_loop_worker_delivers_plants_in_time_order_under_coalescing() -> None:
    await _deliveries_in_order(SlowLoopPlugin())
