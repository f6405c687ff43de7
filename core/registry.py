"""What the installed plugins register: config section models and device profiles."""

from __future__ import annotations

from pathlib import Path

import pluggy
from pydantic import BaseModel

from .config_base import PluginSection
from .config_load import ConfigError, LoadedConfig, Problem, load, validate
from .plugin_manager import FailureLog, collect_registrations
from .profiles import DeviceProfile


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
    for name, plugin in pm.list_name_plugin():
        if plugin is not None and name not in sections:
            sections[name] = PluginSection  # a plugin without settings can still be enabled
    return sections


def device_profiles(pm: pluggy.PluginManager, failures: FailureLog) -> dict[str, DeviceProfile]:
    return {
        profile.name: profile
        for _, (profile,) in collect_registrations(pm, "register_device_profiles", failures)
    }


def load_config(path: str | Path, pm: pluggy.PluginManager) -> LoadedConfig:
    """Validate a config file against the core schema and every installed plugin."""
    failures = FailureLog()
    return load(path, config_sections(pm, failures), device_profiles(pm, failures))


def validate_config(data: dict, source: str, pm: pluggy.PluginManager) -> LoadedConfig:
    failures = FailureLog()
    return validate(data, source, config_sections(pm, failures), device_profiles(pm, failures))
