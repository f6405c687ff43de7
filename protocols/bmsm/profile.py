"""The "bmsm" device profile: how the engine gets a poller for a BM-SM string.
Registered through the register_device_profiles hook like any third party's.

A string that names ``register_overrides`` is read with that file's
effective register map (overrides.py); the file is validated with the
configuration (``check_string``), and so is the one rule that spans the map
and the alarm settings: the cell voltage range must cover the string's
block type.
"""

from __future__ import annotations

from pathlib import Path

from btms_gateway.core.api import (
    CELLS_PER_BLOCK,
    BlockType,
    BusConfig,
    BusLink,
    ConfigError,
    GatewayConfig,
    Problem,
    StringConfig,
)

from .overrides import load_map
from .poller import BmsmPoller
from .registers import CELL_VOLTS, spans_text
from .regmap import DEFAULT_MAP, RegisterMap


class BmsmProfile:
    name = "bmsm"
    description = "BTMS BM-SM string master (Modbus RTU, up to 120 cells)"

    def create_poller(self, string: StringConfig, bus: BusConfig, link: BusLink) -> BmsmPoller:
        return BmsmPoller(link, string.slave_id, map_for(string))

    def check_string(
        self, string: StringConfig, index: int, config: GatewayConfig
    ) -> list[Problem]:
        path = string.register_overrides
        key = f"strings[{index}].register_overrides"
        if path is not None and not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "which does not exist"
            return [Problem(key, f"a register-override file (TOML), found {str(path)!r}, {what}")]
        try:
            regmap = map_for(string)
        except ConfigError as exc:
            return [p if p.file else Problem(p.path, p.message, exc.file) for p in exc.problems]
        problem = block_type_problem(string, index, config, regmap)
        return [problem] if problem else []


def map_for(string: StringConfig) -> RegisterMap:
    """The register map a string is read with (ConfigError for a bad file)."""
    if string.register_overrides is None:
        return DEFAULT_MAP
    return load_map(string.register_overrides)


def block_volts(block: BlockType) -> tuple[float, float]:
    """What a block of this type reads (the datasheet's 2 V range per cell in
    series): 2V 1.6..2.6, 6V 4.8..7.8, 12V 9.6..15.6 V."""
    n = CELLS_PER_BLOCK[block]
    lo, hi = CELL_VOLTS[0]
    return round(n * lo, 3), round(n * hi, 3)


def block_type_problem(
    string: StringConfig, index: int, config: GatewayConfig, regmap: RegisterMap
) -> Problem | None:
    """The alarm settings say which blocks a string has (``block``: their
    limits are scaled by it); the register map says which cell voltages are
    plausible. A block type whose voltages the map refuses would fail every
    poll as implausible: the datasheet's ranges cover 2 V and 12 V blocks
    only, so a 6 V string needs an override that widens them. Said once,
    naming both keys."""
    alarms = config.alarms
    block = alarms.block_for(string.name)
    volts = regmap.row("cell.voltage_v")
    lo, hi = block_volts(block)
    if not volts.valid or any(a <= lo and hi <= b for a, b in volts.valid):
        return None
    own = alarms.strings.get(string.name)
    key = f"alarms.strings.{string.name}.block" if own and own.block else "alarms.block"
    where = f"strings[{index}].register_overrides"
    if string.register_overrides is None:
        origin = "the datasheet's, for 2 V and 12 V blocks only"
        fix = f"set {where} to a file with"
    else:
        origin = f"from {where}, {regmap.source}"
        fix = "write in that file"
    return Problem(
        key,
        f"a block type whose cell voltages string {string.name!r} can read, found "
        f'"{block}" ({lo:g}..{hi:g} V a block) outside the cell voltage range of its '
        f"register map, {spans_text(volts.valid, 'V')} ({origin}); if its cell sensors "
        f"measure {block} blocks, {fix} [cell.voltage_v] valid = [[{lo:g}, {hi:g}]] "
        f'(docs/southbound.md, "Register-map overrides"), otherwise correct {key}',
    )
