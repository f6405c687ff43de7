"""The plugin hooks of btms-gateway (pluggy project ``btms_gateway``).

Every hook here has a section in docs/plugin_hooks.md, and a test fails when
one does not. Plugins are modules or objects registered under the entry-point
group ``btms_gateway``; the built-in plugins use the same entry points.

Runtime hooks (``startup``, ``shutdown``, ``string_reading``, ``alarm_event``)
run only for plugins whose ``[plugins.NAME]`` section is present in the
config (and not ``enabled = false``); registration hooks run for every
installed plugin. The host calls implementations one at a time, so a plugin
that raises is logged once and skipped, never stopping the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import click
    from pydantic import BaseModel

    from .alarm_types import ActiveAlarms, AlarmEvent
    from .model import PlantSnapshot, StringSnapshot
    from .profiles import DeviceProfile, LinkFactory
    from .quantities import Quantity
    from .views import Gateway

PROJECT = "btms_gateway"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_config_sections(register: Callable[[str, type[BaseModel]], None]) -> None:
    """Declare the pydantic model that validates ``[plugins.NAME]``.

    Call ``register(name, Model)``. The model should subclass
    :class:`btms_gateway.core.config.PluginSection` (unknown keys forbidden,
    an ``enabled`` flag). A section with no registered model is a config error.
    """


@hookspec
def register_device_profiles(register: Callable[[DeviceProfile], None]) -> None:
    """Add a southbound device profile (a kind of string master).

    Call ``register(profile)`` with an object satisfying
    :class:`btms_gateway.core.profiles.DeviceProfile`; strings select it with
    ``profile = "NAME"``. The BM-SM profile registers this way too.
    """


@hookspec
def register_bus_transports(register: Callable[[str, LinkFactory], None]) -> None:
    """Add a bus transport: how the engine reaches a bus of ``transport = "NAME"``.

    Call ``register(name, factory)``; ``factory(bus_config)`` returns a
    :class:`btms_gateway.core.profiles.BusLink`, not yet opened (the engine
    opens it in the bus's thread, and reopens it after a ``PollError`` of kind
    PORT). The RTU link registers ``serial`` and ``rtu-over-tcp`` this way.
    """


@hookspec
def register_quantities(register: Callable[[Quantity], None]) -> None:
    """Add a plant quantity to the table every protocol derives from.

    Call ``register(quantity)`` with an :class:`btms_gateway.core.api.Quantity`
    whose (level, key) is not in the table yet; every protocol then serves
    it, placed automatically (docs/plugin_hooks.md, "How a protocol derives
    its table"). A gateway merges the registered quantities with core's own
    when it is built: ``gateway.quantities(level)``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``btms-gateway`` command line.

    ``cli`` is the root group; ``cli.commands["export"]`` is the ``export``
    group, where documentation exporters (maps, MIBs, object lists) belong.
    """


@hookspec
def register_reports(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Offer a report (an HTML page, a PDF) the dashboard and CLI can make.

    Call ``register(kind, generator)``; ``generator(source, subject, fmt)``
    gets a :class:`btms_gateway.core.reports.ReportSource` (history,
    discharges, resistance health, settings), what the report is about (a
    discharge id, a string name) and ``"html"`` or ``"pdf"``, and returns a
    :class:`btms_gateway.core.reports.Report`, or raises ``ReportError``. The
    gateway runs it for a plugin that asks (``gateway.make_report``), in the
    caller's thread: it may block.
    """


@hookspec
def startup(gateway: Gateway) -> Awaitable[Any] | None:
    """The gateway is configured and about to poll: start serving.

    May return an awaitable (e.g. an ``async def`` implementation), which is
    awaited on the gateway's event loop before acquisition starts. Raising
    here stops the gateway from starting (it never runs half-configured).
    Read your settings with ``gateway.plugin_config(NAME)``; ``gateway`` is
    typed :class:`btms_gateway.core.api.Gateway`, and what it offers beyond
    that protocol is not stable.
    """


@hookspec
def shutdown(gateway: Gateway) -> Awaitable[Any] | None:
    """The gateway is stopping: close servers and files. May return an awaitable;
    all shutdown hooks together are given ``gateway.settings.gateway.shutdown_timeout_s``
    (``[gateway] shutdown_timeout_s``) to finish."""


@hookspec
def string_reading(
    string: StringSnapshot, plant: PlantSnapshot, gateway: Gateway
) -> Awaitable[Any] | None:
    """A string was polled or its quality changed.

    ``string`` is the new snapshot of that string (check ``string.quality``:
    values are only current when it is GOOD); ``plant`` is the whole plant at
    the same instant; ``gateway`` the gateway that polled it (take only the
    arguments you need). Delivered through the plugin's own inbox, which keeps
    only the newest reading per string, so a slow plugin sees fewer readings
    but never delays acquisition; readings come in the order they were
    published, so each ``plant`` is never older than the previous call's
    (docs/plugin_hooks.md, "Order"). Who calls it depends on how the plugin
    wrote its hooks: when ``string_reading`` (and ``alarm_event``, if it has
    one) is ``async def``, a task on the gateway's event loop calls them
    (required when touching asyncio servers; such a hook must not block);
    otherwise the plugin's own worker thread does (an awaitable a plain
    function returns is run on the gateway's event loop).
    """


@hookspec
def alarm_event(event: AlarmEvent, active: ActiveAlarms, gateway: Gateway) -> Awaitable[Any] | None:
    """An alarm was raised, cleared or acknowledged.

    ``active`` is the tuple of alarms active right after the commit that holds
    ``event`` (oldest first; the same immutable tuple for every plugin and
    every event of that commit): serve it as it is, rather than rebuilding the
    active set from events or asking ``gateway.alarms.active()``. Delivered in
    order through the plugin's bounded event queue (events are never
    coalesced; if a plugin falls 10,000 events behind, the oldest are dropped
    and counted). Same threading rules as ``string_reading``. As with every
    hook, take only the arguments you need: ``alarm_event(event)`` still works.
    """
