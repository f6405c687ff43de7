"""``[plugins.modbus_tcp]``: validated at start, so a typo never half-starts the server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from btms_gateway.core.api import AllowList, ClientAllowlist, PluginSection, StrictModel
from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

Port = Annotated[int, Field(ge=0, le=65535)]  # 0 = any free port (tests)
#: marks a key naming a file the gateway reads to run: `btms-gateway backup`
#: archives it (docs/plugin_hooks.md, register_config_sections)
SITE_FILE: dict[str, JsonValue] = {"backup": "file"}


class TlsSettings(StrictModel):
    """Modbus/TCP Security (TLS, port 802): mutual authentication by certificates."""

    enabled: bool = False
    host: str | None = None  # None: the same address as the plain listener
    port: Port = 802
    certfile: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    keyfile: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    cafile: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    require_client_cert: bool = True

    @field_validator("certfile", "keyfile", "cafile")
    @classmethod
    def _exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("enabled") and not value.is_file():
            raise ValueError("an existing file")
        return value

    @model_validator(mode="after")
    def _required(self) -> TlsSettings:
        if self.enabled:
            needed = ["certfile", "keyfile"] + (["cafile"] if self.require_client_cert else [])
            missing = [key for key in needed if getattr(self, key) is None]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} when enabled = true"
                    + (
                        " (cafile: the CA that signs client certificates)"
                        if "cafile" in missing
                        else ""
                    )
                )
        return self


class ModbusTcpSettings(PluginSection):
    """Defaults serve the demo (loopback, port 5020); production uses 0.0.0.0:502."""

    host: str = "127.0.0.1"
    port: Port = 5020
    word_order: Literal["high_first", "low_first"] = "high_first"
    stale_behaviour: Literal["exception", "bmgw"] = "exception"
    allow: AllowList = []  # client addresses or CIDR networks; empty = everyone
    # Connection slots, shared by the plain and TLS listeners. A new connection
    # always gets in: when its address holds max_connections_per_address, or
    # all max_connections are taken, the least recently active one goes (see
    # docs/modbus-scada-guide.md, "Security and hardening").
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    max_connections_per_address: Annotated[int, Field(ge=1, le=1000)] = 8
    # a request must be complete this long after its first byte (TLS: the
    # handshake after the connection), and a client must read its answers
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    idle_timeout_s: Annotated[float, Field(gt=0, le=86400)] | None = 120.0
    tls: TlsSettings = TlsSettings()
    # true: every request is answered by the plugin's own code from the register
    # image (answer.py); false: by pymodbus's request handling and datastore, the
    # reference it is tested against byte for byte (docs/modbus-scada-guide.md,
    # "Fast path"): slower, for ruling the fast path out when a client misbehaves
    fast_path: bool = True

    @field_validator("max_connections_per_address")
    @classmethod
    def _per_address(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_connections")
        if total is not None and value > total:
            raise ValueError(f"at most max_connections ({total}), found {value}")
        return value

    @property
    def high_word_first(self) -> bool:
        return self.word_order == "high_first"

    @property
    def allowlist(self) -> ClientAllowlist:
        return ClientAllowlist(self.allow)
