"""[plugins.snmp] validation, and secrets that never show: not in check-config
output, not in reprs, not in the log of a running agent sending notifications."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.cli import build_cli
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.snmp import plugin
from btms_gateway.plugins.snmp.settings import SnmpSettings
from click.testing import CliRunner
from pydantic import ValidationError
from snmp_support import AUTH_KEY, COMMUNITY, OLD_AUTH, OLD_PRIV, PRIV_KEY, free_udp_port
from snmp_support import snmp_settings as base_settings

SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY, OLD_AUTH, OLD_PRIV)

CONFIG = """
[gateway]
name = "gw"

[[buses]]
name = "bus1"
port = "/dev/null-placeholder"
wait_for_port = true

[[strings]]
name = "S1"
bus = "bus1"
slave_id = 1

[plugins.snmp]
community = "{community}"
port = {port}
users = [{{ name = "noc", auth_key = "{auth}", priv_key = "{priv}" }}]
receivers = [{{ name = "noc", version = "v3", user = "{user}" }}]
"""


def check_config(tmp_path: Path, **values: object) -> str:
    fields = {"community": COMMUNITY, "port": 1161, "auth": AUTH_KEY, "priv": PRIV_KEY}
    fields.update({"user": "noc"}, **values)
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(**fields))
    result = CliRunner().invoke(build_cli(), ["check-config", str(path)])
    return result.output


def test_check_config_names_bad_keys_without_echoing_secrets(tmp_path: Path) -> None:
    out = check_config(tmp_path, port=70000, auth="tiny7", user="nobody")
    assert "plugins.snmp.port: expected less than or equal to 65535, found 70000" in out
    assert "plugins.snmp.users[0].auth_key: expected a pass phrase of at least 8" in out
    assert "found ***" in out and "tiny7" not in out
    for secret in SECRETS:
        assert secret not in out
    out = check_config(tmp_path, user="nobody")
    assert "`user` naming one of the users ['noc']" in out and "found 'nobody'" in out
    assert not any(secret in out for secret in SECRETS)


def test_valid_check_config_output_holds_no_secret(tmp_path: Path) -> None:
    out = check_config(tmp_path)
    assert "plugins.snmp" not in out  # no complaint about our section
    assert not any(secret in out for secret in SECRETS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"enterprise_base": "1.3.6.1.2.1.1"}, "expected an OID under enterprises"),
        ({"enterprise_base": "1.3.x"}, "expected a dotted numeric OID"),
        ({"allowed_managers": ["10.0.0.0/33"]}, "10.0.0.0/33"),
        ({"engine_id": "0102"}, "expected 5..32 octets"),
        ({"users": [{"name": "u", "auth_key": "12345678", "priv_key": "1234567"}]}, "8 char"),
        ({"receivers": [{"name": "r", "version": "v3"}]}, "`user` naming one of"),
        ({"community": None, "receivers": [{"name": "r"}]}, "a community for v2c"),
        ({"bogus": 1}, "bogus"),
        ({"max_response_bytes": 600}, "greater than or equal to 1024"),
        ({"max_response_bytes": 70000}, "less than or equal to 65507"),
        ({"rate_limit_per_s": -1}, "greater than or equal to 0"),
        ({"rate_limit_burst": 0}, "greater than or equal to 1"),
    ],
)
def test_settings_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SnmpSettings(**values)


def test_settings_repr_hides_secrets() -> None:
    settings = SnmpSettings(**base_settings())
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert not any(secret in text for secret in SECRETS)


async def test_running_agent_never_logs_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dead = free_udp_port()
    receivers = [
        {"name": "v3", "port": dead, "version": "v3", "user": "noc", "kind": "inform",
         "timeout_s": 0.2, "retries": 0},
        {"name": "v2c", "port": dead, "kind": "inform", "timeout_s": 0.2, "retries": 0},
    ]  # fmt: skip
    config = plant_config(strings=1, ups=1, plugins={"snmp": base_settings(receivers=receivers)})
    async with GatewayHarness(config) as h:
        h.gateway.emit(
            AlarmEvent(1, EventKind.RAISED, "x:S1", "x", Severity.WARNING, ObjectPath(None, "S1"),
                       None, None, "", "test", time.time())
        )  # fmt: skip
        await h.wait_until(lambda: plugin.current().stats.informs_failed >= 4, what="failures")
    assert "inform to receiver 'v3' failed" in caplog.text
    assert not any(secret in caplog.text for secret in SECRETS)
