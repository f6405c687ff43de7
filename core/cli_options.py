"""What several command groups share: options declared alike, and the
configuration file loaded or every problem said (exit 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pluggy

from .config_load import ConfigError, LoadedConfig
from .registry import load_config

#: the exit status of a command given a configuration that does not validate
EXIT_CONFIG = 2


def folder_option(*decls: str, help: str, default: Path | None = None) -> Callable[[Any], Any]:
    """An option naming a directory, given to the command as a Path."""
    return click.option(
        *decls,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


def load_or_exit(file: Path, pm: pluggy.PluginManager) -> LoadedConfig:
    """The validated file, or every problem on stderr and exit 2."""
    try:
        return load_config(file, pm)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
