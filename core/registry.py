"""What the installed plugins register: config section models, device profiles,
bus transports and plant quantities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel

from .config_base import PluginSection
from .config_load import ConfigError, LoadedConfig, Problem, load, validate
from .plugin_manager import FailureLog, collect_registrations
from .profiles import DeviceProfile, LinkFactory
from .quantities import QUANTITIES, Quantity, QuantityError, merged


def config_sections(pm: pluggy.PluginManager, failures: FailureLog) -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for plugin, (name, model) in collect_registrations(pm, "register_config_sections", failures):
        if name in sections:
            raise ConfigError(
                "(plugins)",
                [
                    Problem(
                        f"plugins.{name}",
                        f"one plugin per section name, found {plugin!r} registering "
                        f"{name!r} a second time",
                    )
                ],
            )
        sections[name] = model
    for name, registered in pm.list_name_plugin():
        if registered is not None and name not in sections:
            sections[name] = PluginSection  # a plugin without settings can still be enabled
    return sections


def device_profiles(pm: pluggy.PluginManager, failures: FailureLog) -> dict[str, DeviceProfile]:
    return {
        profile.name: profile
        for _, (profile,) in collect_registrations(pm, "register_device_profiles", failures)
    }


def bus_transports(pm: pluggy.PluginManager, failures: FailureLog) -> dict[str, LinkFactory]:
    """``BusConfig.transport`` -> the factory of its links (the first plugin to
    register a transport has it, as pluggy orders them)."""
    transports: dict[str, LinkFactory] = {}
    for _, (name, factory) in collect_registrations(pm, "register_bus_transports", failures):
        transports.setdefault(name, factory)
    return transports


def quantity_table(pm: pluggy.PluginManager, failures: FailureLog) -> tuple[Quantity, ...]:
    """Core's quantities, then those the plugins register, in pluggy's order. A
    registration whose (level, key) is taken is recorded as that plugin's
    failure (logged once) and left out: the table never holds a quantity twice."""
    table = QUANTITIES
    for plugin, (q,) in collect_registrations(pm, "register_quantities", failures):
        try:
            table = merged((q,), table)
        except QuantityError as exc:
            failures.record(plugin, "register_quantities", exc)
    return table


def load_config(path: str | Path, pm: pluggy.PluginManager) -> LoadedConfig:
    """Validate a config file against the core schema and every installed plugin."""
    failures = FailureLog()
    return load(
        path,
        config_sections(pm, failures),
        device_profiles(pm, failures),
        set(bus_transports(pm, failures)),
    )


def load_settings(path: str | Path, pm: pluggy.PluginManager) -> LoadedConfig:
    """The file validated against the core schema and the plugins' sections,
    without checking device profiles or bus transports: for the commands that
    only need the gateway's settings (``data_dir``, ``[history]``), which work
    on a machine where the devices' plugins are not installed."""
    return load(path, config_sections(pm, FailureLog()))


def validate_config(data: dict[str, Any], source: str, pm: pluggy.PluginManager) -> LoadedConfig:
    failures = FailureLog()
    return validate(
        data,
        source,
        config_sections(pm, failures),
        device_profiles(pm, failures),
        set(bus_transports(pm, failures)),
    )
