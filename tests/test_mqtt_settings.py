"""The MQTT plugin's settings: errors that name the key and never echo a
secret, check-config, and the demo running the plugin only with a broker."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.demo_plant import demo_config
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import validate_config
from btms_gateway.kit.testing import plant_config
from btms_gateway.plugins.mqtt.settings import MqttSettings

DEADBANDS = MqttSettings().deadbands()


# -- settings ----------------------------------------------------------------------------
def validate(section: dict[str, Any], strings: int = 1) -> Any:
    return validate_config(plant_config(strings, 1, plugins={"mqtt": section}), "<t>", PM)


PM = create_manager()


def test_settings_errors_name_the_key_and_never_echo_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        validate({"host": "broker.example", "username": "u", "password": "hunter2-secret"})
    text = str(exc.value)
    assert "plugins.mqtt" in text and "tls" in text and "hunter2" not in text
    with pytest.raises(ConfigError) as exc:
        validate({"password": 12345678, "username": "u"})
    assert "12345678" not in str(exc.value) and "plugins.mqtt.password" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        validate({"sparkplug": {"alarms_device": "S1"}})
    assert "alarms_device" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        validate({"tls": {"ca_file": str(tmp_path / "nope.pem")}})
    assert "ca_file" in str(exc.value) and "does not exist" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        validate({"mode": ["json", "json"]})
    assert "each mode once" in str(exc.value)
    ok = validate({"host": "localhost", "username": "u", "password": "hunter2-secret"})
    settings = ok.plugin("mqtt")
    assert "hunter2" not in repr(settings) and settings.tls is None
    assert settings.password.get_secret_value() == "hunter2-secret"
    plain = validate({"host": "10.1.2.3", "username": "u", "password": "pw-secret-1",
                      "allow_plaintext_password": True})  # fmt: skip
    assert plain.plugin("mqtt").allow_plaintext_password


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_check_config_shows_no_secret(tmp_path: Path) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text(
        f'[gateway]\ndata_dir = "{tmp_path}"\n[[buses]]\nname = "b"\nport = "/dev/null"\n'
        '[[strings]]\nname = "A1"\nbus = "b"\nslave_id = 1\n'
        '[plugins.mqtt]\nhost = "192.0.2.1"\nusername = "u"\npassword = "hunter2-secret"\n'
        "[plugins.mqtt.tls]\ninsecure = true\n"
    )
    exe = Path(sys.executable).parent / "btms-gateway"
    out = subprocess.run([exe, "check-config", str(toml)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "mqtt" in out.stdout and "hunter2" not in out.stdout + out.stderr


def test_demo_runs_the_plugin_only_when_a_broker_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*a: Any, **k: Any) -> Any:
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", refused)
    left_out: dict[str, str] = {}
    plugins = demo_config([], "/tmp/x", PM, left_out)["plugins"]
    assert "mqtt" not in plugins and "127.0.0.1:1883" in left_out["mqtt"]

    class Answered:
        def __enter__(self) -> Answered:
            return self

        def __exit__(self, *a: Any) -> None:
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: Answered())
    plugins = demo_config([], "/tmp/x", PM, {})["plugins"]
    assert plugins["mqtt"] == {"mode": ["sparkplug", "json"]}
