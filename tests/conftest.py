"""Shared test helpers.

Tests that need an independent peer (mbpoll, net-snmp's tools, ...) call
``require_tool``: a missing peer fails the test with the install hint rather
than skipping it, because `./run.sh test` (and so CI) installs every peer.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tls_support import make_pki

# bench/attack/: the hostile clients bench/attack.py runs, shared with the tests'
# short versions of its attacks (import attack.modbus, attack.web, ...)
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install {package} (./run.sh test installs it)")
    return path


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until truthy (a blocking test waiting on another process);
    fail after ``timeout`` seconds. Async tests use ``GatewayHarness.wait_until``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


def waiting_gateway_config(
    tmp_path: Path, gateway_extra: str = "", data_dir: Path | None = None
) -> Path:
    """A gateway config that starts without hardware: one string on a port that
    is not there yet (``wait_for_port``), and the example jsonl plugin; its
    data_dir is ``tmp_path`` unless given."""
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[gateway]
poll_interval_s = 0.5
data_dir = "{data_dir or tmp_path}"
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


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate
    (paths, see ``tls_support.make_pki``), in the test's ``tmp_path``."""
    return make_pki(tmp_path)
