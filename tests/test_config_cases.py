"""Files `check-config` used to pass that `run` then could not run, through the real CLI.

Each case is checked twice, as an integrator meets it: ``check-config FILE``
and ``run -c FILE`` both exit 2 with the problem as ``FILE: key.path:
expected ..., found ...`` and no traceback. A port another process holds is
a start-up failure: one error line naming the plugin, the address and the
cause, exit 1, the traceback only at --log-level DEBUG.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import CLI

HEAD = """
[gateway]
data_dir = "{tmp}/var"
{gateway}
[[buses]]
name = "a"
port = "{tmp}/ttyA"
wait_for_port = true
{buses}
[[ups]]
name = "U1"
[[strings]]
name = "S1"
bus = "a"
slave_id = 1
ups = "U1"
{rest}
"""


def config(tmp: Path, gateway: str = "", buses: str = "", rest: str = "") -> str:
    return HEAD.format(tmp=tmp, gateway=gateway, buses=buses, rest=rest)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


ONE_LINE = "a line no other bus opens (strings on one RS485 line go on one [[buses]] entry)"


@pytest.fixture
def case_file(tmp_path: Path) -> Iterator[Callable[[str | bytes], Path]]:
    def write(content: str | bytes) -> Path:
        path = tmp_path / "gw.toml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    yield write


def assert_config_error(path: Path, expected: str) -> None:
    """Both commands, side by side (each process spends a second or two importing)."""
    commands = (["check-config", str(path)], ["run", "-c", str(path)])
    procs = [
        subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, out, err)
        assert err.splitlines() == [f"{path}: {expected}"], (args, err)


@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_two_buses_on_one_serial_device(tmp_path: Path, case_file: Any) -> None:
    """The second bus names the device through a by-id style symlink."""
    (tmp_path / "by-id").symlink_to(tmp_path / "ttyA")
    second = f'[[buses]]\nname = "b"\nport = "{tmp_path}/by-id"\nwait_for_port = true'
    expected = (
        f"buses[1].port: expected {ONE_LINE}, found '{tmp_path}/by-id', which bus 'a' opens too"
    )
    assert_config_error(case_file(config(tmp_path, buses=second)), expected)


def test_two_buses_on_one_converter_port(tmp_path: Path, case_file: Any) -> None:
    tcp = 'transport = "rtu-over-tcp"\nhost = "10.0.0.5"\ntcp_port = 4001'
    buses = f'[[buses]]\nname = "c"\n{tcp}\n[[buses]]\nname = "d"\n{tcp}'
    expected = f"buses[2].host: expected {ONE_LINE}, found 10.0.0.5:4001, which bus 'c' opens too"
    assert_config_error(case_file(config(tmp_path, buses=buses)), expected)


@pytest.mark.parametrize(
    ("section", "where", "key", "value"),
    [
        ("gateway", "", "gateway.stale_after_s", "inf"),
        ("rest", "[alarms]", "alarms.retention_days", "inf"),
        ("rest", "[alarms.rules.string_soc_low]", "alarms.rules.string_soc_low.limit", "nan"),
        ("rest", "[plugins.modbus_tcp]", "plugins.modbus_tcp.idle_timeout_s", "-inf"),
    ],
)
@pytest.mark.slow  # ~3 s on a shared 2-core box
def test_a_number_that_is_not_finite(
    tmp_path: Path, case_file: Any, section: str, where: str, key: str, value: str
) -> None:
    """TOML's inf and nan, in the core, a table of tables and a plugin's section."""
    text = f"{where}\n{key.rsplit('.', 1)[1]} = {value}"
    path = case_file(config(tmp_path, **{section: text}))
    assert_config_error(path, f"{key}: expected a finite number, found {value}")


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_a_ups_and_a_string_of_one_name_with_bacnet(tmp_path: Path, case_file: Any) -> None:
    path = case_file(config(tmp_path, rest='[[ups]]\nname = "S1"\n[plugins.bacnet]\n'))
    assert_config_error(
        path,
        "strings[0].name: expected a name no UPS has while BACnet is on (object names such "
        "as 'S1.voltage' are built from both), found 'S1', the name of ups[1] too",
    )


@pytest.mark.slow  # ~6 s on a shared 2-core box
def test_names_too_long_for_snmp(tmp_path: Path, case_file: Any) -> None:
    name = f'name = "{"g" * 256}"'
    path = case_file(config(tmp_path, gateway=name, rest="[plugins.snmp]\nport = 0"))
    assert_config_error(
        path,
        "gateway.name: expected a name of at most 255 octets while SNMP is on (it is served "
        "as btmsGwName and sysName, DisplayStrings), found 256 octets",
    )
    location = f'sys_location = "{"é" * 150}"'  # 150 characters, 300 octets
    path = case_file(config(tmp_path, rest=f"[plugins.snmp]\nport = 0\n{location}"))
    assert_config_error(
        path,
        "plugins.snmp.sys_location: expected at most 255 octets (an SNMP DisplayString), found 300",
    )


def test_the_plugin_checks_hold_only_while_the_plugin_is_on(
    tmp_path: Path, case_file: Callable[[str | bytes], Path]
) -> None:
    off = '[[ups]]\nname = "S1"\n[plugins.bacnet]\nenabled = false\n[plugins.snmp]\nenabled = false'
    path = case_file(config(tmp_path, gateway=f'name = "{"g" * 256}"', rest=off))
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK:")


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "found NUL bytes: a binary or UTF-16 file"),
        ("[gateway]\n".encode("utf-16"), "found NUL bytes: a binary or UTF-16 file"),
        ('[gateway]\nname = "B\xe4rbel"\n'.encode("latin-1"), "found a byte that is not UTF-8 "
         "at offset 19 (0xe4): not UTF-8 text"),
    ],
    ids=["binary", "utf-16", "latin-1"],
)  # fmt: skip
@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_a_file_that_is_not_utf8_text_is_named(
    case_file: Callable[[str | bytes], Path], content: bytes, found: str
) -> None:
    path = case_file(content)
    assert_config_error(path, f"(file): expected UTF-8 text, {found}; save it as UTF-8 text (TOML)")


def test_a_utf8_byte_order_mark_is_accepted(
    tmp_path: Path, case_file: Callable[[str | bytes], Path]
) -> None:
    path = case_file(b"\xef\xbb\xbf" + config(tmp_path).encode())
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_a_taken_port_is_one_error_line_and_exit_1(
    tmp_path: Path, case_file: Callable[[str | bytes], Path], taken_port: int
) -> None:
    path = case_file(config(tmp_path, rest=f"[plugins.modbus_tcp]\nport = {taken_port}"))
    result = cli("run", "-c", str(path))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(
        f"btms_gateway: plugin 'modbus_tcp' failed to start: cannot listen on "
        f"127.0.0.1:{taken_port}: [Errno 98] error while attempting to bind on address "
        f"('127.0.0.1', {taken_port}): address already in use"
    ), errors
    assert "Traceback" not in result.stderr
    assert "isolating it" not in result.stderr and "WARNING" not in result.stderr
    debug = cli("--log-level", "DEBUG", "run", "-c", str(path))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr  # the detail is there for who asks for it
