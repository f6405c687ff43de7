"""Installing and removing the service's files: the unit, and a sample config
when the site has none. Nothing here runs systemctl: the commands print the
steps, so an image build (``--root``) and a live machine are handled alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..config_load import LoadedConfig
from .unit import MARKER, UNIT_NAME, Unit, render

DEFAULT_CONFIG = Path("/etc/btms-gateway/gateway.toml")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
SAMPLE_CONFIG = "gateway.toml"
ENABLED_LINK = Path("multi-user.target.wants") / UNIT_NAME


class InstallError(Exception):
    """The install cannot go on; ``str()`` says why and what to do."""


@dataclass
class Report:
    """What a command did, line by line, and the steps it leaves to the admin."""

    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def under(root: Path | None, path: Path) -> Path:
    """``path`` inside ``root`` (an image being built, a test), or itself."""
    return root / path.relative_to(path.anchor) if root is not None else path


def default_executable() -> Path:
    """The ``btms-gateway`` script of the environment this command runs from
    (e.g. /opt/btms-gateway/bin/btms-gateway for a venv there)."""
    return Path(sys.executable).parent / "btms-gateway"


def sample_config() -> str:
    return files(__package__).joinpath(SAMPLE_CONFIG).read_text(encoding="utf-8")


def notify_library_missing() -> str | None:
    try:
        import cysystemd.daemon  # noqa: F401
    except ImportError as exc:
        return (
            f"the unit is Type=notify, which needs cysystemd in this environment ({exc}): "
            f"{Path(sys.executable).parent / 'pip'} install 'btms-gateway[systemd]'"
        )
    return None


def write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to a new file created with ``mode`` (not widened by the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, mode)


def ensure_config(config: Path, root: Path | None, report: Report) -> Path:
    """The config file on disk; a sample is written only where there is none."""
    target = under(root, config)
    if target.exists():
        report.done.append(f"kept {target} (exists; never overwritten)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    write_private(target, sample_config(), 0o600)
    report.done.append(f"wrote {target} (a sample: edit its buses, strings and plugins)")
    report.next_steps.append(f"edit {config}, then: btms-gateway check-config {config}")
    return target


def write_unit(unit: Unit, unit_dir: Path, force: bool, report: Report) -> None:
    path = unit_dir / UNIT_NAME
    if path.exists() and not force:
        first = path.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
        if first != MARKER:
            raise InstallError(
                f"{path} exists and was not written by btms-gateway: move it away, "
                "or replace it with --force (local changes belong in a drop-in: "
                "systemctl edit btms-gateway)"
            )
    unit_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, unit.text, 0o644)
    report.done.append(f"wrote {path}")


def install(
    load: Callable[[Path], LoadedConfig],
    *,
    config: Path = DEFAULT_CONFIG,
    unit_dir: Path = DEFAULT_UNIT_DIR,
    root: Path | None = None,
    executable: Path | None = None,
    force: bool = False,
) -> Report:
    """Write the sample config (if absent) and the unit; ``load(path)`` validates
    the config and returns a LoadedConfig (raising ConfigError)."""
    report = Report()
    missing = notify_library_missing()
    if missing:
        raise InstallError(missing)
    executable = executable or default_executable()
    if not (executable.is_file() or under(root, executable).is_file()):
        raise InstallError(f"{executable} is not there: give the gateway's command with --exec")
    loaded: LoadedConfig = load(ensure_config(config, root, report))
    unit = render(loaded, config_path=config, executable=executable)
    write_unit(unit, under(root, unit_dir), force, report)
    if unit.privileged_ports:
        ports = ", ".join(f"{p} ({k})" for p, k in unit.privileged_ports)
        report.notes.append(f"CAP_NET_BIND_SERVICE granted for {ports}")
    else:
        report.notes.append("no capability granted (no port below 1024)")
    if unit.device_classes:
        report.notes.append(f"serial devices allowed: {', '.join(unit.device_classes)}")
    report.notes.extend(unit.notes)
    report.next_steps.append("systemctl daemon-reload && systemctl enable --now btms-gateway")
    report.next_steps.append("systemctl status btms-gateway; journalctl -u btms-gateway -f")
    return report


def uninstall(
    *, unit_dir: Path = DEFAULT_UNIT_DIR, root: Path | None = None, force: bool = False
) -> Report:
    """Remove the unit; the config and the data directory stay."""
    report = Report()
    directory = under(root, unit_dir)
    path = directory / UNIT_NAME
    if (directory / ENABLED_LINK).is_symlink() and not force:
        raise InstallError(
            "the service is enabled: run `systemctl disable --now btms-gateway` first"
        )
    if not path.exists():
        report.done.append(f"{path} is not there: nothing to remove")
        return report
    first = path.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    if first != MARKER and not force:
        raise InstallError(f"{path} was not written by btms-gateway: not removed (--force)")
    path.unlink()
    report.done.append(f"removed {path}")
    report.notes.append(
        f"kept {DEFAULT_CONFIG.parent} and the data in /var/lib/btms-gateway "
        "(a backup first: btms-gateway backup -c CONFIG)"
    )
    report.next_steps.append("systemctl daemon-reload")
    return report
