"""What the BM-SM commands (probe, simulate, export) share on the command
line: the ``--register-overrides FILE`` option and reading its map."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from btms_gateway.core.api import ConfigError

from .overrides import load_map
from .regmap import DEFAULT_MAP, RegisterMap

EXIT_USAGE = 2


def overrides_option(help: str) -> Callable[[Any], Any]:
    """``--register-overrides FILE``, given to the command as ``overrides``."""
    return click.option(
        "--register-overrides",
        "overrides",
        type=click.Path(dir_okay=False, path_type=Path),
        help=help,
    )


def map_or_exit(overrides: Path | None) -> RegisterMap:
    """The override file's effective map (the default table without one); a
    bad file prints every problem, each naming the file and key, and exits 2."""
    if overrides is None:
        return DEFAULT_MAP
    try:
        return load_map(overrides)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
