"""Helpers for tests that run the real `btms-gateway` command (no tests here)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from btms_gateway.core.demo_plant import demo_config
from btms_gateway.core.plugin_manager import FailureLog, create_manager
from btms_gateway.core.registry import config_sections
from btms_gateway.kit.ports import listen_port

CLI = [sys.executable, "-m", "btms_gateway.core"]
#: `btms-gateway demo` with every listener on a free port (`--free-ports`):
#: its defaults (8080, 5020, ...) may be held by a gateway or demo on this machine
DEMO = [*CLI, "--log-level", "WARNING", "demo", "--free-ports"]
#: the port in an endpoint line of the demo's "serving:" list
ENDPOINT_PORT = re.compile(r"\bport=(\d+)|\baddress=\S+:(\d+)")


def demo_default_ports() -> set[int]:
    """The ports the demo's listeners take when not told `--free-ports`: each
    plugin's default ``port`` or BACnet/IP ``address`` port."""
    pm = create_manager()
    sections = config_sections(pm, FailureLog())
    ports = set()
    for name, section in demo_config([], "/nonexistent", pm)["plugins"].items():
        if hasattr(sections[name], "demo_unavailable"):
            continue  # a client: its port is a server's
        values = sections[name].model_validate(section).model_dump()
        with contextlib.suppress(KeyError):
            ports.add(listen_port({k: v for k, v in values.items() if k in ("port", "address")}))
    return ports


def demo_endpoints(lines: list[str]) -> dict[str, int]:
    """{plugin: port} from the demo's "serving:" list among its output ``lines``."""
    served = {}
    for line in lines[lines.index("serving:\n") + 1 :]:
        if not line.startswith("  "):
            break
        name, _, where = line.strip().partition(" ")
        match = ENDPOINT_PORT.search(where)
        if match:
            served[name] = int(match[1] or match[2])
    return served


@contextmanager
def occupying(ports: set[int]) -> Iterator[set[int]]:
    """Holds each of ``ports`` of 127.0.0.1 for TCP and UDP while the block runs
    (one already held by someone else is as good): the ports it holds."""
    with contextlib.ExitStack() as stack:
        held = set()
        for port in ports:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                with contextlib.suppress(OSError):
                    s.bind(("127.0.0.1", port))
                    if kind == socket.SOCK_STREAM:
                        s.listen()
                    held.add(port)
        yield held


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


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btms_gateway.core", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
