"""Which CPUs the gateway's threads run on (``[gateway] cpu``).

The gateway is one Python process: its event loop, a thread per bus and the
plugins' worker threads share one interpreter lock, so at most one of them
runs Python at a time and the process never needs more than one core. Spread
over several CPUs, every hand-over of the lock and every wake-up of one
thread by another (a poll's result to the loop, a bus thread asking for the
lock) crosses between CPUs: an inter-processor interrupt, and on a virtual
machine an exit to the hypervisor for each. On one CPU the same hand-over is
a plain context switch. Measured on the 2-core VM at full scale, polling
only, three rounds side by side: 0.071-0.078 of a core spread, 0.062-0.067
on one CPU; the bus threads' voluntary context switches 594-615 -> 498-507
a second (docs/performance.md).

Linux only (``os.sched_setaffinity``); elsewhere the setting is ignored with
a log line.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

log = logging.getLogger("btms_gateway")

CpuSetting = Literal["one", "any"] | int


def allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on, or None where that cannot be known."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    return set(getaffinity(0)) if getaffinity is not None else None


def chosen_cpus(setting: CpuSetting, allowed: set[int]) -> set[int]:
    """``"one"``: the highest-numbered allowed CPU (CPU 0 usually takes more of
    the machine's interrupts); ``"any"``: all of them; a number: that CPU."""
    if setting == "any":
        return set(allowed)
    if setting == "one":
        return {max(allowed)}
    if setting not in allowed:
        raise ValueError(f"CPU {setting} is not one this process may run on ({cpu_list(allowed)})")
    return {setting}


def pin_process(setting: CpuSetting) -> set[int] | None:
    """Put every thread of this process (and so every thread it starts later,
    which inherits its creator's CPUs) on the CPUs ``setting`` names. Called
    once, before the gateway starts, by the process that runs it (``run``,
    ``demo``), never by a library user or a test harness sharing the process.
    Returns the CPUs chosen, or None where affinity is not supported."""
    allowed = allowed_cpus()
    if allowed is None or not hasattr(os, "sched_setaffinity"):
        log.info("[gateway] cpu = %r ignored: CPU affinity is not supported here", setting)
        return None
    try:
        cpus = chosen_cpus(setting, allowed)
        for tid in _thread_ids():
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:  # the thread ended meanwhile
                continue
    except (ValueError, OSError) as exc:  # the CPU set changed since the config was checked
        log.warning("[gateway] cpu = %r not applied, threads on any CPU: %s", setting, exc)
        return None
    log.info("gateway threads on CPU %s ([gateway] cpu = %r)", cpu_list(cpus), setting)
    return cpus


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # no /proc: the calling thread (threads started later inherit)


def cpu_list(cpus: set[int]) -> str:
    """CPUs as a log line or an error message shows them: ``0, 1``."""
    return ", ".join(map(str, sorted(cpus)))
