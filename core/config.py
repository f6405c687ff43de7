"""The gateway's configuration: one TOML file, validated whole before anything starts.

Every model forbids unknown keys, so a typo is an error rather than a silently
ignored setting. Plugin sections (``[plugins.NAME]``) are validated by the
model each plugin registers through the ``register_config_sections`` hook;
see :mod:`btms_gateway.core.config_load` for loading and error reporting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from .affinity import allowed_cpus, cpu_list
from .alarms.config import AlarmsSection
from .analytics.config import AnalyticsSection
from .config_base import PluginSection, StrictModel
from .history.config import HistorySection
from .model import MAX_STRINGS, MAX_UPS

__all__ = ["PluginSection", "StrictModel"]

BAUD_RATES = (2400, 4800, 9600, 19200, 38400, 57600, 115200)


class GatewaySection(StrictModel):
    name: str = "btms-gateway"
    poll_interval_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    stale_after_s: Annotated[float, Field(gt=0)] = 10.0
    offline_after_failures: Annotated[int, Field(ge=1, le=1000)] = 3
    data_dir: Path = Path("./var")
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=30)] = 1.5
    # "one" CPU for all the gateway's threads, "any" CPU, or a CPU number (core/affinity.py)
    cpu: Literal["one", "any"] | Annotated[int, Field(ge=0, strict=True)] = "one"

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str | int) -> str | int:
        allowed = allowed_cpus()
        if isinstance(v, int) and allowed is not None and v not in allowed:
            raise ValueError(
                f'"one", "any" or a CPU this machine lets the gateway use '
                f"({cpu_list(allowed)}), not {v}"
            )
        return v


#: how a bus is reached; a plugin registers the links of each (register_bus_transports)
BusTransport = Literal["serial", "rtu-over-tcp"]
BUS_TRANSPORTS: tuple[str, ...] = get_args(BusTransport)


class BusConfig(StrictModel):
    """One RS485 bus: a local serial port, or an RS485-to-Ethernet converter
    speaking RTU over TCP. Its strings are polled one after another."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    transport: BusTransport = "serial"
    port: str | None = None
    host: str | None = None
    tcp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    inter_frame_gap_s: Annotated[float, Field(ge=0, le=1)] | None = None
    late_reply_guard_s: Annotated[float, Field(ge=0, le=10)] | None = None
    rs485_direction: Literal["none", "rts"] = "none"
    poll_interval_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    backoff_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    wait_for_port: bool = False

    @field_validator("baudrate")
    @classmethod
    def _baud(cls, v: int) -> int:
        if v not in BAUD_RATES:
            raise ValueError(f"one of {', '.join(map(str, BAUD_RATES))}")
        return v

    @model_validator(mode="after")
    def _transport_fields(self) -> BusConfig:
        if self.transport == "serial":
            if not self.port:
                raise ValueError("a serial bus needs 'port' (e.g. /dev/ttyUSB0)")
            if self.host is not None or self.tcp_port is not None:
                raise ValueError("'host'/'tcp_port' belong to transport = \"rtu-over-tcp\"")
        else:
            if not self.host or self.tcp_port is None:
                raise ValueError("an rtu-over-tcp bus needs 'host' and 'tcp_port'")
            if self.port is not None:
                raise ValueError("'port' belongs to transport = \"serial\"")
        return self

    def char_time_s(self) -> float:
        """Seconds one character takes on the wire (start + data + parity + stop)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    def frame_gap_s(self) -> float:
        """The silent interval between frames: 3.5 characters (Modbus over serial
        line, 2.3.1.1), fixed at 1.75 ms above 19200 baud as the spec recommends."""
        spec = 0.00175 if self.baudrate > 19200 else 3.5 * self.char_time_s()
        return max(spec, self.inter_frame_gap_s or 0.0)

    def guard_s(self) -> float:
        """The silence kept before the next request after a transaction that
        ended without a whole valid reply (a timeout, a short or bad frame): a
        late reply to the failed request arrives in it and is dropped, instead
        of being taken for the next request's answer. Default: ``timeout_s``,
        so a reply up to twice the timeout late is caught; never less than the
        frame gap."""
        guard = self.timeout_s if self.late_reply_guard_s is None else self.late_reply_guard_s
        return max(guard, self.frame_gap_s())


class UpsConfig(StrictModel):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    index: Annotated[int, Field(ge=1, le=MAX_UPS)] | None = None
    description: str = ""


class StringConfig(StrictModel):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    bus: str
    slave_id: Annotated[int, Field(ge=1, le=247)]
    ups: str | None = None
    index: Annotated[int, Field(ge=1, le=MAX_STRINGS)] | None = None
    profile: str = "bmsm"
    description: str = ""
    #: a file of corrections to the profile's register map (a firmware that
    #: differs); relative to the configuration file's folder. The profile
    #: validates it (``DeviceProfile.check_string``).
    register_overrides: Path | None = None


def index_of(item: UpsConfig | StringConfig) -> int:
    """The index of a UPS or string of a loaded configuration, which
    ``GatewayConfig.with_indexes`` gave every one of them."""
    if item.index is None:
        raise ValueError(f"{item.name} has no index yet: see GatewayConfig.with_indexes")
    return item.index


class GatewayConfig(StrictModel):
    """The whole file. ``plugins`` holds raw tables until each plugin's own
    model validates them (see config_load)."""

    gateway: GatewaySection = GatewaySection()
    buses: list[BusConfig] = []
    ups: list[UpsConfig] = []
    strings: list[StringConfig] = []
    alarms: AlarmsSection = AlarmsSection()
    history: HistorySection = HistorySection()
    analytics: AnalyticsSection = AnalyticsSection()
    plugins: dict[str, dict[str, Any]] = {}

    def with_indexes(self) -> GatewayConfig:
        """Fill in UPS indexes (1..32) and string indexes (1..128) in file order
        where not given, skipping the ones taken explicitly; every protocol's
        addresses derive from them (docs/modbus-map.md, snmp.md, bacnet-objects.md)."""

        def assign(items: list[Any], top: int) -> list[Any]:
            taken = {i.index for i in items if i.index is not None}
            free = (n for n in range(1, top + 1) if n not in taken)
            return [
                i if i.index is not None else i.model_copy(update={"index": next(free)})
                for i in items
            ]

        return self.model_copy(
            update={"ups": assign(self.ups, MAX_UPS), "strings": assign(self.strings, MAX_STRINGS)}
        )

    def bus(self, name: str) -> BusConfig:
        return next(b for b in self.buses if b.name == name)
