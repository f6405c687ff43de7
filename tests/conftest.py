"""Shared test helpers.

Tests that need an independent peer (mbpoll, net-snmp's tools, ...) call
``require_tool``: a missing peer fails the test with the install hint rather
than skipping it, because `./run.sh test` (and so CI) installs every peer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install {package} (./run.sh test installs it)")
    return path


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
