"""``[plugins.snmp]``: agent binding, security, notification receivers.

Every secret (community, auth/priv keys) is a SecretStr: it prints as
``**********`` in logs, reprs and ``check-config`` output, and the config
loader masks any key named like community/key in its error messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from btms_gateway.core.api import (
    LOOPBACK,
    AllowList,
    ClientAllowlist,
    PluginSection,
    Problem,
    StrictModel,
)
from pydantic import Field, SecretStr, field_validator, model_validator

from .tables import DEFAULT_BASE, parse_oid

if TYPE_CHECKING:
    from btms_gateway.core.api import GatewayConfig

AuthProtocol = Literal["SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PrivProtocol = Literal["AES", "AES-128", "AES-192", "AES-256"]
Name = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
#: SNMPv2-TC DisplayString is SIZE (0..255) octets: sysName, sysContact,
#: sysLocation and btmsGwName. pysnmp refuses a longer value when the agent
#: starts, so the file is checked instead.
DISPLAY_STRING_OCTETS = 255


def too_long_octets(value: str) -> int | None:
    """The length of ``value`` in octets when it does not fit a DisplayString."""
    octets = len(value.encode())
    return octets if octets > DISPLAY_STRING_OCTETS else None


class UserSettings(StrictModel):
    """An SNMPv3 USM user (authPriv only: unauthenticated v3 is refused)."""

    name: Name
    auth_protocol: AuthProtocol = "SHA-256"
    auth_key: SecretStr
    priv_protocol: PrivProtocol = "AES"
    priv_key: SecretStr

    @field_validator("auth_key", "priv_key")
    @classmethod
    def _pass_phrase(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 8:
            raise ValueError("a pass phrase of at least 8 characters (RFC 3414)")
        return v


class ReceiverSettings(StrictModel):
    """A notification receiver (a NOC's trap receiver)."""

    name: Name
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 162
    version: Literal["v2c", "v3"] = "v2c"
    kind: Literal["trap", "inform"] = "trap"
    community: SecretStr | None = None  # v2c; defaults to the agent's community
    user: str | None = None  # v3: the name of an entry in `users`
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 1000


class SnmpSettings(PluginSection):
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 1161  # production: 161; 0 = any free port
    community: SecretStr | None = SecretStr("public")
    v2c: bool = True  # false: serve SNMPv3 only (the community may still be used by receivers)
    users: list[UserSettings] = []
    # Safe defaults against reflection and amplification (docs/snmp.md, "Limits"):
    # sources answered (empty = loopback only; "0.0.0.0/0" and "::/0" = any),
    allowed_managers: AllowList = []
    enterprise_base: str = DEFAULT_BASE
    engine_id: str | None = None  # hex; default derived from the gateway name
    # varbinds one GETBULK computes: bounds max-repetitions (M <= this / R),
    max_bulk_varbinds: Annotated[int, Field(ge=1, le=10_000)] = 100
    # UDP payload of any response; a GETBULK gets as many repetitions as fit,
    # a GET/GETNEXT that does not fit gets tooBig (pysnmp needs 612 at least)
    max_response_bytes: Annotated[int, Field(ge=1024, le=65507)] = 1472
    # requests a second per source (token bucket; 0 = no limit) and the burst
    rate_limit_per_s: Annotated[float, Field(ge=0, le=100_000)] = 200.0
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    sys_contact: str = ""
    sys_location: str = ""
    sys_name: str | None = None  # default: the gateway's name
    receivers: list[ReceiverSettings] = []
    cold_start: bool = True
    # true: v2c reads of our subtree answered straight from the datagram
    # (direct.py) and GETBULK in one pass with the varbinds encoded as one
    # block (responders.py); false: pysnmp's message path and command
    # responder loop for every request, the reference they are tested against
    # (docs/snmp.md, "Fast path"): slower, for ruling them out
    fast_path: bool = True

    @field_validator("enterprise_base")
    @classmethod
    def _base(cls, v: str) -> str:
        parse_oid(v)
        return v

    @field_validator("sys_contact", "sys_location", "sys_name")
    @classmethod
    def _display_string(cls, v: str | None) -> str | None:
        if v is not None and (octets := too_long_octets(v)):
            raise ValueError(
                f"at most {DISPLAY_STRING_OCTETS} octets (an SNMP DisplayString), found {octets}"
            )
        return v

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, v: str | None) -> str | None:
        if v is not None:
            raw = bytes.fromhex(v.removeprefix("0x"))
            if not 5 <= len(raw) <= 32:
                raise ValueError(f"expected 5..32 octets of hex, found {len(raw)} octets")
        return v

    @model_validator(mode="after")
    def _receivers(self) -> SnmpSettings:
        users = {u.name for u in self.users}
        for r in self.receivers:
            if r.version == "v3" and r.user not in users:
                raise ValueError(
                    f"a v3 receiver's `user` naming one of the users {sorted(users)} "
                    f"(receiver {r.name!r}), found {r.user!r}"
                )
            if r.version == "v2c" and r.community is None and self.community is None:
                raise ValueError(f"a community for v2c receiver {r.name!r}, found none")
        return self

    def cross_check(self, gateway: GatewayConfig) -> list[Problem]:
        """The gateway's name is served as btmsGwName, and as sysName unless
        ``sys_name`` is set: both DisplayStrings."""
        octets = too_long_octets(gateway.gateway.name)
        if octets is None:
            return []
        return [
            Problem(
                "gateway.name",
                f"a name of at most {DISPLAY_STRING_OCTETS} octets while SNMP is on (it is "
                f"served as btmsGwName and sysName, DisplayStrings), found {octets} octets",
            )
        ]

    def user(self, name: str) -> UserSettings:
        return next(u for u in self.users if u.name == name)

    @property
    def managers(self) -> ClientAllowlist:
        """The sources the agent answers: ``allowed_managers``, or loopback alone."""
        return ClientAllowlist(self.allowed_managers or list(LOOPBACK))
