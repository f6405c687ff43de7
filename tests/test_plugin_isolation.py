"""A plugin that raises or blocks never stops the other plugins or the data flow."""

from __future__ import annotations

import asyncio
import logging
import threading
from itertools import pairwise

import pytest
from btms_gateway.core import hookimpl, plugin_channel
from btms_gateway.core.gateway import GatewayStartError
from btms_gateway.core.model import Quality
from btms_gateway.core.plugin_manager import FailureLog
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config


class Recorder:
    def __init__(self) -> None:
        self.latest: dict[str, float] = {}
        self.events: list[object] = []

    @hookimpl
    def string_reading(self, string):
        self.latest[string.name] = string.reading.current_a

    @hookimpl
    def alarm_event(self, event):
        self.events.append(event)


class Raiser:
    calls = 0

    @hookimpl
    def string_reading(self, string, plant):
        self.calls += 1
        raise RuntimeError("boom")


class Blocker:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[float] = []

    @hookimpl
    def string_reading(self, string):
        self.release.wait(30)  # stalls its own worker thread until the test lets go
        self.seen.append(string.reading.current_a)


def config(*names: str) -> dict:
    return plant_config(strings=2, ups=1, plugins={n: {} for n in names})


async def test_raising_and_blocking_plugins_do_not_stop_the_others(caplog):
    recorder, raiser, blocker = Recorder(), Raiser(), Blocker()
    plugins = {"recorder": recorder, "raiser": raiser, "blocker": blocker}
    caplog.set_level(logging.ERROR, logger="btms_gateway.plugins")
    async with GatewayHarness(config(*plugins), extra_plugins=plugins) as h:
        for i in range(200):
            h.publish("S1", make_reading(3, current_a=float(i)))
            h.publish("S2", make_reading(3, current_a=float(-i)))
        await h.wait_until(
            lambda: recorder.latest == {"S1": 199.0, "S2": -199.0},
            what="the recorder to see the last readings",
        )
        await h.wait_until(lambda: raiser.calls >= 2, what="the raiser to be called again")
        stats = h.gateway.channels["blocker"].stats
        assert stats.readings_coalesced >= 390  # 400 offered, the stalled worker holds one
        blocker.release.set()
        await h.wait_until(
            lambda: sorted(blocker.seen[-2:]) == [-199.0, 199.0],
            what="the blocker to catch up with the newest readings",
        )
        assert len(blocker.seen) <= 4  # it was never fed the backlog
    failures = [r for r in caplog.records if "'raiser' failed in string_reading" in r.message]
    assert len(failures) == 1  # logged once, however often it raised
    assert h.gateway.failures.counts[("raiser", "string_reading")] == raiser.calls


async def test_disabled_and_unconfigured_plugins_get_no_readings():
    on, off, absent = Recorder(), Recorder(), Recorder()
    data = plant_config(strings=1, ups=1, plugins={"on": {}, "off": {"enabled": False}})
    async with GatewayHarness(data, extra_plugins={"on": on, "off": off, "absent": absent}) as h:
        h.publish("S1", make_reading(2, current_a=3.0), Quality.GOOD)
        await h.wait_until(lambda: on.latest == {"S1": 3.0})
    assert off.latest == {} and absent.latest == {}


class AsyncPlugin:
    """async def hooks: the first reading hangs until released, one raises."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.seen: list[float] = []
        self.release = asyncio.Event()
        self.events: list[object] = []

    @hookimpl
    async def string_reading(self, string):
        self.threads.add(threading.get_ident())
        value = string.reading.current_a
        if value == 0.0:
            await self.release.wait()  # hangs past the time limit
        if value == 1.0:
            raise RuntimeError("boom")
        self.seen.append(value)

    @hookimpl
    async def alarm_event(self, event):
        self.events.append(event)


async def test_async_hooks_run_on_the_loop_with_a_time_limit(monkeypatch, caplog):
    """A plugin whose hooks are all async is served by a task on the loop, not a
    thread that hands each call back to the loop; a call that hangs is cut off at
    the time limit and one that raises is counted, and the newest readings follow."""
    monkeypatch.setattr(plugin_channel, "AWAIT_LIMIT_S", 0.3)
    caplog.set_level(logging.ERROR, logger="btms_gateway.plugins")
    plugin = AsyncPlugin()
    async with GatewayHarness(config("async"), extra_plugins={"async": plugin}) as h:
        assert not [t for t in threading.enumerate() if t.name == "plugin-async"]
        h.publish("S1", make_reading(3, current_a=0.0))
        await asyncio.sleep(0.05)  # the hanging call is under way
        for i in range(1, 50):
            h.publish("S1", make_reading(3, current_a=float(i)))
        await h.wait_until(lambda: plugin.seen[-1:] == [49.0], what="the newest reading")
        stats = h.gateway.channels["async"].stats
        assert stats.readings_coalesced >= 45  # the hung call held the rest back
        assert len(plugin.seen) <= 3
        counts = h.gateway.failures.counts
        assert counts[("async", "string_reading")] == 1  # the time-out (1.0 was coalesced)
        h.publish("S1", make_reading(3, current_a=1.0))
        await h.wait_until(
            lambda: counts[("async", "string_reading")] == 2, what="the raise to be counted"
        )
        h.publish("S1", make_reading(3, current_a=2.0))
        await h.wait_until(lambda: plugin.seen[-1:] == [2.0], what="delivery after a raise")
    assert plugin.threads == {threading.get_ident()}  # the loop's own thread


class FailsToStart:
    @hookimpl
    async def startup(self, gateway):
        raise OSError("address already in use")


async def test_a_plugin_that_cannot_start_stops_the_gateway_from_starting():
    with pytest.raises(GatewayStartError, match="'broken' failed to start: address already"):
        async with GatewayHarness(config("broken"), extra_plugins={"broken": FailsToStart()}):
            pass


def test_a_plugin_that_fails_to_import_is_reported_and_left_out(tmp_path):
    """A broken third-party package must not take the command line down."""
    import os
    import subprocess
    import sys

    dist = tmp_path / "btms_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: btms-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[btms_gateway]\nbroken = btms_broken_missing\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "btms_gateway.core", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "broken           NOT LOADED                   ModuleNotFoundError" in result.stdout
    assert any(line.startswith("jsonl ") for line in result.stdout.splitlines())
    assert "plugin 'broken' (btms_broken_missing) could not be loaded" in result.stderr


class StartsAndStops:
    def __init__(self) -> None:
        self.started = self.stopped = False

    @hookimpl
    async def startup(self, gateway):
        self.started = True

    @hookimpl
    async def shutdown(self, gateway):
        self.stopped = True


async def test_plugins_already_started_are_shut_down_when_another_cannot_start():
    good = StartsAndStops()
    never = StartsAndStops()
    # pluggy calls the last registered first: `good`, then `broken`, then never `never`
    plugins = {"never": never, "broken": FailsToStart(), "good": good}
    with pytest.raises(GatewayStartError, match="'broken' failed to start"):
        async with GatewayHarness(config(*plugins), extra_plugins=plugins):
            pass
    assert good.started and good.stopped
    assert not never.started and not never.stopped


async def test_a_burst_on_the_loop_lets_other_tasks_run_between_calls():
    """A loop-served plugin given many events at once takes turns with the rest
    of the loop: between two of its calls another task has run at least once."""
    ticks = 0
    seen_at: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def alarm_event(event):  # never awaits: it would hold the loop
        seen_at.append(ticks)

    impl = type("Impl", (), {"function": staticmethod(alarm_event), "argnames": ["event"]})
    channel = plugin_channel.open_channel(
        "bursty", {"alarm_event": impl}, asyncio.get_running_loop(), FailureLog()
    )
    task = asyncio.create_task(ticker())
    try:
        for i in range(20):
            channel.offer_event(i, ())
        async with asyncio.timeout(5):
            while channel.stats.events_delivered < 20:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        channel.stop(1.0)
    assert isinstance(channel, plugin_channel.LoopChannel)
    assert len(seen_at) == 20, channel.stats
    assert all(b > a for a, b in pairwise(seen_at)), seen_at
