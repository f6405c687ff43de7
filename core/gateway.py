"""The running gateway: wires the store, engine, alarms and plugins together.

Data flows one way: engine -> store -> alarm engine -> plugin channels. A
plugin receives this object in its runtime hooks and may use what the
``Gateway`` protocol of core/views.py names (docs/plugin_hooks.md, "The
gateway object"); the rest is the host's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel

from .alarm_types import ActiveAlarm, ActiveAlarms, AlarmEvent, EventLogHealth
from .alarms.engine import AlarmEngine
from .alarms.eventlog import EventLog
from .analytics import AnalyticsService
from .analytics.health import StringHealth, live
from .config_load import LoadedConfig
from .counters import CommCounters
from .datadir import DataDirBusy, DataDirLock
from .engine import BusStatus, Engine
from .history import HistoryService, history_for
from .model import PlantSnapshot, StringSnapshot
from .netguard import raise_open_file_limit
from .plugin_channel import PluginChannel, open_channel
from .plugin_manager import FailureLog, call_each, implementations
from .profiles import LinkFactory
from .quantities import Level, Quantity, of_level
from .registry import bus_transports, device_profiles, quantity_table
from .reports import Report, ReportError, ReportSource, report_generators
from .store import SnapshotStore
from .version import __version__

if TYPE_CHECKING:
    from . import views

    def _implements_the_plugin_view(gateway: Gateway) -> views.Gateway:
        return gateway  # mypy fails here when Gateway stops satisfying views.Gateway


log = logging.getLogger("btms_gateway")

STARTUP_LIMIT_S = 30.0


class GatewayStartError(RuntimeError):
    """A plugin could not start; the gateway refuses to run half-configured."""


def start_failure(exc: BaseException) -> str:
    """Why a plugin did not start, for one log line: its own message, or what
    kind of failure it was when it has none (a time-out has none)."""
    if isinstance(exc, TimeoutError):
        return f"did not start within {STARTUP_LIMIT_S:g} s"
    return str(exc) or type(exc).__name__


class NoAlarms:
    """Stands in when the alarm engine is not configured (tests of the bare core)."""

    def active(self) -> list[ActiveAlarm]:
        return []

    def acknowledge(self, alarm_id: str, by: str) -> str | None:
        return None

    def on_string(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def history_state(self, state: str, reason: str, now: float) -> None:
        pass

    def restore(self, plant: PlantSnapshot) -> None:
        pass

    def close(self) -> None:
        pass

    def baselines(self, string: str) -> dict[int, float]:
        return {}

    def baseline_rows(self, string: str) -> list[Any]:
        return []

    def note(self, rule: str, path: Any, message: str, **kw: Any) -> None:
        pass

    def retake_baseline(self, string: str, cell: int | None, by: str) -> tuple[bool, str]:
        return False, "no alarm engine: baselines are not kept"

    def log_health(self) -> EventLogHealth:
        return EventLogHealth()


class Gateway:
    def __init__(
        self,
        config: LoadedConfig,
        pm: pluggy.PluginManager,
        *,
        links: Mapping[str, LinkFactory] | None = None,
        demo: bool = False,
        alarms: bool = True,
    ) -> None:
        """``links``: a link factory per bus transport, instead of those the
        installed plugins register (a test's own links); ``alarms=False``
        runs without the alarm engine and event log (tests of the bare core)."""
        self.config = config
        self.settings = config.gateway
        self.pm = pm
        self.demo = demo
        self.failures = FailureLog()
        self.enabled = config.enabled_plugins()
        self.store = SnapshotStore.from_config(self.settings)
        self.started_at = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, PluginChannel] = {}
        self.alarms: AlarmEngine | NoAlarms = self._create_alarms() if alarms else NoAlarms()
        #: the history store (docs/history.md); None when ``[history] enabled = false``
        self.history: HistoryService | None = history_for(self.settings.history, self.data_dir)
        #: battery analytics (docs/analytics.md): derived values, discharges, trends
        self.analytics = AnalyticsService(
            self.settings.analytics,
            self.settings.alarms,
            self.data_dir,
            baselines=self.alarms.baselines,
            note=self.alarms.note,
            history=self.history,
        )
        self.engine = Engine(
            self.settings,
            self.store,
            device_profiles(pm, self.failures),
            self._publish,
            bus_transports(pm, self.failures) if links is None else links,
        )
        #: report kind -> generator, from every plugin's register_reports
        self.reports = report_generators(pm, self.failures)
        #: core's quantities and those the plugins registered (core/quantities.py)
        self.quantity_table = quantity_table(pm, self.failures)
        self._stop = asyncio.Event()
        self._started: list[str] = []
        self.ready = asyncio.Event()
        self._data_lock: DataDirLock | None = None

    # --- the API plugins use (views.Gateway) ----------------------------------
    @property
    def name(self) -> str:
        return self.settings.gateway.name

    @property
    def version(self) -> str:
        return __version__

    def plugin_config(self, name: str) -> BaseModel | None:
        """Your validated ``[plugins.NAME]`` section (None if absent)."""
        return self.config.plugin(name)

    def quantities(self, level: Level) -> tuple[Quantity, ...]:
        return of_level(level, self.quantity_table)

    @property
    def data_dir(self) -> Path:
        return self.settings.gateway.data_dir

    @property
    def events(self) -> EventLog | None:
        """The SQLite event log, None without the alarm engine."""
        return self.alarms.log if isinstance(self.alarms, AlarmEngine) else None

    @property
    def is_ready(self) -> bool:
        return self.ready.is_set()

    def bus_status(self) -> list[BusStatus]:
        return self.engine.bus_status()

    def string_counters(self, name: str) -> CommCounters:
        return self.engine.string_counters(name)

    def plugin_failures(self) -> dict[tuple[str, str], int]:
        """(plugin, hook) -> failed calls: the hooks' own and the channels' (a copy)."""
        return dict(self.failures.counts)

    def uptime_s(self) -> float:
        return time.time() - self.started_at

    def string_health(self, string: str) -> StringHealth | None:
        """A string's resistance health now (docs/analytics.md): each cell
        against its baseline and the string median, trends; None if unknown."""
        return live(self, string)

    def report_source(self) -> ReportSource:
        """What reports are made from, live: history, discharges, health now."""
        return ReportSource(
            site=self.settings.gateway.name,
            settings=self.settings,
            history=self.history.queries if self.history is not None else None,
            discharges=self.analytics.store,
            health=self.string_health,
        )

    def make_report(self, kind: str, subject: str, fmt: str) -> Report:
        """Run a registered report generator (blocking: call it in an executor).
        Raises ReportError for an unknown kind or what the generator refuses."""
        generator = self.reports.get(kind)
        if generator is None:
            known = ", ".join(sorted(self.reports)) or "none installed"
            raise ReportError(f"report kind: one of {known}, found {kind!r}")
        return generator(self.report_source(), subject, fmt)

    # --- lifecycle -----------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start plugins, poll until ``request_stop()``, then shut down cleanly."""
        self.loop = asyncio.get_running_loop()
        raise_open_file_limit()  # listeners leave a reserve below it (netguard.may_accept)
        try:  # one gateway per data_dir (core/datadir.py)
            self._data_lock = DataDirLock.acquire(self.data_dir)
        except DataDirBusy as exc:
            raise GatewayStartError(f"cannot run: {exc}") from None
        self._open_channels()
        self.alarms.restore(self.store.snapshot)
        if self.history is not None:
            self.history.start()
        self.analytics.start()
        await self._startup()
        engine = asyncio.create_task(self.engine.run(), name="engine")
        ticker = asyncio.create_task(self._tick(), name="alarm-tick")
        self.ready.set()
        log.info(
            "gateway %r running: %d strings on %d buses, plugins %s",
            self.settings.gateway.name,
            len(self.settings.strings),
            len(self.settings.buses),
            sorted(self.enabled) or "none",
        )
        try:
            stopper = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({engine, stopper}, return_when=asyncio.FIRST_COMPLETED)
            failure = engine.exception() if engine in done else None
            if failure is not None:
                raise failure
        finally:
            await self._shutdown(engine, ticker)

    async def _startup(self) -> None:
        """Start plugins one at a time; if one fails, shut down the ones already
        started (releasing their ports) and refuse to run.

        A failed start is fatal, not isolated: the error says which plugin and
        why in one line (the plugins name the address they could not bind); the
        traceback is for --log-level DEBUG."""
        for name, impl in implementations(self.pm, "startup", only=self.enabled):
            try:
                result = impl.function(**{k: self for k in impl.argnames})
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, STARTUP_LIMIT_S)
            except Exception as exc:
                log.debug("plugin %r failed to start", name, exc_info=exc)
                await self._shutdown()
                raise GatewayStartError(
                    f"plugin {name!r} failed to start: {start_failure(exc)}"
                ) from exc
            self._started.append(name)

    async def _shutdown(self, *tasks: asyncio.Task[Any]) -> None:
        started = time.monotonic()
        budget = self.settings.gateway.shutdown_timeout_s
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pending = [
            r
            for _, r in call_each(
                self.pm, "shutdown", self.failures, only=set(self._started), gateway=self
            )
            if inspect.isawaitable(r)
        ]

        if pending:
            remaining = max(0.1, budget - (time.monotonic() - started))
            _done, late = await asyncio.wait(
                [asyncio.ensure_future(p) for p in pending], timeout=remaining
            )
            for t in late:
                t.cancel()
            if late:
                log.warning("%d plugin(s) did not shut down within %.1f s", len(late), budget)
        for channel in self.channels.values():
            channel.stop(timeout=0.2)
        self.analytics.close()
        self.alarms.close()
        if self.history is not None:
            await asyncio.to_thread(self.history.close)
        if self._data_lock is not None:
            self._data_lock.release()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            try:
                self.alarms.tick(now)
                # history_paused follows the writer's state (docs/alarms.md)
                h = self.history.status() if self.history is not None else None
                self.alarms.history_state(h.state if h else "disabled", h.reason if h else "", now)
            except Exception:
                log.exception("alarm engine tick failed")

    # --- data flow -------------------------------------------------------------
    def _open_channels(self) -> None:
        assert self.loop is not None
        impls: dict[str, dict[str, Any]] = {}
        for hook in ("string_reading", "alarm_event"):
            for name, impl in implementations(self.pm, hook, only=self.enabled):
                impls.setdefault(name, {})[hook] = impl
        for name, hooks in impls.items():
            self.channels[name] = open_channel(name, hooks, self.loop, self.failures, self)

    def _publish(self, string: StringSnapshot) -> None:
        try:  # derived values first: the store, alarms and plugins see them
            string = self.analytics.update(string)
        except Exception:
            log.exception("analytics failed for string %s", string.name)
        plant = self.store.publish(string)
        try:
            self.alarms.on_string(string, plant)
        except Exception:
            log.exception("alarm evaluation failed for string %s", string.name)
        if self.history is not None:
            self.history.offer(string)
        for channel in self.channels.values():
            channel.offer_reading(string, plant)

    def emit(self, event: AlarmEvent, active: ActiveAlarms | None = None) -> None:
        """Hand a committed alarm event, with the alarms active after its commit,
        to every plugin (never blocks). A test that emits an event of its own
        may leave ``active`` out: the alarm service's active alarms go with it."""
        if active is None:
            active = tuple(self.alarms.active())
        for channel in self.channels.values():
            channel.offer_event(event, active)

    def _create_alarms(self) -> AlarmEngine:
        alarms = self.settings.alarms
        self.data_dir.mkdir(parents=True, exist_ok=True)
        event_log = EventLog(self.data_dir / "events.sqlite", synchronous=alarms.synchronous)
        try:
            event_log.verify()  # a damaged page would fail writes later, one by one
        except BaseException:
            with contextlib.suppress(Exception):
                event_log.close()
            raise
        return AlarmEngine(alarms, event_log, self.emit)
