"""The plant ``btms-gateway demo`` runs, as configuration: two buses, two UPS,
four strings, and every plugin that can run on its defaults.

Only configuration lives here, no simulator: ``btms_gateway.kit.demo``
starts the simulators and points the buses at them, and the exporters
(``export ede --demo``, ``export modbus-map --demo``) document the same plant
without starting anything. Core knows no protocol, so the demo's runtime sits
above it in the kit while its plant stays beside the other configuration.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import pluggy
from pydantic import ValidationError

from .config_load import LoadedConfig
from .plugin_manager import FailureLog, implementations
from .registry import config_sections, validate_config

SimTransport = Literal["pty", "tcp"]
SimMode = Literal["float", "discharge"]  # the simulator's values: floating, or discharging
#: (bus, transport, baud, [(string, slave, cells, mode)]) for each simulated bus
PLANT: tuple[tuple[str, SimTransport, int, list[tuple[str, int, int, SimMode]]], ...] = (
    ("demo-pty", "pty", 115200, [("A1", 1, 120, "float"), ("A2", 2, 60, "float")]),
    ("demo-tcp", "tcp", 38400, [("B1", 1, 24, "discharge"), ("B2", 2, 24, "discharge")]),
)
UPS_OF = {"A1": "UPS-A", "A2": "UPS-A", "B1": "UPS-B", "B2": "UPS-B"}
#: the hooks of a plugin that serves or consumes data while the gateway runs
RUNTIME_HOOKS = ("startup", "string_reading", "alarm_event")


def bus_section(bus: str, transport: str, baud: int, where: Any) -> dict[str, Any]:
    """The ``[[buses]]`` entry of a demo bus: ``where`` is the pseudo-terminal's
    path, or the (host, port) of the RTU-over-TCP simulator."""
    cfg: dict[str, Any] = {"name": bus, "baudrate": baud, "timeout_s": 0.3, "poll_interval_s": 1.0}
    if transport == "tcp":
        host, port = where
        return cfg | {"transport": "rtu-over-tcp", "host": host, "tcp_port": port}
    return cfg | {"port": where}


def runtime_plugins(pm: pluggy.PluginManager) -> set[str]:
    """Plugins with a runtime hook: the others (device profiles, bus transports,
    command-line additions) have nothing to run in the demo."""
    return {name for hook in RUNTIME_HOOKS for name, _ in implementations(pm, hook)}


def demo_config(
    buses: list[dict[str, Any]],
    data_dir: str,
    pm: pluggy.PluginManager,
    left_out: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every plugin whose settings validate on their defaults runs (its demo port),
    unless its section model's ``demo_unavailable()`` gives a reason it cannot
    (a client plugin with no server to talk to); the reasons go to ``left_out``.
    A model's ``demo_section()``, if it has one, is the section the demo uses."""
    plugins = {}
    running = runtime_plugins(pm)
    for name, model in config_sections(pm, FailureLog()).items():
        if name not in running:
            continue
        try:
            model.model_validate({})
        except ValidationError:
            continue  # needs site settings (e.g. a file path): not part of the demo
        probe = getattr(model, "demo_unavailable", None)
        reason = probe() if callable(probe) else None
        if reason:
            if left_out is not None:
                left_out[name] = reason
            continue
        section = getattr(model, "demo_section", None)
        plugins[name] = section() if callable(section) else {}
    return {
        "gateway": {
            "name": "btms-gateway demo",
            "poll_interval_s": 1.0,
            "stale_after_s": 5.0,
            "offline_after_failures": 3,
            "data_dir": data_dir,
        },
        "buses": buses,
        "ups": [{"name": "UPS-A"}, {"name": "UPS-B"}],
        "strings": [
            {"name": name, "bus": bus, "slave_id": slave, "ups": UPS_OF[name]}
            for bus, _, _, strings in PLANT
            for name, slave, _, _ in strings
        ],
        "plugins": plugins,
        # the simulator's strings: 100 Ah to 1.75 V/cell at the 10-hour rate (docs/analytics.md)
        "analytics": {"rated_ah": 100.0, "rated_hours": 10.0},
    }


def demo_plant(pm: pluggy.PluginManager) -> LoadedConfig:
    """The configuration ``btms-gateway demo`` runs, validated, without starting
    anything: for the exporters (``export ede --demo``, ``export modbus-map
    --demo``). Where a bus is reached is only known once its simulator runs, so
    the buses hold placeholders; the plant (UPS, strings, indexes) and every
    plugin's section are the demo's own."""
    where = Path(tempfile.gettempdir(), "btms-demo")
    buses = [
        bus_section(bus, transport, baud, ("127.0.0.1", 1))
        if transport == "tcp"
        else bus_section(bus, transport, baud, str(where / bus)) | {"wait_for_port": True}
        for bus, transport, baud, _ in PLANT
    ]
    return validate_config(demo_config(buses, str(where / "var"), pm), "<demo>", pm)
