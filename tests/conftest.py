"""Shared test helpers.

Tests that need an independent peer (mbpoll, net-snmp's tools, ...) call
``require_tool``: a missing peer fails the test with the install hint rather
than skipping it, because `./run.sh test` (and so CI) installs every peer.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install {package} (./run.sh test installs it)")
    return path


def waiting_gateway_config(tmp_path: Path, gateway_extra: str = "") -> Path:
    """A gateway config that starts without hardware: one string on a port that
    is not there yet (``wait_for_port``), and the example jsonl plugin."""
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[gateway]
poll_interval_s = 0.5
data_dir = "{tmp_path}"
{gateway_extra}
[[buses]]
name = "b"
port = "{tmp_path / "ttyNOTYET"}"
wait_for_port = true
[[strings]]
name = "A1"
bus = "b"
slave_id = 1
[plugins.jsonl]
path = "{tmp_path / "out.jsonl"}"
""")
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """``GatewayHarness.wait_until`` for code that is not a coroutine (a test
    driving subprocesses, a peer's helper): poll until truthy, or fail."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value
