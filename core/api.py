"""The public plugin API: everything a plugin may use of the core, in one place.

A plugin (northbound or southbound, built in or third party) imports from
here and nowhere else in ``btms_gateway.core``::

    from btms_gateway.core import api

    @api.hookimpl
    def alarm_event(event: api.AlarmEvent, active: api.ActiveAlarms) -> None: ...

Every name in ``__all__`` is documented in docs/plugin_hooks.md ("Public
API"), and a test fails when one is not. Nothing else in the core is stable:
modules, attributes and signatures not named here may change in any release.
``lint-imports`` (import-linter, in ``./run.sh test``) holds the built-in
plugins to the same rule.
"""

from __future__ import annotations

from .alarm_types import (
    ActiveAlarm,
    ActiveAlarms,
    AlarmEvent,
    EventKind,
    EventLogHealth,
    ObjectPath,
    Severity,
)
from .alarms.config import rules_for
from .alarms.rules import CELLS_PER_BLOCK, RULES, BlockType, Rule
from .analytics import CellSummary, DischargeSummary
from .analytics.health import CellHealth, StringHealth
from .config import BAUD_RATES, BusConfig, GatewayConfig, StringConfig
from .config_base import PluginSection, Problem, StrictModel
from .config_load import ConfigError, problems_from, read_text
from .counters import CommCounters
from .exported_plant import ExportedPlant, exported_plant, plant_options
from .history.quantities import RECORDED, Recorded
from .history.query import RESOLUTIONS, Discharge, HistoryQueries, QueryError, Series, parse_cells
from .history.service import HistoryStatus
from .hookspecs import hookimpl
from .model import (
    SENSOR_LOST_BIT,
    CellReading,
    CellStatus,
    DeviceStatus,
    PlantSnapshot,
    Quality,
    StringAlarm,
    StringReading,
    StringSnapshot,
    StringState,
    UpsSnapshot,
)
from .netguard import (
    FD_RESERVE,
    FD_RESERVE_WEB,
    LOOPBACK,
    AllowList,
    ClientAllowlist,
    ConnectionSlots,
    LogTally,
    TokenBuckets,
    may_accept,
    peer_host,
    raise_open_file_limit,
)
from .plugin_services import PerGateway, add_export_commands
from .profiles import (
    BusLink,
    DeviceProfile,
    ErrorKind,
    LinkFactory,
    PollError,
    StringChecks,
    StringPoller,
)
from .quantities import (
    ALARM_BIT_NAMES,
    CELL_FLAG_NAMES,
    DEVICE_STATUS_NAMES,
    QUALITY_NAMES,
    QUANTITIES,
    SEVERITY_NAMES,
    STATE_NAMES,
    Level,
    Quantity,
    Role,
    names_of,
    of_level,
    placed,
    quantity,
    table_of,
)
from .reports import Report, ReportError, ReportSource
from .serialize import (
    cell_dict,
    event_dict,
    plant_dict,
    reading_dict,
    string_dict,
    string_head,
    ups_dict,
)
from .version import PRODUCT, VENDOR, __version__
from .views import (
    AlarmService,
    BusStatusView,
    EventLogReader,
    Gateway,
    HistoryReader,
    SnapshotReader,
)

__all__ = [
    "ALARM_BIT_NAMES",
    "BAUD_RATES",
    "CELLS_PER_BLOCK",
    "CELL_FLAG_NAMES",
    "DEVICE_STATUS_NAMES",
    "FD_RESERVE",
    "FD_RESERVE_WEB",
    "LOOPBACK",
    "PRODUCT",
    "QUALITY_NAMES",
    "QUANTITIES",
    "RECORDED",
    "RESOLUTIONS",
    "RULES",
    "SENSOR_LOST_BIT",
    "SEVERITY_NAMES",
    "STATE_NAMES",
    "VENDOR",
    "ActiveAlarm",
    "ActiveAlarms",
    "AlarmEvent",
    "AlarmService",
    "AllowList",
    "BlockType",
    "BusConfig",
    "BusLink",
    "BusStatusView",
    "CellHealth",
    "CellReading",
    "CellStatus",
    "CellSummary",
    "ClientAllowlist",
    "CommCounters",
    "ConfigError",
    "ConnectionSlots",
    "DeviceProfile",
    "DeviceStatus",
    "Discharge",
    "DischargeSummary",
    "ErrorKind",
    "EventKind",
    "EventLogHealth",
    "EventLogReader",
    "ExportedPlant",
    "Gateway",
    "GatewayConfig",
    "HistoryQueries",
    "HistoryReader",
    "HistoryStatus",
    "Level",
    "LinkFactory",
    "LogTally",
    "ObjectPath",
    "PerGateway",
    "PlantSnapshot",
    "PluginSection",
    "PollError",
    "Problem",
    "Quality",
    "Quantity",
    "QueryError",
    "Recorded",
    "Report",
    "ReportError",
    "ReportSource",
    "Role",
    "Rule",
    "Series",
    "Severity",
    "SnapshotReader",
    "StrictModel",
    "StringAlarm",
    "StringChecks",
    "StringConfig",
    "StringHealth",
    "StringPoller",
    "StringReading",
    "StringSnapshot",
    "StringState",
    "TokenBuckets",
    "UpsSnapshot",
    "__version__",
    "add_export_commands",
    "cell_dict",
    "event_dict",
    "exported_plant",
    "hookimpl",
    "may_accept",
    "names_of",
    "of_level",
    "parse_cells",
    "peer_host",
    "placed",
    "plant_dict",
    "plant_options",
    "problems_from",
    "quantity",
    "raise_open_file_limit",
    "read_text",
    "reading_dict",
    "rules_for",
    "string_dict",
    "string_head",
    "table_of",
    "ups_dict",
]
