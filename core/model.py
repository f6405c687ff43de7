"""The normalized battery data model every protocol reads from.

Readings are frozen, slotted dataclasses: once the engine publishes one, any
number of plugins can hold it across threads without copying or locking. A
string's cells live in a tuple inside its reading, so publishing a new plant
snapshot after one string was polled copies 32 references, not 3,840 cells.

Units are SI-ish as the field uses them: V, A, mOhm, degrees C, %RH, %.
``None`` always means "not measured" (no sensor fitted, sensor lost, or never
read); a value is never invented to fill a gap.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The plant's address space: strings are numbered 1..MAX_STRINGS and UPS
#: 1..MAX_UPS, and every northbound protocol derives its addresses from those
#: numbers (Modbus unit id 100 + string index, SNMP table index, BACnet
#: instance ranges), so the limits live here, beside the model they bound.
#: 128 strings are four BM-GWs' worth (Modbus unit ids 101..228); UPS stay at
#: the BM-GW's 32 (a UPS groups any number of strings).
MAX_STRINGS = 128
MAX_UPS = 32


class Quality(enum.IntEnum):
    """How far a string's published values can be trusted (NUT's stale-data rule).

    GOOD: the last poll succeeded. STALE: the last poll failed (from the
    first failure on), or no poll result came for ``stale_after_s`` (a stuck
    bus); the values are the last good ones, with their old ``read_at``.
    OFFLINE: ``offline_after_failures`` failed polls in a row, or never read
    at all. Ordered so that ``max()`` gives the worst quality of a group.
    """

    GOOD = 0
    STALE = 1
    OFFLINE = 2


class StringState(enum.IntEnum):
    """The BM-SM's string state register (HR 7); values as the device sends them."""

    FLOAT_CHARGE = 0
    EQUALIZE_CHARGE = 1
    DISCHARGE = 2
    IDLE = 3
    ABNORMAL = 5
    UNKNOWN = 255  # a raw value the device documentation does not define

    @classmethod
    def from_raw(cls, raw: int) -> StringState:
        try:
            return cls(raw)
        except ValueError:
            return cls.UNKNOWN


class StringAlarm(enum.IntFlag):
    """The BM-SM's own string alarm word (HR 13), bit for bit."""

    NONE = 0
    CURRENT_HIGH_CHARGE = 1 << 0  # charge over-current
    # discharge over-current: the signed current below its negative limit (the
    # datasheet names it by that sign; docs/device.md)
    CURRENT_HIGH_DISCHARGE = 1 << 1
    VOLTAGE_HIGH = 1 << 2
    VOLTAGE_LOW = 1 << 3
    SOC_LOW = 1 << 4
    SOH_LOW = 1 << 5
    HALL_SENSOR_DISCONNECTED = 1 << 6


class CellStatus(enum.IntFlag):
    """Per-cell status bits (assumed register block 2000 + i)."""

    NONE = 0
    SENSOR_LOST = 1 << 0
    BALANCING = 1 << 1


#: CellStatus.SENSOR_LOST as a plain int: IntFlag's own ``&`` builds a new flag
#: member, and the test runs for every cell of every poll in several places
SENSOR_LOST_BIT = int(CellStatus.SENSOR_LOST)


class DeviceStatus(enum.IntEnum):
    """BM-GW's status code for a UPS, string or cell: what its SCADA users expect."""

    DISABLED = 0
    OK = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class CellReading:
    """One cell sensor (BM-CS) as read in one poll. ``index`` is 1-based."""

    index: int
    voltage_v: float | None
    resistance_mohm: float | None
    temperature_c: float | None
    soc_pct: float | None
    soh_pct: float | None
    status: CellStatus = CellStatus.NONE

    @property
    def device_status(self) -> DeviceStatus:
        if int(self.status) & SENSOR_LOST_BIT or self.voltage_v is None:
            return DeviceStatus.ERROR
        return DeviceStatus.OK


@dataclass(frozen=True, slots=True)
class StringReading:
    """Everything one successful poll of a string master decoded.

    ``read_at`` is wall-clock seconds (``time.time()``) of the poll that
    produced these values; it never moves when later polls fail.
    """

    voltage_v: float
    current_a: float
    soc_pct: float
    balance_pct: float
    state: StringState
    alarms: StringAlarm
    cell_count: int
    ambient_temperature_c: float | None
    ambient_humidity_pct: float | None
    relay_closed: bool | None
    aux_input_on: bool | None
    cells: tuple[CellReading, ...]
    read_at: float

    @property
    def soh_pct(self) -> float | None:
        """String SOH is not a device register: the gateway derives it as the
        lowest cell SOH, since the weakest block limits the string."""
        values = [c.soh_pct for c in self.cells if c.soh_pct is not None]
        return min(values) if values else None


#: no derived values (the default of StringSnapshot.derived and cell_derived)
NO_DERIVED: Mapping[str, Any] = MappingProxyType({})


def _no_values() -> Mapping[str, float | None]:
    return NO_DERIVED


def _no_cell_values() -> Mapping[str, tuple[float | None, ...]]:
    return NO_DERIVED


@dataclass(frozen=True, slots=True)
class StringSnapshot:
    """A configured string as northbound protocols see it: identity, quality, values.

    ``reading`` is the last good reading (None if the string was never read);
    ``quality`` says whether it is current. ``changed_at`` is when quality last
    changed, for "since" displays and transition logs.

    ``derived`` holds what the gateway derives from the readings (core/analytics:
    remaining runtime, depth of discharge, the cells' medians...), key -> value
    in the unit the key's suffix says, None when it cannot be said now;
    ``cell_derived`` holds per-cell derived values, key -> one value per cell
    in the order of ``reading.cells``. Both are read-only mappings, empty when
    analytics is off; the keys, units and resolutions are listed in
    docs/analytics.md ("Derived values"). Like the reading, they describe the
    last GOOD reading: serve them as current only while ``quality`` is GOOD.
    """

    name: str
    index: int
    ups: str | None
    ups_index: int
    slave_id: int
    bus: str
    quality: Quality
    reading: StringReading | None
    changed_at: float
    derived: Mapping[str, float | None] = field(default_factory=_no_values)
    cell_derived: Mapping[str, tuple[float | None, ...]] = field(default_factory=_no_cell_values)

    def age_s(self, now: float | None = None) -> float | None:
        """Seconds since the values were read, or None if never read."""
        if self.reading is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.reading.read_at)

    @property
    def device_status(self) -> DeviceStatus:
        """BM-GW semantics: error when data is not current, the state is
        abnormal or the BM-SM raises any alarm bit."""
        r = self.reading
        if self.quality is not Quality.GOOD or r is None:
            return DeviceStatus.ERROR
        if r.state in (StringState.ABNORMAL, StringState.UNKNOWN) or r.alarms:
            return DeviceStatus.ERROR
        return DeviceStatus.OK


@dataclass(frozen=True, slots=True)
class UpsSnapshot:
    """A battery system: the aggregate of its strings (docs/device.md, "UPS values")."""

    name: str
    index: int
    strings: tuple[str, ...]
    voltage_v: float | None
    current_a: float | None
    soc_pct: float | None
    quality: Quality
    status: DeviceStatus
    read_at: float | None


@dataclass(frozen=True, slots=True)
class PlantSnapshot:
    """The whole plant at one instant; what a plugin reads to refresh its image.

    Mappings are keyed by name and ordered by index.
    """

    strings: dict[str, StringSnapshot]
    ups: dict[str, UpsSnapshot]
    taken_at: float = field(default_factory=time.time)
