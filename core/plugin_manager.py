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


def create_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


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
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        version = dist.version if dist is not None else None
        dname = dist.project_name if dist is not None else None
        if dist is None:
            try:
                version = metadata.version(getattr(plugin, "__name__", name).split(".")[0])
            except metadata.PackageNotFoundError:
                version = None
        out.append(PluginInfo(name, version, dname, hooks))
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
