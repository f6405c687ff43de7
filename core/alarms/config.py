"""The ``[alarms]`` section of the gateway's TOML file.

Built on :mod:`btms_gateway.core.config_base` (not ``core.config``) because
``core.config`` imports this module to type its ``alarms`` key; the rule table
is looked up lazily inside the validators for the same reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..config_base import StrictModel

BlockType = Literal["2V", "6V", "12V"]
SeverityName = Literal["warning", "alarm", "critical"]

#: Lead-acid cells in series per block: limits are written in volts per cell
#: (VPC, the unit battery datasheets use) and scaled by this for each block type.
CELLS_PER_BLOCK: dict[str, int] = {"2V": 1, "6V": 3, "12V": 6}


class RuleOverride(StrictModel):
    """Changes to one rule's defaults; any key left out keeps its default."""

    enabled: bool | None = None
    limit: float | None = None
    hysteresis: Annotated[float, Field(ge=0)] | None = None
    on_delay_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    off_delay_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    severity: SeverityName | None = None


def _check_rule_names(rules: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
    from .rules import RULES  # lazy: rules.py imports this module

    for name, override in rules.items():
        rule = RULES.get(name)
        if rule is None:
            raise ValueError(f"a known rule name ({', '.join(sorted(RULES))}), found {name!r}")
        if rule.kind == "flag" and (override.limit is not None or override.hysteresis is not None):
            raise ValueError(
                f"only enabled, on_delay_s, off_delay_s and severity for {name!r} "
                "(an on/off condition has no limit or hysteresis)"
            )
    return rules


class StringAlarmSettings(StrictModel):
    """Per-string settings: ``[alarms.strings.NAME]``."""

    block: BlockType | None = None
    rules: dict[str, RuleOverride] = {}

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        return _check_rule_names(v)


class AlarmsSection(StrictModel):
    """``[alarms]``: rule defaults apply to every string unless overridden."""

    enabled: bool = True
    block: BlockType = "2V"
    rules: dict[str, RuleOverride] = {}
    strings: dict[str, StringAlarmSettings] = {}
    #: good readings averaged (median) into a cell's resistance baseline
    baseline_readings: Annotated[int, Field(ge=1, le=10_000)] = 10
    #: a string never read is reported lost only after this long after start
    startup_grace_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    retention_days: Annotated[float, Field(gt=0)] = 365.0
    max_log_mb: Annotated[float, Field(gt=0)] = 200.0
    #: "full": fsync the WAL on every commit (an event survives power loss);
    #: "normal": survives a process crash (kill -9) but not a power cut
    synchronous: Literal["full", "normal"] = "full"
    #: CLI requests (acknowledge, baseline) older than this are not applied
    request_ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        return _check_rule_names(v)

    @model_validator(mode="after")
    def _limits_make_sense(self) -> AlarmsSection:
        from .rules import check_limits  # lazy, see module docstring

        problem = check_limits(self)
        if problem:
            raise ValueError(problem)
        return self

    def block_for(self, string: str) -> str:
        s = self.strings.get(string)
        return (s.block if s is not None and s.block else None) or self.block
