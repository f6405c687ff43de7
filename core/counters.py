"""Communication counters per bus and per string, as an integrator reads them
when a string goes stale: how many requests, which errors, when it last worked."""

from __future__ import annotations

from dataclasses import dataclass, field

from .profiles import ErrorKind


@dataclass(slots=True)
class CommCounters:
    requests: int = 0
    responses: int = 0
    errors: dict[ErrorKind, int] = field(default_factory=lambda: dict.fromkeys(ErrorKind, 0))
    polls: int = 0
    polls_failed: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_poll_s: float | None = None
    port_reopens: int = 0

    def record_error(self, kind: ErrorKind, detail: str, at: float) -> None:
        self.errors[kind] += 1
        self.last_error = f"{kind.value}: {detail}" if detail else kind.value
        self.last_error_at = at

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": {k.value: v for k, v in self.errors.items()},
            "polls": self.polls,
            "polls_failed": self.polls_failed,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_poll_s": self.last_poll_s,
            "port_reopens": self.port_reopens,
        }
