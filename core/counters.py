"""Communication counters per bus and per string, as an integrator reads them
when a string goes stale: how many requests, which errors, when it last worked.

``errors`` counts failed transactions (a retry that then succeeds included);
``polls_failed`` counts polls that ended without a reading, whatever the
cause (a transaction that failed for good, a port or converter that could not
be opened, a value the device cannot measure), and ``polls_failed_by`` the
same by cause, so an alert on failed polls sees an unplugged adapter too."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ErrorKind(enum.StrEnum):
    """Why a transaction failed: each has its own counter per bus and string."""

    TIMEOUT = "timeout"  # no (complete) reply within the response timeout
    CRC = "crc"  # a reply arrived with a bad CRC
    EXCEPTION = "exception"  # the slave answered with a Modbus exception
    SHORT_FRAME = "short_frame"  # a reply too short or of the wrong length/shape
    PORT = "port"  # the serial port / TCP converter is unavailable
    DECODE = "decode"  # registers read fine but hold impossible values
    LATE = "late_reply"  # a whole, valid reply that came after its request had timed out


@dataclass(slots=True)
class CommCounters:
    requests: int = 0
    responses: int = 0
    errors: dict[ErrorKind, int] = field(default_factory=lambda: dict.fromkeys(ErrorKind, 0))
    polls: int = 0
    polls_failed: int = 0
    polls_failed_by: dict[ErrorKind, int] = field(
        default_factory=lambda: dict.fromkeys(ErrorKind, 0)
    )
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_poll_s: float | None = None
    port_reopens: int = 0

    def record_error(self, kind: ErrorKind, detail: str, at: float) -> None:
        self.errors[kind] += 1
        self.last_error = f"{kind.value}: {detail}" if detail else kind.value
        self.last_error_at = at

    def record_failed_poll(self, kind: ErrorKind) -> None:
        """A poll (already counted in ``polls``) failed because of ``kind``."""
        self.polls_failed += 1
        self.polls_failed_by[kind] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": {k.value: v for k, v in self.errors.items()},
            "polls": self.polls,
            "polls_failed": self.polls_failed,
            "polls_failed_by_cause": {k.value: v for k, v in self.polls_failed_by.items()},
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_poll_s": self.last_poll_s,
            "port_reopens": self.port_reopens,
        }
