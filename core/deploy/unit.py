"""The systemd unit for a configuration: the template shipped in this package,
with the lines that depend on the site filled in from its config file.

Two things are decided from the file rather than granted to every site:
- ``CAP_NET_BIND_SERVICE``, only when a plugin listens on a port below 1024
  (Modbus 502, SNMP 161); otherwise the unit keeps no capability at all.
  Ports are found by walking each enabled plugin's settings: a ``port`` or
  ``*_port`` number, or the ``:PORT`` of an ``address``; a table with
  ``enabled = false`` (e.g. Modbus TLS when off) and lists (SNMP trap
  receivers, which are destinations, not listeners) are skipped. This also
  covers third-party plugins that name their ports that way.
- ``DeviceAllow=`` for the serial ports of the configured buses, as device
  classes (``char-ttyUSB``) rather than nodes: a USB adapter's node number
  changes when it is replugged, and a ``/dev/serial/by-id`` link may not exist
  yet when the service starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..config_load import LoadedConfig
from ..version import __version__

UNIT_NAME = "btms-gateway.service"
TEMPLATE = "btms-gateway.service.in"
#: the first line of every unit this package writes (install refuses to replace others)
MARKER = "# btms-gateway: systemd service unit, written by `btms-gateway service install`"
#: where systemd's StateDirectory=btms-gateway puts the data (ExecStart passes it on)
STATE_DIR = Path("/var/lib/btms-gateway")
PRIVILEGED_BELOW = 1024
#: kernel names of USB serial adapters, allowed when a port's kind cannot be told
USB_SERIAL_CLASSES = ("ttyUSB", "ttyACM")
_TTY = re.compile(r"^(tty[A-Za-z]+?)\d+$")


@dataclass
class Unit:
    text: str
    privileged_ports: list[tuple[int, str]] = field(default_factory=list)
    device_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def listening_ports(loaded: LoadedConfig) -> list[tuple[int, str]]:
    """(port, key path) of every port the enabled plugins listen on, as far as
    the settings tell (see the module docstring)."""
    found: list[tuple[int, str]] = []

    def walk(value: Any, path: str) -> None:
        if not isinstance(value, dict) or value.get("enabled", True) is False:
            return
        for key, item in value.items():
            where = f"{path}.{key}"
            if isinstance(item, dict):
                walk(item, where)
            elif isinstance(item, int) and not isinstance(item, bool):
                if key == "port" or key.endswith("_port"):
                    found.append((item, where))
            elif isinstance(item, str) and key == "address" and ":" in item:
                port = item.rpartition(":")[2]
                if port.isdigit():
                    found.append((int(port), where))

    for name in sorted(loaded.enabled_plugins()):
        model = loaded.plugin(name)
        if model is not None:
            walk(model.model_dump(), f"plugins.{name}")
    return found


def serial_device_classes(loaded: LoadedConfig) -> tuple[list[str], list[str]]:
    """The device classes of the serial buses' ports, and notes on ports whose
    kind had to be guessed."""
    classes: list[str] = []
    notes: list[str] = []
    for bus in loaded.gateway.buses:
        if bus.transport != "serial" or not bus.port:
            continue
        node = os.path.realpath(bus.port) if os.path.exists(bus.port) else bus.port
        match = _TTY.match(Path(node).name)
        if match:
            found = [match.group(1)]
        else:
            found = list(USB_SERIAL_CLASSES)
            notes.append(
                f"bus {bus.name}: cannot tell the kind of {bus.port} (not present now); "
                f"allowing USB serial adapters ({', '.join(found)})"
            )
        classes.extend(c for c in found if c not in classes)
    return classes, notes


def unit_path(path: Path) -> str:
    """A path as a unit file reads it: % and $ escaped, quoted if it has blanks."""
    text = str(path).replace("%", "%%").replace("$", "$$")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def render(loaded: LoadedConfig, *, config_path: Path, executable: Path) -> Unit:
    """The unit text for this configuration, and what was decided from it."""
    privileged = [(p, k) for p, k in listening_ports(loaded) if 0 < p < PRIVILEGED_BELOW]
    classes, notes = serial_device_classes(loaded)
    if privileged:
        why = ", ".join(f"{k} = {p}" for p, k in privileged)
        capabilities, capability_why = "CAP_NET_BIND_SERVICE", f"ports below 1024 ({why})"
    else:
        capabilities, capability_why = "", "none (no port below 1024 is configured)"
    devices = "\n".join(f"DeviceAllow=char-{c} rw" for c in classes) or (
        "# (no serial bus configured)"
    )
    data_dir = Path(loaded.gateway.gateway.data_dir)
    if data_dir != STATE_DIR:
        notes.append(
            f"gateway.data_dir is {data_dir} but the service keeps its data in "
            f'{STATE_DIR} (its StateDirectory); set data_dir = "{STATE_DIR}" so that '
            "`events`, `alarms` and `backup -c` find the service's files"
        )
    values = {
        "VERSION": __version__,
        "CONFIG": unit_path(config_path),
        "EXEC": unit_path(executable),
        "CAPABILITIES": capabilities,
        "CAPABILITY_WHY": capability_why,
        "DEVICE_ALLOW": devices,
    }
    text = files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return Unit(text, privileged, classes, notes)
