"""What a payload mode (Sparkplug B, JSON) tells the uplink that carries it.

The uplink (uplink.py) owns the connection, acknowledgements, the buffer and
the replay; a codec only knows topics and payloads, and when its mode may
publish data (a Sparkplug edge node only between its birth and death). Each
mode has its own MQTT connection: a connection has one last will, and the
two modes need different ones (NDEATH, a retained "offline" status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from btms_gateway.core.api import StringSnapshot

from .exception import Delta, ExceptionFilter


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. ``record`` marks the message that carries a buffered
    or bufferable record (a reading's delta, an alarm event): the uplink
    keeps it until the broker acknowledged it."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    record: bool = False


@dataclass
class PlantView:
    """What the codecs read of the plant: the reported values (the exception
    filter), the newest snapshot of each string (as offered to the plugin,
    set on the gateway's loop: see session.Inbox; read it with ``get`` or a
    copy, never by iterating it), the active alarm counts, and facts about
    the gateway."""

    filter: ExceptionFilter
    latest: dict[str, StringSnapshot] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    gateway_name: str = ""
    #: the configured string names (a buffered record of another is dropped)
    configured: frozenset[str] = frozenset()
    version: str = ""
    buffer: Any = None  # the DiskBuffer, for the Sparkplug node's store-and-forward metrics


class Codec(Protocol):
    sink: str  # the buffer's name for this mode

    def will(self, fresh: bool) -> Message | None:
        """The last will of the next connection (called before each attempt;
        ``fresh`` is false when the attempt before never sent its CONNECT)."""

    def subscriptions(self) -> list[str]: ...

    def connected(self) -> list[Message]:
        """Just connected: what to publish first (births, retained status)."""

    def disconnected(self) -> None: ...

    def ready(self) -> bool:
        """Data may be published live now (else it is buffered)."""

    def received(self, topic: str, payload: bytes) -> tuple[list[Message], bool]:
        """A message on a subscription: what to publish, and whether the
        session must end (the Sparkplug primary host went offline)."""

    def reading(self, delta: Delta, string: StringSnapshot) -> list[Message]: ...

    def event(self, event: Mapping[str, Any], active: Mapping[str, int]) -> list[Message]: ...

    def replay(self, kind: str, body: Any) -> list[Message]:
        """A buffered record (decoded JSON) as historical messages."""

    def replay_done(self) -> list[Message]:
        """The buffer is empty again (Sparkplug: deaths held back for the replay)."""

    def closing(self) -> list[Message]:
        """A clean stop: the goodbye (NDEATH, status offline)."""
