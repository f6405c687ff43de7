"""Shared test helpers.

Tests that need an independent peer (mbpoll, net-snmp's tools, ...) call
``require_tool``: a missing peer fails the test with the install hint rather
than skipping it, because `./run.sh test` (and so CI) installs every peer.
"""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install {package} (./run.sh test installs it)")
    return path
