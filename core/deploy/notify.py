"""Telling systemd how the gateway is doing: readiness, watchdog, status, stop.

The service unit is ``Type=notify`` with ``WatchdogSec=``: systemd waits for
``READY=1`` (sent once every plugin has started and polling runs, i.e. once
``gateway.ready`` is set) before it counts the service as started, and
restarts the gateway when the ``WATCHDOG=1`` pings stop. The pings come from
a task on the gateway's event loop, never from a thread of their own: a
thread would go on pinging while the loop hung (a plugin blocking it, a
deadlock), which is exactly the failure the watchdog is there to catch. A
ping is also withheld while a bus thread has died, since that bus is no
longer polled at all. ``STATUS=`` lines (what ``systemctl status`` shows)
summarise the strings' quality and the active alarms.

The messages go through cysystemd, which wraps libsystemd's own
``sd_notify()`` (manylinux wheels with libsystemd inside, so nothing to
compile; maintained). It is optional (``pip install 'btms-gateway[systemd]'``)
and only imported when systemd asked for notifications (``NOTIFY_SOCKET`` is
set): the gateway runs the same without systemd, and on other systems.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("btms_gateway.service")

#: sd_watchdog_enabled(3): ping at half the interval systemd expects
WATCHDOG_FRACTION = 0.5
#: how often the STATUS= line is refreshed (sent only when it changed)
STATUS_PERIOD_S = 10.0

Send = Callable[[str, "str | None"], None]


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """The watchdog interval systemd set for this process, as sd_watchdog_enabled(3)
    reads it (``WATCHDOG_USEC``, and ``WATCHDOG_PID`` if set must be this process)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid is not None and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


def cysystemd_sender() -> Send:
    from cysystemd.daemon import Notification, notify

    def send(field: str, value: str | None = None) -> None:
        if value is None:  # its default; cysystemd's annotation leaves None out
            notify(Notification[field], return_exceptions=False)
        else:
            notify(Notification[field], value, return_exceptions=False)

    return send


def health_problem(gateway: Any) -> str | None:
    """Why the gateway is not healthy enough to ping the watchdog (None: it is).
    The caller runs on the event loop, so the loop itself is alive."""
    dead = [
        w.bus.name
        for w in gateway.engine.workers
        if w.thread.ident is not None and not w.thread.is_alive()
    ]
    return f"bus thread(s) ended: {', '.join(dead)}" if dead else None


def status_line(gateway: Any) -> str:
    """One line for ``systemctl status``: quality of the strings, active alarms."""
    strings = list(gateway.store.snapshot.strings.values())
    counts = Counter(s.quality.name for s in strings)
    quality = ", ".join(f"{n} {q}" for q, n in sorted(counts.items())) or "no strings"
    try:
        alarms = len(gateway.alarms.active())
    except Exception:  # the status line must never take the watchdog down
        alarms = 0
    return f"{len(strings)} strings ({quality}); {alarms} active alarm(s)"


class ServiceNotifier:
    """sd_notify for one gateway run; every method is a no-op outside systemd."""

    def __init__(self, send: Send | None, watchdog_s: float | None = None) -> None:
        self._send = send
        self.watchdog_s = watchdog_s if send is not None else None
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServiceNotifier:
        environ = os.environ if environ is None else environ
        if not environ.get("NOTIFY_SOCKET"):
            return cls(None)
        try:
            send = cysystemd_sender()
        except ImportError:
            log.error(
                "systemd asked for notifications (NOTIFY_SOCKET is set) but cysystemd is "
                "not installed: pip install 'btms-gateway[systemd]'; systemd will time out "
                "this start"
            )
            return cls(None)
        return cls(send, watchdog_interval_s(environ))

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, field: str, value: str | None = None) -> None:
        if self._send is None:
            return
        try:
            self._send(field, value)
        except Exception as exc:  # systemd went away: log once, keep running
            if not self._failed:
                self._failed = True
                log.warning("sd_notify %s failed: %s", field, exc)

    def start(self, gateway: Any) -> None:
        """READY=1, then the watchdog and status task on the running loop."""
        if self._send is None:
            return
        self.notify("STATUS", status_line(gateway))
        self.notify("READY")
        self._task = asyncio.get_running_loop().create_task(
            self._watch(gateway), name="service-notify"
        )

    def stopping(self) -> None:
        self.notify("STOPPING")
        self.notify("STATUS", "stopping")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self, gateway: Any) -> None:
        period = STATUS_PERIOD_S
        if self.watchdog_s is not None:
            period = min(period, self.watchdog_s * WATCHDOG_FRACTION)
        last_status, last_problem = "", None
        since_status = STATUS_PERIOD_S
        while True:
            await asyncio.sleep(period)
            problem = health_problem(gateway)
            changed = problem != last_problem
            if changed:
                if problem is not None:
                    log.error("watchdog: not confirming health: %s", problem)
                last_problem = problem
            if self.watchdog_s is not None and problem is None:
                self.notify("WATCHDOG")
            since_status += period
            if since_status >= STATUS_PERIOD_S or changed:
                since_status = 0.0
                status = status_line(gateway) if problem is None else problem
                if status != last_status:
                    self.notify("STATUS", status)
                    last_status = status
