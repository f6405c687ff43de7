"""The plant an ``export`` command documents: a configuration file (``-c
FILE``), the demo's plant (``--demo``), or, with neither, a reference plant.

Lists of addresses and objects (the Modbus tag list, the EDE file, the BACnet
object CSV) are worth something only for the plant a SCADA will talk to:
its UPS and strings with the indexes the servers give them (which set the
Modbus unit ids and the BACnet instances) and the plugin settings that shape
what is served (word order, cell objects). Every exporter takes the plant
from here, so ``-c FILE`` and ``--demo`` mean the same to all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from .cli_options import load_or_exit
from .config import index_of
from .config_base import PluginSection
from .config_load import LoadedConfig
from .demo_plant import demo_plant
from .plugin_manager import FailureLog, create_manager
from .quantities import QUANTITIES, Level, Quantity, of_level
from .registry import quantity_table

Section = TypeVar("Section", bound=PluginSection)


@dataclass(frozen=True)
class ExportedPlant:
    """UPS ``(name, index)`` and strings ``(name, index, UPS name or None)``,
    both ordered by index, the validated configuration they come from (None
    for the reference plant), and the quantity table of the installed plugins
    (what a gateway of this plant would serve)."""

    source: str  # said in a generated file's header: where the plant came from
    ups: tuple[tuple[str, int], ...]
    strings: tuple[tuple[str, int, str | None], ...]
    loaded: LoadedConfig | None = None
    quantity_table: tuple[Quantity, ...] = QUANTITIES

    @classmethod
    def of(
        cls, loaded: LoadedConfig, source: str, table: tuple[Quantity, ...] = QUANTITIES
    ) -> ExportedPlant:
        cfg = loaded.gateway.with_indexes()
        return cls(
            source,
            tuple(sorted(((u.name, index_of(u)) for u in cfg.ups), key=lambda u: u[1])),
            tuple(sorted(((s.name, index_of(s), s.ups) for s in cfg.strings), key=lambda s: s[1])),
            loaded,
            table,
        )

    def quantities(self, level: Level) -> tuple[Quantity, ...]:
        """The plant quantities of ``level``, as ``gateway.quantities`` gives them."""
        return of_level(level, self.quantity_table)

    def settings(self, name: str, model: type[Section]) -> Section:
        """Plugin ``name``'s validated section, or the model's defaults when the
        plant has none (the reference plant, a file without that section)."""
        section = self.loaded.plugin(name) if self.loaded is not None else None
        return section if isinstance(section, model) else model()


#: without -c or --demo: one UPS of one string, every cell position
REFERENCE = ExportedPlant(
    "a reference plant: UPS UPS1 (index 1) with string S1 (index 1)",
    (("UPS1", 1),),
    (("S1", 1, "UPS1"),),
)


def plant_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-c/--config FILE`` and ``--demo``, passed on as ``config`` and ``demo``."""
    f = click.option(
        "--demo",
        is_flag=True,
        help="The plant `btms-gateway demo` runs (2 UPS, strings A1, A2, B1, B2).",
    )(f)
    return click.option(
        "-c",
        "--config",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The gateway's TOML file (default: a reference plant, 1 UPS with 1 string).",
    )(f)


def exported_plant(config: Path | None, demo: bool) -> ExportedPlant:
    """The plant of ``-c FILE`` or ``--demo`` (REFERENCE without either). A
    file that does not validate prints its problems and exits 2, as
    check-config does."""
    if config is not None and demo:
        raise click.UsageError("give -c FILE or --demo, not both")
    pm = create_manager()
    table = quantity_table(pm, FailureLog())
    if demo:
        return ExportedPlant.of(demo_plant(pm), "the demo (btms-gateway demo)", table)
    if config is not None:
        return ExportedPlant.of(load_or_exit(config, pm), str(config), table)
    return replace(REFERENCE, quantity_table=table)
