"""``[plugins.web]``: validated at start, so a typo or a plain password never
half-starts the server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from btms_gateway.core.api import AllowList, PluginSection
from pydantic import Field, JsonValue, field_validator, model_validator

from .auth import is_password_hash, is_token_hash

Port = Annotated[int, Field(ge=0, le=65535)]  # 0 = any free port (tests)
#: marks a key naming a file the gateway reads to run: `btms-gateway backup`
#: archives it (docs/plugin_hooks.md, register_config_sections)
SITE_FILE: dict[str, JsonValue] = {"backup": "file"}


class WebSettings(PluginSection):
    """Defaults serve the demo: loopback, port 8080, read-only (no users)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    #: client addresses or CIDR networks allowed to connect; empty = everyone
    allow: AllowList = []
    #: host names clients may use (Host header) besides the listen address, the
    #: address a connection arrives on and localhost; "*" = any (DNS rebinding)
    allowed_hosts: list[str] = []
    #: connections at once, in all and from one address (more are closed at accept)
    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 128
    max_connections_per_client: Annotated[int, Field(ge=1, le=10_000)] = 16
    #: seconds from accept (TLS handshake included) to a complete request head
    header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    #: seconds an idle connection is kept after an answer, for its next request
    keepalive_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    #: user name -> password hash made by ``btms-gateway web hash-password``
    users: dict[str, str] = {}
    #: hashes of API bearer tokens, made by ``btms-gateway web new-token``
    tokens: dict[str, str] = {}
    session_ttl_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 8 * 3600.0
    #: failed logins from one address within a minute before it is refused (429)
    max_failed_logins: Annotated[int, Field(ge=1, le=1000)] = 5
    #: export one series per cell and quantity (32 x 120 x 6 series at full scale)
    cell_metrics: bool = False
    #: seconds between two samples of a string's in-memory history
    history_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    history_points: Annotated[int, Field(ge=1, le=100_000)] = 1440
    #: fewest seconds between two live updates to one browser (coalesces bursts)
    live_interval_s: Annotated[float, Field(ge=0.05, le=60)] = 0.5
    #: browsers on the live stream at once; more get 503 (a bounded resource)
    max_live_clients: Annotated[int, Field(ge=1, le=1000)] = 32
    #: live streams from one address (a browser holds one per open tab)
    max_live_clients_per_client: Annotated[int, Field(ge=1, le=1000)] = 8
    #: "any": ready once any string has GOOD data; "all": once every string has
    ready_when: Literal["any", "all"] = "any"
    #: one INFO line per HTTP request (logger ``aiohttp.access``). Off by default:
    #: a dashboard, a metrics scraper or a SCADA polling the API writes a line
    #: per request into the log that is there for what the gateway itself does
    access_log: bool = False
    tls_certfile: Path | None = Field(default=None, json_schema_extra=SITE_FILE)
    tls_keyfile: Path | None = Field(default=None, json_schema_extra=SITE_FILE)

    @field_validator("users")
    @classmethod
    def _hashed(cls, value: dict[str, str]) -> dict[str, str]:
        for user, stored in value.items():
            if not user or ":" in user:
                raise ValueError(f"a user name without ':', found {user!r}")
            if not is_password_hash(stored):
                # never echo the value: it may be a plain password pasted by mistake
                raise ValueError(
                    f"users.{user}: a password hash made by `btms-gateway web hash-password` "
                    "(scrypt$...), found something else (plain passwords are not accepted)"
                )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or any(c in name for c in "/ @") or name.count(":") == 1:
                raise ValueError(
                    f"host names or addresses without port or scheme (e.g. 'gw.plant.local'), "
                    f"or '*', found {name!r}"
                )
        return value

    @field_validator("tokens")
    @classmethod
    def _token_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if not is_token_hash(stored):
                raise ValueError(
                    f"tokens.{name}: a token hash made by `btms-gateway web new-token` "
                    "(sha256$...), found something else"
                )
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        for key in ("tls_certfile", "tls_keyfile"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{key}: file {str(path)!r} does not exist")
        return self

    @property
    def actions_possible(self) -> bool:
        return bool(self.users or self.tokens)
