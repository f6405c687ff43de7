"""``[plugins.mqtt]``: broker, security, payload modes, deadbands, buffer.

Secrets (the password, a client key's pass phrase) are SecretStr: they print
as ``**********`` in logs, reprs and ``check-config``, and the config loader
never echoes a key named like password/key in its errors. Turning off
certificate checks takes an explicit ``insecure = true``; a password goes
over plain TCP only to a loopback broker unless
``allow_plaintext_password = true`` says it may.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from btms_gateway.core.api import PluginSection, StrictModel
from pydantic import Field, JsonValue, SecretStr, ValidationInfo, field_validator, model_validator

#: an MQTT topic level of ours: no wildcard, no separator, nothing a broker mangles
TopicLevel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Mode = Literal["sparkplug", "json"]
#: marks a key naming a file the gateway reads to run: `btms-gateway backup`
#: archives it (docs/plugin_hooks.md, register_config_sections)
SITE_FILE: dict[str, JsonValue] = {"backup": "file"}


def default_node_id(gateway_name: str) -> str:
    """A topic-safe id from the gateway's name ("Battery room 1" -> "Battery-room-1")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", gateway_name).strip("-") or "btms-gateway"


class TlsSettings(StrictModel):
    """``[plugins.mqtt.tls]``: present means TLS (the broker's port is then usually 8883)."""

    #: CA bundle that signed the broker's certificate; None: the system's CAs
    ca_file: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    #: client certificate and key, for brokers that authenticate clients by certificate
    cert_file: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    key_file: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    key_password: SecretStr | None = None
    #: true skips certificate and host name checks: for a lab, never a site
    insecure: bool = False

    @model_validator(mode="after")
    def _files(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{key}: file {str(path)!r} does not exist")
        return self


class SparkplugSettings(StrictModel):
    """``[plugins.mqtt.sparkplug]``: the edge node's identity and its primary host."""

    group_id: TopicLevel = "btms"
    #: the edge node id (default: the plugin's ``node_id``)
    edge_node_id: TopicLevel | None = None
    #: publish only while this host application's STATE says online (None: always)
    primary_host_id: TopicLevel | None = None
    #: the device that carries alarm events and active alarm counts
    alarms_device: TopicLevel = "Alarms"


class JsonSettings(StrictModel):
    """``[plugins.mqtt.json]``: the plain JSON topic tree."""

    topic_prefix: Annotated[
        str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    ] = "btms"
    #: each string's full state (cells included) as a retained message
    state: bool = True
    #: Home Assistant MQTT discovery for the string-level sensors (small sites)
    homeassistant: bool = False
    homeassistant_prefix: TopicLevel = "homeassistant"


class Deadbands(StrictModel):
    """``[plugins.mqtt.deadband]``: how far a value must move from the one last
    reported to be reported again (0: any change)."""

    voltage_v: Annotated[float, Field(ge=0)] = 0.05
    current_a: Annotated[float, Field(ge=0)] = 0.1
    soc_pct: Annotated[float, Field(ge=0)] = 0.5
    soh_pct: Annotated[float, Field(ge=0)] = 0.5
    balance_pct: Annotated[float, Field(ge=0)] = 0.1
    ambient_temperature_c: Annotated[float, Field(ge=0)] = 0.2
    ambient_humidity_pct: Annotated[float, Field(ge=0)] = 1.0
    cell_voltage_v: Annotated[float, Field(ge=0)] = 0.002
    cell_resistance_mohm: Annotated[float, Field(ge=0)] = 0.01
    cell_temperature_c: Annotated[float, Field(ge=0)] = 0.2
    cell_soc_pct: Annotated[float, Field(ge=0)] = 0.5
    cell_soh_pct: Annotated[float, Field(ge=0)] = 0.5


class BufferSettings(StrictModel):
    """``[plugins.mqtt.buffer]``: store-and-forward while the broker (or the
    primary host) is away."""

    #: disk the queued records may take; past it the oldest readings are dropped
    max_mb: Annotated[float, Field(gt=0, le=100_000)] = 256.0
    #: share of the session thread's time a replay may take (live data keeps the rest)
    replay_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: records replayed per step (a step runs between live messages)
    replay_batch: Annotated[int, Field(ge=1, le=10_000)] = 50


class MqttSettings(PluginSection):
    """Defaults reach a broker on this machine; the demo runs the plugin only
    when a broker answers there (or one is configured)."""

    mode: list[Mode] = Field(default_factory=lambda: list[Mode](["sparkplug"]), min_length=1)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: the MQTT client id (default: "btms-" + node_id); unique per broker
    client_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    #: the gateway's id in topics (default: the gateway's name, made topic-safe)
    node_id: TopicLevel | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    username: str | None = None
    password: SecretStr | None = None
    allow_plaintext_password: bool = False
    tls: TlsSettings | None = None
    #: seconds before the first reconnect; doubles per failure up to reconnect_max_s
    reconnect_min_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    #: QoS of data messages (Sparkplug's rule is 0; 1 makes the buffer lossless, see docs)
    qos: Literal[0, 1] = 1
    #: QoS 1 messages on the wire awaiting the broker's acknowledgement
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 100
    #: false: every reading reports every value (no deadbands)
    report_by_exception: bool = True
    deadband: Deadbands = Deadbands()
    sparkplug: SparkplugSettings = SparkplugSettings()
    json_: JsonSettings = Field(default=JsonSettings(), alias="json")
    buffer: BufferSettings = BufferSettings()

    model_config = {**PluginSection.model_config, "populate_by_name": True}

    @field_validator("mode")
    @classmethod
    def _modes(cls, v: list[Mode]) -> list[Mode]:
        if len(set(v)) != len(v):
            raise ValueError(f"each mode once, found {v}")
        return v

    @model_validator(mode="after")
    def _checks(self, info: ValidationInfo) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s at most reconnect_max_s")
        if self.password is not None and self.username is None:
            raise ValueError("a username with the password")
        if (
            self.password is not None
            and self.tls is None
            and not self.allow_plaintext_password
            and not _is_loopback(self.host)
        ):
            raise ValueError(
                "a [plugins.mqtt.tls] table when a password goes to a broker on another "
                "machine (or allow_plaintext_password = true), found none"
            )
        gateway = (info.context or {}).get("gateway")
        if gateway is not None and "sparkplug" in self.mode:
            names = {s.name for s in gateway.strings}
            if self.sparkplug.alarms_device in names:
                raise ValueError(
                    f"sparkplug.alarms_device: a name no string has, found "
                    f"{self.sparkplug.alarms_device!r}"
                )
        return self

    @classmethod
    def demo_unavailable(cls) -> str | None:
        """``btms-gateway demo`` runs the plugin only when a broker answers on
        the default address (the plugin is a client: there is nothing to serve)."""
        host, port = cls.model_fields["host"].default, cls.model_fields["port"].default
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return None
        except OSError:
            return (
                f"no MQTT broker at {host}:{port} (start one, e.g. `mosquitto -p {port}`, "
                "and run the demo again; see docs/mqtt.md)"
            )

    @classmethod
    def demo_section(cls) -> dict[str, object]:
        """Both modes in the demo, so ``mosquitto_sub -v -t 'btms/#'`` shows readable data."""
        return {"mode": ["sparkplug", "json"]}

    def resolved_node_id(self, gateway_name: str) -> str:
        return self.node_id or default_node_id(gateway_name)

    def resolved_client_id(self, gateway_name: str) -> str:
        return self.client_id or f"btms-{self.resolved_node_id(gateway_name)}"

    def deadbands(self) -> dict[str, float]:
        return self.deadband.model_dump()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
