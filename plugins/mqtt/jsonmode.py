"""The plain JSON mode: a documented topic tree for Node-RED, Telegraf and
home-grown consumers (docs/mqtt.md; payloads in docs/mqtt-json.schema.json).

    PREFIX/NODE/status                 retained: {"online": true|false, ...}, the will says false
    PREFIX/NODE/strings/NAME/state     retained: the string as REST's /api/strings/NAME gives it
    PREFIX/NODE/strings/NAME/data      what changed (by exception), live or replayed
    PREFIX/NODE/events                 each alarm event (QoS 1), live or replayed

Replayed messages say ``"historical": true`` and keep their original times;
the retained state is only ever the newest, so a replay never overwrites it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from btms_gateway.core.api import StringSnapshot, string_dict

from .codec import Message, PlantView
from .exception import Delta
from .quantities import CELL, CELL_STRIDE, STRING

#: Home Assistant sensors made for each string: key -> (device class, unit)
HA_SENSORS = {
    "voltage_v": ("voltage", "V"),
    "current_a": ("current", "A"),
    "soc_pct": ("battery", "%"),
    "soh_pct": (None, "%"),
    "ambient_temperature_c": ("temperature", "°C"),
    "ambient_humidity_pct": ("humidity", "%"),
}


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def delta_dict(delta: Delta, node: str, historical: bool) -> dict[str, Any]:
    """A Delta as the ``data`` topic carries it: string-level keys in
    ``values``, cells by their 1-based index in ``cells``."""
    values: dict[str, Any] = {}
    cells: dict[str, dict[str, Any]] = {}
    for s, v in delta.values:
        cell, q = divmod(s, CELL_STRIDE)
        if cell:
            cells.setdefault(str(cell), {})[CELL[q].key] = v
        else:
            values[STRING[q].key] = v
    return {
        "node": node,
        "string": delta.string,
        "index": delta.index,
        "quality": delta.quality.name.lower(),
        "read_at": delta.at_ms / 1000,
        "changed_at": delta.changed_ms / 1000,
        "historical": historical,
        "full": delta.full,
        "values": values,
        "cells": cells,
    }


class JsonTree:
    sink = "json"

    def __init__(
        self,
        prefix: str,
        node: str,
        plant: PlantView,
        *,
        qos: int = 1,
        state: bool = True,
        homeassistant: bool = False,
        homeassistant_prefix: str = "homeassistant",
    ) -> None:
        self.root = f"{prefix}/{node}"
        self.node = node
        self.plant = plant
        self.qos = qos
        self.state = state
        self.homeassistant = homeassistant
        self.ha_prefix = homeassistant_prefix
        self._connected = False

    # -- topics -----------------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return f"{self.root}/status"

    @property
    def events_topic(self) -> str:
        return f"{self.root}/events"

    def string_topic(self, name: str, leaf: str) -> str:
        return f"{self.root}/strings/{name}/{leaf}"

    def _status(self, online: bool) -> Message:
        body = {
            "online": online,
            "timestamp": int(time.time() * 1000),
            "node": self.node,
            "gateway": self.plant.gateway_name,
            "version": self.plant.version,
        }
        return Message(self.status_topic, dumps(body), 1, True)

    # -- the session ------------------------------------------------------------------
    def will(self, fresh: bool) -> Message:
        return self._status(False)

    def subscriptions(self) -> list[str]:
        return []

    def connected(self) -> list[Message]:
        self._connected = True
        out = [self._status(True)]
        for string in list(self.plant.latest.values()):  # (the loop adds strings)
            if self.homeassistant:
                out.extend(self.discovery(string))
            if self.state and string.reading is not None:
                out.append(self._state(string))
        return out

    def disconnected(self) -> None:
        self._connected = False

    def ready(self) -> bool:
        return self._connected

    def received(self, topic: str, payload: bytes) -> tuple[list[Message], bool]:
        return [], False

    # -- data -------------------------------------------------------------------------
    def _state(self, string: StringSnapshot) -> Message:
        body = string_dict(string, cells=True) | {"node": self.node}
        return Message(self.string_topic(string.name, "state"), dumps(body), self.qos, True)

    def reading(self, delta: Delta, string: StringSnapshot) -> list[Message]:
        data = dumps(delta_dict(delta, self.node, False))
        out = [Message(self.string_topic(delta.string, "data"), data, self.qos, False, True)]
        if self.state:
            out.append(self._state(string))
        return out

    def event(self, event: Mapping[str, Any], active: Mapping[str, int]) -> list[Message]:
        return [self._event(event, active, False)]

    def _event(self, event: Mapping[str, Any], active: Mapping[str, int], historical: bool):
        body = dict(event) | {"node": self.node, "historical": historical, "active": dict(active)}
        return Message(self.events_topic, dumps(body), 1, False, True)

    def replay(self, kind: str, body: Any) -> list[Message]:
        if kind == "e":
            return [self._event(body["event"], body["active"], True)]
        delta = Delta.from_json(body, 0)
        data = dumps(delta_dict(delta, self.node, True))
        return [Message(self.string_topic(delta.string, "data"), data, self.qos, False, True)]

    def replay_done(self) -> list[Message]:
        return []

    def closing(self) -> list[Message]:
        return [self._status(False)] if self._connected else []

    # -- Home Assistant ---------------------------------------------------------------
    def discovery(self, string: StringSnapshot) -> list[Message]:
        """Retained discovery configs: one sensor per string-level quantity."""
        device = {
            "identifiers": [f"btms_{self.node}_{string.name}"],
            "name": f"{string.name} ({self.node})",
            "manufacturer": "BTMS",
            "model": "BM-SM string",
            "via_device": f"btms_{self.node}",
        }
        availability = [
            {
                "topic": self.status_topic,
                "value_template": "{{ 'online' if value_json.online else 'offline' }}",
            }
        ]
        out = []
        for key, (device_class, unit) in [*HA_SENSORS.items(), ("quality", (None, None))]:
            object_id = f"{string.name}_{key}"
            config: dict[str, Any] = {
                "name": key.replace("_", " "),
                "unique_id": f"btms_{self.node}_{object_id}",
                "object_id": f"btms_{self.node}_{object_id}",
                "state_topic": self.string_topic(string.name, "state"),
                "availability": availability,
                "device": device,
            }
            if key == "quality":
                config["value_template"] = "{{ value_json.quality }}"
            else:
                config["value_template"] = f"{{{{ value_json.reading.{key} }}}}"
                config["unit_of_measurement"] = unit
                config["state_class"] = "measurement"
                if device_class:
                    config["device_class"] = device_class
            topic = f"{self.ha_prefix}/sensor/{self.node}/{object_id}/config"
            out.append(Message(topic, dumps(config), 1, True))
        return out
