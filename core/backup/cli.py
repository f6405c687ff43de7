"""``btms-gateway backup`` and ``btms-gateway restore``.

Both find the data directory from the config file's ``gateway.data_dir``
(only the ``[gateway]`` table is read, so a config that does not validate
on this machine can still be backed up or restored over), or from
``--data-dir`` as ``run`` takes it. The files the config names are found
by references.py, from the raw file too. See docs/deployment.md.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ..cli_options import EXIT_CONFIG, folder_option
from ..config import GatewaySection
from ..config_load import ConfigError, Problem, problems_from
from .archive import BackupError, write_archive
from .references import installed_sections, named_files
from .restore import restore
from .verify import read_manifest


def parsed(config: Path) -> dict[str, Any]:
    """The config file's TOML (ConfigError if it cannot be read)."""
    try:
        return tomllib.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            str(config), [Problem("(file)", f"a readable file, found {exc.strerror}")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(config), [Problem("(syntax)", f"valid TOML, found {exc}")]) from None


def data_dir_of(config: Path, data: dict[str, Any] | None = None) -> Path:
    """``gateway.data_dir`` of a config file (ConfigError if it cannot be read)."""
    data = parsed(config) if data is None else data
    try:
        section = GatewaySection.model_validate(data.get("gateway", {}))
    except ValidationError as exc:
        raise ConfigError(str(config), problems_from(exc, GatewaySection, ("gateway",))) from None
    return Path(section.data_dir)


config_option = click.option(
    "-c",
    "--config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's TOML file (its gateway.data_dir holds the data).",
)
data_dir_option = folder_option(
    "--data-dir", help="The data directory, if not the config's (as `run --data-dir`)."
)


@click.command()
@config_option
@data_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="The archive to write, or a folder for it [default: "
    "btms-gateway-backup-TIME.tar.gz here].",
)
def backup(config: Path, data_dir: Path | None, output: Path | None) -> None:
    """Write the config, the files it names (register-override files, TLS
    certificates and keys) and everything under data_dir (event log,
    baselines, history, plugin stores) into one archive; safe while the
    gateway runs."""
    try:
        data = parsed(config)
    except ConfigError as exc:
        if data_dir is None:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_CONFIG)
        data = {}  # archived as it is, naming nothing that can be read
    try:
        source = data_dir or data_dir_of(config, data)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    name = f"btms-gateway-backup-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
    target = Path(name) if output is None else output / name if output.is_dir() else output
    try:
        meta = write_archive(
            config, source, target, named_files(config, data, installed_sections())
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    for entry in meta["files"]:
        origin = f"  {entry['ref']['absolute']}" if "ref" in entry else ""
        click.echo(f"  {entry['name']:<40} {entry['kind']:<10} {entry['size']:>12,} bytes{origin}")
    click.echo(f"wrote {target} ({target.stat().st_size:,} bytes, {source} and {config})")
    for skipped in meta["not_archived"]:
        click.echo(
            f"warning: {config}: {skipped['key']} = {skipped['path']!r} not archived: "
            f"{skipped['why']}",
            err=True,
        )


@click.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@config_option
@data_dir_option
@click.option("--keep-config", is_flag=True, help="Leave CONFIG as it is; restore only data.")
@click.option("--force", is_flag=True, help="Restore even while a gateway holds the data_dir.")
@click.option(
    "--force-paths",
    is_flag=True,
    help="Also put back the files the config names outside CONFIG's folder "
    "(e.g. /etc/ssl/...), where it names them.",
)
def restore_command(
    archive: Path,
    config: Path,
    data_dir: Path | None,
    keep_config: bool,
    force: bool,
    force_paths: bool,
) -> None:
    """Check ARCHIVE (manifest, sha256 of every file, integrity of every
    database), then put it back: the archived config to CONFIG with the
    files it names in CONFIG's folder (override files, TLS certificates and
    keys; those elsewhere with --force-paths), and the data where it was
    backed up from (with --keep-config: into CONFIG's data_dir, CONFIG and
    its files left as they are; or into --data-dir). Refuses while a gateway
    runs on that data_dir. The files replaced are kept in
    data_dir/restore-backup-TIME/."""
    try:
        if data_dir is not None:
            target = data_dir
        elif keep_config:
            target = data_dir_of(config)
        else:  # where the data was when it was backed up, as the archived config says
            target = Path(str(read_manifest(archive)["data_dir"]))
        done = restore(
            archive,
            data_dir=target,
            config=None if keep_config else config,
            force=force,
            force_paths=force_paths,
        )
        configured = data_dir_of(config) if config.exists() else None
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{archive}: {done.verified.describe()}, verified")
    for path in done.files:
        if path.is_file():
            click.echo(f"  restored {path}")
    if done.config:
        click.echo(f"  {done.config}")
    for line in done.referenced:
        click.echo(f"  {line}")
    for skipped in done.verified.manifest.get("not_archived") or []:
        click.echo(
            f"note: {skipped.get('key')} = {skipped.get('path')!r} was not in the backup: "
            f"{skipped.get('why')}",
            err=True,
        )
    if done.aside is not None:
        click.echo(f"replaced files kept in {done.aside}")
    if configured is not None and configured.absolute() != target.absolute():
        click.echo(
            f"note: {config} has data_dir = {configured}, the data went to {target}: "
            "run the gateway with --data-dir, or change the config",
            err=True,
        )
    click.echo("next: btms-gateway check-config CONFIG; then start the gateway")


def add_to(cli: click.Group) -> None:
    cli.add_command(backup)
    cli.add_command(restore_command)
