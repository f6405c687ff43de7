"""Malformed BACnet traffic is counted and summarized, never logged per datagram.

bacpypes3 logs every undecodable datagram at ERROR with a full traceback, and
some decode failures end in fire-and-forget tasks whose exceptions asyncio
reports one by one ("Task exception was never retrieved"). Anyone on the
BACnet network could fill the gateway's disk that way. This module turns
both into a counter and one WARNING per interval, the same rule the Modbus
and SNMP plugins follow: a bad frame is counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from typing import Any

log = logging.getLogger("btms_gateway.plugins.bacnet")

SUMMARY_EVERY_S = 60.0
MAX_KINDS = 32  # distinct kinds counted by name; the rest as "other"
_ERROR_NAME = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\b")


class DecodeFailures(logging.Filter):
    def __init__(self, every_s: float = SUMMARY_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self.dropped = 0
        #: dropped messages by kind (the exception class bacpypes3 reported)
        self.kinds: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._last_summary = float("-inf")
        self._loggers: list[logging.Logger] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None

    # --- counting -------------------------------------------------------------
    def count(self, what: str, kind: str | None = None) -> None:
        if kind is None:
            found = _ERROR_NAME.search(what)
            kind = found.group(1) if found else "other"
        if kind not in self.kinds and len(self.kinds) >= MAX_KINDS:
            kind = "other"
        self.dropped += 1
        self.kinds[kind] += 1
        self._pending[kind] += 1
        now = time.monotonic()
        if now - self._last_summary >= self.every_s:
            log.warning(
                "dropped %d malformed BACnet message(s) since the last report (%s); last: %s",
                self._pending.total(),
                ", ".join(f"{k} {n}" for k, n in self._pending.most_common(5)),
                what[:200],
            )
            self._pending.clear()
            self._last_summary = now

    def filter(self, record: logging.LogRecord) -> bool:
        """bacpypes3's ERROR records (decode failures) become a count."""
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[0] if record.exc_info else None
        self.count(record.getMessage(), exc.__name__ if exc is not None else None)
        return False

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is not None and _raised_in_bacpypes3(exc):
            self.count(f"{type(exc).__name__}: {exc}", type(exc).__name__)
            return
        if self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # --- lifecycle ------------------------------------------------------------
    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to every bacpypes3 logger (bacpypes3 makes one per class at
        import time) and to the loop's exception handler."""
        names = [n for n in logging.root.manager.loggerDict if n.startswith("bacpypes3")]
        self._loggers = [logging.getLogger(n) for n in names]
        for logger in self._loggers:
            logger.addFilter(self)
        self._loop = loop
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)

    def uninstall(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self)
        self._loggers = []
        if self._loop is not None and not self._loop.is_closed():
            self._loop.set_exception_handler(self._previous_handler)
        self._loop = None


def _raised_in_bacpypes3(exc: BaseException) -> bool:
    """Whether any frame of the traceback is bacpypes3's (walked directly:
    ``traceback.extract_tb`` also loads every frame's source line)."""
    tb = exc.__traceback__
    while tb is not None:
        if "bacpypes3" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False
