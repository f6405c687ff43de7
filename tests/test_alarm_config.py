"""The ``[alarms]`` section: defaults, overrides, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from btms_gateway.core.alarms.config import AlarmsSection, rules_for
from btms_gateway.core.alarms.rules import RULES, defaults_table
from btms_gateway.core.config import GatewayConfig
from btms_gateway.core.config_load import ConfigError, validate
from pydantic import ValidationError


def test_defaults_for_2v_and_12v_blocks():
    s = AlarmsSection.model_validate({"strings": {"B": {"block": "12V"}}})
    two, twelve = rules_for(s, "A"), rules_for(s, "B")
    assert (two["cell_voltage_high"].limit, twelve["cell_voltage_high"].limit) == (2.4, 14.4)
    assert (two["cell_voltage_low"].limit, twelve["cell_voltage_low"].limit) == (1.9, 11.4)
    assert twelve["cell_voltage_high"].hysteresis == pytest.approx(0.12)
    assert two["cell_resistance_warning"].limit == twelve["cell_resistance_warning"].limit == 25
    assert two["cell_resistance_alarm"].limit == 50
    assert not two["string_soh_low"].enabled
    assert len([r for r in RULES if r.startswith("bmsm_")]) == 7


def test_per_string_override_wins_over_global():
    s = AlarmsSection.model_validate(
        {
            "rules": {"cell_temperature_high": {"limit": 35, "severity": "warning"}},
            "strings": {"B": {"rules": {"cell_temperature_high": {"limit": 45}}}},
        }
    )
    a, b = rules_for(s, "A")["cell_temperature_high"], rules_for(s, "B")["cell_temperature_high"]
    assert (a.limit, a.severity.name) == (35, "WARNING")
    assert (b.limit, b.severity.name) == (45, "WARNING")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": {"cell_volt_high": {}}}, "found 'cell_volt_high'"),
        ({"rules": {"string_comm_lost": {"limit": 1}}}, "an on/off condition has no limit"),
        (
            {"rules": {"cell_voltage_high": {"limit": 1.8}}},
            "cell_voltage_high.limit (1.8) above cell_voltage_low.limit (1.9)",
        ),
        ({"strings": {"A": {"block": "24V"}}}, "'2V', '6V' or '12V'"),
        ({"rules": {"cell_soc_low": {"on_delay_s": -1}}}, "greater than or equal to 0"),
        ({"rules": {"cell_resistance_alarm": {"limit": 0}}}, "% above baseline"),
        ({"retention": 3}, "Extra inputs"),
    ],
)
def test_bad_settings_are_refused(data: dict, message: str):
    with pytest.raises(ValidationError, match=re.escape(message)):
        AlarmsSection.model_validate(data)


def test_gateway_config_carries_the_section_and_reports_the_key_path():
    g = GatewayConfig.model_validate({"alarms": {"block": "12V"}})
    assert g.alarms.block == "12V"
    data = {
        "buses": [{"name": "b", "port": "/dev/x", "wait_for_port": True}],
        "strings": [{"name": "A", "bus": "b", "slave_id": 1}],
        "alarms": {"strings": {"A": {"blok": "12V"}}},
    }
    with pytest.raises(ConfigError) as err:
        validate(data, "gw.toml", {})
    assert "gw.toml: alarms.strings.A.blok:" in str(err.value)
    assert "found unknown key 'blok'" in str(err.value)


def test_docs_show_the_defaults_from_the_rule_table():
    doc = (Path(__file__).parent.parent / "docs" / "alarms.md").read_text(encoding="utf-8")
    assert defaults_table() in doc, "docs/alarms.md: paste the output of defaults_table()"
