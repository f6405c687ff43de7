"""``[plugins.bacnet]``: the BACnet/IP device's identity, binding and object scope."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Literal

from btms_gateway.core.api import AllowList, PluginSection, Problem
from pydantic import Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    from btms_gateway.core.api import GatewayConfig

#: BACnet device instances are 22 bits; 4194303 is the "any device" wildcard.
MAX_INSTANCE = 4_194_302


class BacnetSettings(PluginSection):
    """The BACnet/IP device.

    ``address`` is bound explicitly: bacpypes3's interface auto-detection
    opens a socket towards the internet to learn the local address, which
    hangs or fails on an isolated plant network. Write ``IP/PREFIX`` (the
    prefix gives the broadcast address for Who-Is) and optionally ``:PORT``,
    e.g. ``"192.168.10.5/24"`` or ``"127.0.0.1/8:47809"``.
    """

    address: str = "127.0.0.1/8:47808"
    device_instance: Annotated[int, Field(ge=0, le=MAX_INSTANCE)] = 47808
    device_name: Annotated[str, Field(min_length=1, max_length=64)] = "btms-gateway"
    vendor_id: Annotated[int, Field(ge=0, le=65535)] = 999
    vendor_name: str = "btms-gateway project"
    location: str = ""
    description: str = "BTMS battery monitoring gateway"
    #: "all": objects for every cell of every string; a list of string names:
    #: cell objects for those strings only; "summary": per-string min/max/mean
    #: of each cell quantity instead of per-cell objects; "none": no cell objects.
    cells: Literal["all", "summary", "none"] | list[str] = "all"
    #: cell objects created per string (the BM-SM addresses up to 120 sensors);
    #: cells past a string's current cell count report reliability no-sensor.
    cells_per_string: Annotated[int, Field(ge=1, le=120)] = 120
    #: Structured View objects grouping plant -> UPS -> string -> cell.
    structured_views: bool = True
    #: max APDU this device accepts/sends; 1476 is the B/IP maximum.
    max_apdu: Literal[50, 128, 206, 480, 1024, 1476] = 1476
    #: segments accepted for a segmented request; a longer one is aborted
    #: (buffer-overflow) at the first segment past it
    max_segments: Annotated[int, Field(ge=2, le=255)] = 64
    #: segments of one ReadPropertyMultiple answer at most (the client's own
    #: limit if lower; its "more than 64" is taken at this): a longer answer is
    #: aborted (apdu-too-long) as soon as it outgrows it, which bounds the work
    #: one request can cost. 128 (189 KB) holds a full plant's object list.
    max_response_segments: Annotated[int, Field(ge=1, le=255)] = 128
    #: client addresses or CIDR networks whose datagrams are served; empty = all
    allow: AllowList = []
    #: COV subscriptions (object and property) in all and per client host
    cov_max_subscriptions: Annotated[int, Field(ge=1, le=1_000_000)] = 4000
    cov_max_subscriptions_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    #: longest lifetime granted; a subscription asking for none (indefinite) or a
    #: longer one gets this. None: indefinite subscriptions are kept indefinitely
    cov_max_lifetime_s: Annotated[int, Field(ge=1)] | None = 86400
    #: the window size this device proposes when it segments an answer. Keep
    #: 1: with 2 or more (bacpypes3's default is 2), rusty-bacnet never
    #: completes a segmented answer (RPM of ALL, the object list) and the
    #: bacpypes3 0.0.110 server trips an assertion in fill_window.
    window_size: Annotated[int, Field(ge=1, le=127)] = 1

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        host, _, port = v.partition(":")
        ip, _, prefix = host.partition("/")
        try:
            ipaddress.IPv4Address(ip)
            if prefix:
                ipaddress.IPv4Network(f"0.0.0.0/{prefix}")
            if port and not 0 < int(port) < 65536:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"an IPv4 address to bind, IP[/PREFIX][:PORT] such as "
                f"'192.168.10.5/24' or '127.0.0.1/8:47809', found {v!r}"
            ) from None
        if ip == "0.0.0.0":
            raise ValueError("an explicit interface address, not 0.0.0.0 (found '0.0.0.0')")
        return v

    @field_validator("cells")
    @classmethod
    def _cells(cls, v: object, info: ValidationInfo) -> object:
        if isinstance(v, list):
            if len(set(v)) != len(v):
                raise ValueError(f"string names without repeats, found {v!r}")
            # when the loader passes the core config as validation context,
            # check-config catches unknown names too (else start-up does)
            gateway = (info.context or {}).get("gateway")
            names = {s.name for s in getattr(gateway, "strings", [])}
            unknown = sorted(set(v) - names) if gateway is not None else []
            if unknown:
                raise ValueError(f"configured string names {sorted(names)}, found {unknown}")
        return v

    def cross_check(self, gateway: GatewayConfig) -> list[Problem]:
        """Object names are built from UPS and string names ("X.voltage"): a
        UPS and a string of one name would make two objects of one name, which
        BACnet forbids (the object table refuses to build)."""
        ups = {u.name: i for i, u in enumerate(gateway.ups)}
        return [
            Problem(
                f"strings[{i}].name",
                f"a name no UPS has while BACnet is on (object names such as "
                f"'{s.name}.voltage' are built from both), found {s.name!r}, "
                f"the name of ups[{ups[s.name]}] too",
            )
            for i, s in enumerate(gateway.strings)
            if s.name in ups
        ]
