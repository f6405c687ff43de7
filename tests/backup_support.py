"""Shared helpers of the backup and restore tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

from btms_gateway.core.cli import build_cli
from btms_gateway.core.datadir import LOCK_NAME
from click.testing import CliRunner


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.output


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show a refusal changed
    nothing), but the lock file, which restore takes as a gateway would."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }
