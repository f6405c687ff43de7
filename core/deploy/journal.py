"""Log lines that read well in the journal.

Under systemd, stderr is a stream to journald, which stamps every line itself
and reads a leading ``<N>`` (syslog priority) as the line's level; the same
timestamp twice and every line filed as "info" would make ``journalctl -p
warning`` useless. systemd announces the stream in ``JOURNAL_STREAM``
(``device:inode`` of the stream), so the format is chosen by checking that
stderr really is that stream: a shell started from the service, or a
redirect to a file, keeps the plain format.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

#: syslog priorities (RFC 5424): 2 crit, 3 err, 4 warning, 6 info, 7 debug
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def syslog_priority(levelno: int) -> int:
    """The priority of the nearest standard level at or below ``levelno``."""
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback too) starts with the record's
    ``<N>``: journald reads the prefix per line."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def stream_is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd connected (JOURNAL_STREAM)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def stderr_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler for stderr, formatted for the journal when stderr is the journal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = stream_is_journal(stream)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    return handler
