"""check-config: every problem as `FILE: key.path: expected ..., found ...`, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import load_config
from cli_support import check

GOOD = """
[gateway]
poll_interval_s = 1.0

[[buses]]
name = "rs485-1"
port = "{port}"
baudrate = 19200

[[buses]]
name = "converter"
transport = "rtu-over-tcp"
host = "127.0.0.1"
tcp_port = 4001

[[ups]]
name = "UPS-A"

[[strings]]
name = "A1"
bus = "rs485-1"
slave_id = 1
ups = "UPS-A"

[[strings]]
name = "A2"
bus = "converter"
slave_id = 1
ups = "UPS-A"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, create_manager())
    return str(info.value).splitlines()


def test_a_good_file_passes_and_fills_indexes(tmp_path):
    path = write(tmp_path, GOOD.format(port="/dev/null"))
    loaded = load_config(path, create_manager())
    assert [s.index for s in loaded.gateway.strings] == [1, 2]
    assert loaded.gateway.ups[0].index == 1
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "2 string(s)" in result.stdout


def test_wrong_type(tmp_path):
    path = write(
        tmp_path,
        GOOD.format(port="/dev/null").replace("poll_interval_s = 1.0", 'poll_interval_s = "fast"'),
    )
    result = check(path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: gateway.poll_interval_s: expected a valid number, unable to parse string "
        "as a number, found 'fast'"
    )


def test_unknown_key_names_the_likely_typo(tmp_path):
    path = write(
        tmp_path, GOOD.format(port="/dev/null").replace("baudrate = 19200", "baudrat = 19200")
    )
    [line] = problems(path)
    assert line.startswith(f"{path}: buses[0].baudrat: expected one of the known keys [")
    assert "(did you mean 'baudrate'?)" in line
    assert line.endswith("found unknown key 'baudrat'")


def test_missing_section_and_missing_key(tmp_path):
    text = GOOD.format(port="/dev/null")
    text = text[: text.index("[[strings]]")]  # no strings at all
    assert problems(write(tmp_path, text)) == [
        f"{tmp_path / 'gateway.toml'}: strings: expected at least one [[strings]] entry, found none"
    ]
    text = GOOD.format(port="/dev/null").replace(
        'slave_id = 1\nups = "UPS-A"\n\n[[strings]]', 'ups = "UPS-A"\n\n[[strings]]', 1
    )
    [line] = problems(write(tmp_path, text))
    assert line.endswith(
        "strings[0].slave_id: expected a value for this required key, found nothing"
    )


def test_bad_port_path(tmp_path):
    missing = tmp_path / "ttyUSB9"
    [line] = problems(write(tmp_path, GOOD.format(port=missing)))
    assert line == (
        f"{tmp_path / 'gateway.toml'}: buses[0].port: expected an existing serial "
        f"device (or wait_for_port = true), found '{missing}', which does not exist"
    )
    [line] = problems(write(tmp_path, GOOD.format(port="ttyUSB0")))
    assert line.endswith("expected an absolute device path such as /dev/ttyUSB0, found 'ttyUSB0'")


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.format(port="/dev/null").replace("baudrate = 19200", "baudrate = 9601")
    text = text.replace('bus = "converter"', 'bus = "nosuchbus"')
    text += "\n[plugins.nosuch]\nx = 1\n"
    text = text.replace('port = "/dev/null"', 'port = "/dev/ttyNOPE0"')
    lines = problems(write(tmp_path, text))
    # type errors, references, a missing port and unknown sections, all in one pass
    assert any("buses[0].baudrate: expected one of 2400, 4800, 9600" in x for x in lines)
    assert any("strings[1].bus: expected the name of a [[buses]] entry" in x for x in lines)
    assert any("buses[0].port: expected an existing serial device" in x for x in lines)
    assert any("plugins.nosuch: expected a section of an installed plugin" in x for x in lines)
    assert len(lines) == 4


def test_cross_references(tmp_path):
    text = GOOD.format(port="/dev/null").replace(
        'bus = "converter"\nslave_id = 1', 'bus = "rs485-1"\nslave_id = 1'
    )
    text = text.replace('ups = "UPS-A"\n', 'ups = "UPS-B"\n', 1)
    lines = problems(write(tmp_path, text))
    assert any(
        x.endswith("strings[0].ups: expected the name of a [[ups]] entry ['UPS-A'], found 'UPS-B'")
        for x in lines
    )
    assert any(
        x.endswith(
            "strings[1].slave_id: expected a slave id unique on bus 'rs485-1', "
            "found 1 (already string 'A1')"
        )
        for x in lines
    )


def test_transport_fields(tmp_path):
    text = GOOD.format(port="/dev/null").replace('host = "127.0.0.1"\n', "")
    [line] = problems(write(tmp_path, text))
    assert line.endswith(
        "buses[1]: expected an rtu-over-tcp bus needs 'host' and 'tcp_port', "
        "found {'name': 'converter', 'transport': 'rtu-over-tcp', "
        "'tcp_port': 4001}"
    )


def test_secrets_are_never_echoed(tmp_path):
    text = GOOD.format(port="/dev/null") + '\n[gateway_secret]\napi_key = "hunter2"\n'
    result = check(write(tmp_path, text))
    assert result.returncode == 2
    assert "gateway_secret" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_toml_syntax_error_names_the_file(tmp_path):
    result = check(write(tmp_path, "[gateway\n"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{tmp_path / 'gateway.toml'}: (syntax): expected valid TOML")


def test_unreadable_file(tmp_path):
    result = check(tmp_path / "absent.toml")
    assert result.returncode == 2
    assert "absent.toml: (file): expected a readable file" in result.stderr


def test_every_core_key_is_documented():
    from btms_gateway.core.config import BusConfig, GatewaySection, StringConfig, UpsConfig

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for model in (GatewaySection, BusConfig, UpsConfig, StringConfig):
        for key in model.model_fields:
            assert f"`{key}`" in doc, f"{model.__name__}.{key} is not in docs/configuration.md"


def test_the_shipped_example_config_is_valid():
    example = Path(__file__).resolve().parents[1] / "examples" / "gateway.toml"
    loaded = load_config(example, create_manager())
    assert [s.name for s in loaded.gateway.strings] == ["A1", "A2", "B1"]
    assert loaded.enabled_plugins() == {"jsonl", "mqtt"}


def test_typo_inside_a_table_of_tables_is_named_with_a_suggestion(tmp_path):
    text = GOOD.format(port="/dev/null") + '\n[alarms.strings.A1]\nblok = "12V"\n'
    [line] = problems(write(tmp_path, text))
    assert "alarms.strings.A1.blok: expected one of the known keys" in line
    assert "(did you mean 'block'?)" in line


def test_alarm_settings_for_an_unknown_string(tmp_path):
    text = GOOD.format(port="/dev/null") + '\n[alarms.strings.Z9]\nblock = "12V"\n'
    [line] = problems(write(tmp_path, text))
    assert line.endswith(
        "alarms.strings.Z9: expected the name of a [[strings]] entry ['A1', 'A2'], found 'Z9'"
    )
