"""The ``[alarms]`` section of the gateway's TOML file, and the rules as it
makes them for each string (``rules_for``: overrides merged, block scaling
done).

Built on :mod:`btms_gateway.core.config_base` (not ``core.config``) because
``core.config`` imports this module to type its ``alarms`` key.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config_base import StrictModel
from .rules import CELLS_PER_BLOCK, RULES, SEVERITIES, BlockType, Rule

SeverityName = Literal["warning", "alarm", "critical"]


class RuleOverride(StrictModel):
    """Changes to one rule's defaults; any key left out keeps its default."""

    enabled: bool | None = None
    limit: float | None = None
    hysteresis: Annotated[float, Field(ge=0)] | None = None
    on_delay_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    off_delay_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    severity: SeverityName | None = None


def _check_rule_names(rules: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
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
        problem = check_limits(self)
        if problem:
            raise ValueError(problem)
        return self

    def block_for(self, string: str) -> BlockType:
        s = self.strings.get(string)
        return (s.block if s is not None and s.block else None) or self.block


def rules_for(settings: AlarmsSection, string: str | None) -> dict[str, Rule]:
    """Every rule with the global and (if given) the string's overrides applied."""
    per_string = settings.strings.get(string) if string else None
    cpb = CELLS_PER_BLOCK[settings.block_for(string) if string else settings.block]
    layers = [settings.rules, per_string.rules if per_string else {}]
    out: dict[str, Rule] = {}
    for d in RULES.values():
        values: dict[str, Any] = {
            "enabled": d.enabled,
            "limit": d.limit,
            "hysteresis": d.hysteresis,
            "on_delay_s": d.on_delay_s,
            "off_delay_s": d.off_delay_s,
            "severity": d.severity,
        }
        for layer in layers:
            o = layer.get(d.name)
            if o is None:
                continue
            for key, val in o.model_dump(exclude_none=True).items():
                values[key] = SEVERITIES[val] if key == "severity" else val
        factor = cpb if d.scale != "none" else 1
        values["limit"] = round(values["limit"] * factor, 6)
        values["hysteresis"] = round(values["hysteresis"] * factor, 6)
        out[d.name] = replace(d, **values)
    return out


def check_limits(settings: AlarmsSection) -> str | None:
    """Catch limits that can never work (high below low, a band wider than the
    gap) at config time rather than as alarms that never clear."""
    for where in [None, *settings.strings]:
        rules = rules_for(settings, where)
        prefix = f"strings.{where}: " if where else ""
        for hi, lo in (
            ("cell_voltage_high", "cell_voltage_low"),
            ("string_voltage_high", "string_voltage_low"),
        ):
            if rules[hi].limit <= rules[lo].limit:
                return (
                    f"{prefix}{hi}.limit ({rules[hi].limit:g}) above "
                    f"{lo}.limit ({rules[lo].limit:g})"
                )
        for name, what in (
            ("cell_resistance_warning", "% above baseline"),
            ("cell_resistance_alarm", "% above baseline"),
            ("cell_resistance_median_warning", "% above the string median"),
            ("cell_resistance_median_alarm", "% above the string median"),
            ("cell_temperature_vs_median", "C above the median cell"),
            ("cell_temperature_vs_ambient", "C above ambient"),
            ("string_thermal_runaway", "C rise over the window"),
        ):
            r = rules[name]
            if r.limit <= 0 or r.hysteresis >= r.limit:
                return (
                    f"{prefix}{name}.limit ({what}, {r.limit:g}) above 0 "
                    f"and above its hysteresis ({r.hysteresis:g})"
                )
    return None
