"""Helpers for tests that run the real `btms-gateway` command (no tests here)."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CLI = [sys.executable, "-m", "btms_gateway.core"]
#: the ports `btms-gateway demo` serves on (fixed: its plugins' defaults)
DEMO_PORTS = (("tcp", 5020), ("udp", 1161), ("udp", 47808), ("tcp", 8080))


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(kind: str, port: int) -> bool:
    """Whether 127.0.0.1:``port`` (``kind`` "tcp" or "udp") can be bound now."""
    family = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, family) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def reading_stdout(
    command: list[str], **popen: Any
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """(process, its stdout lines so far): ``command`` runs while the block
    does, its output collected by a thread; killed at the end if still running."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        reader.join(10)


class RunningGateway:
    """A `btms-gateway run ...` process whose log lines a test can wait for."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "run", *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The next log line containing ``text``; fails after ``timeout`` s or
        when the process has ended without logging it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no log line with {text!r} within {timeout} s:\n" + "\n".join(self.log)
                )
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"the gateway exited ({self.proc.returncode}) before logging {text!r}:\n"
                        + "\n".join(self.log)
                    ) from None
                continue
            self.log.append(line)
            if text in line:
                return line

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
