"""Loading plugins and calling hooks one implementation at a time.

pluggy's own hook call stops at the first implementation that raises, so a
buggy third-party plugin would silence every plugin after it. ``call_each``
calls implementations one by one, logs a failure once per plugin and hook,
and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger("btms_gateway.plugins")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]


class FailureLog:
    """Remembers which (plugin, hook) pairs already failed, so a plugin that
    raises on every reading logs one traceback, not thousands."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def record(self, plugin: str, hook: str, exc: BaseException) -> None:
        key = (plugin, hook)
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        if n == 1:
            log.error(
                "plugin %r failed in %s; isolating it and carrying on", plugin, hook, exc_info=exc
            )


#: entry-point name -> why it could not be loaded (shown by ``btms-gateway plugins``)
LOAD_FAILURES: dict[str, str] = {}
#: entry-point name -> (distribution name, version) of the package that provides it
DISTRIBUTIONS: dict[str, tuple[str, str]] = {}


def create_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entrypoints_isolated(pm)
    return pm


def load_entrypoints_isolated(pm: pluggy.PluginManager) -> None:
    """Like pluggy's loader, but one plugin that fails to import (or declares a
    hook wrongly) is logged and left out instead of taking the gateway down;
    a config section for it is then reported as belonging to no plugin."""
    for ep in metadata.entry_points(group=hookspecs.PROJECT):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            if ep.name not in LOAD_FAILURES:
                log.error("plugin %r (%s) could not be loaded: %s", ep.name, ep.value, exc)
            LOAD_FAILURES[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        dist = getattr(ep, "dist", None)
        if dist is not None:
            DISTRIBUTIONS[ep.name] = (dist.metadata["Name"], dist.version)


def implementations(
    pm: pluggy.PluginManager, hook: str, only: set[str] | None = None
) -> Iterator[tuple[str, Any]]:
    """(plugin name, implementation) pairs, in pluggy's call order."""
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        if only is not None and impl.plugin_name not in only:
            continue
        yield impl.plugin_name, impl


def call_each(
    pm: pluggy.PluginManager,
    hook: str,
    failures: FailureLog,
    only: set[str] | None = None,
    **kwargs: Any,
) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook``; failures are logged and skipped."""
    results = []
    for name, impl in implementations(pm, hook, only):
        args = {k: kwargs[k] for k in impl.argnames}
        try:
            results.append((name, impl.function(**args)))
        except Exception as exc:
            failures.record(name, hook, exc)
    return results


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """What ``btms-gateway plugins`` prints: name, version, distribution, hooks."""
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        if plugin is None:
            continue
        dist_name, version = DISTRIBUTIONS.get(name, (None, None))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        out.append(PluginInfo(name, version, dist_name, hooks))
    return out


def collect_registrations(
    pm: pluggy.PluginManager, hook: str, failures: FailureLog
) -> list[tuple[str, tuple[Any, ...]]]:
    """Run a register-style hook; return (plugin name, register() args) pairs."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for name, impl in implementations(pm, hook):

        def register(*args: Any, _name: str = name) -> None:
            out.append((_name, args))

        try:
            impl.function(register)
        except Exception as exc:
            failures.record(name, hook, exc)
    return out
