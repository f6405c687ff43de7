"""click options that several command groups declare alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def folder_option(*decls: str, help: str, default: Path | None = None) -> Callable[[Any], Any]:
    """An option naming a directory, given to the command as a Path."""
    return click.option(
        *decls,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )
