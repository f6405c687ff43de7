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
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "btms_gateway.core"]

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


def _two_serial_buses(tmp: Path) -> str:
    """The second bus names the same device through a by-id style symlink."""
    (tmp / "by-id").symlink_to(tmp / "ttyA")
    return config(tmp, buses=f'[[buses]]\nname = "b"\nport = "{tmp}/by-id"\nwait_for_port = true')


def _two_converter_buses(tmp: Path) -> str:
    tcp = 'transport = "rtu-over-tcp"\nhost = "10.0.0.5"\ntcp_port = 4001'
    return config(tmp, buses=f'[[buses]]\nname = "c"\n{tcp}\n[[buses]]\nname = "d"\n{tcp}')


# (id, file text from the test's directory, what the one problem line says)
CASES: list[tuple[str, Callable[[Path], str], str]] = [
    (
        "serial port twice",
        _two_serial_buses,
        "buses[1].port: expected a line no other bus opens (strings on one RS485 line go on "
        "one [[buses]] entry), found '{tmp}/by-id', which bus 'a' opens too",
    ),
    (
        "converter twice",
        _two_converter_buses,
        "buses[2].host: expected a line no other bus opens (strings on one RS485 line go on "
        "one [[buses]] entry), found 10.0.0.5:4001, which bus 'c' opens too",
    ),
    (
        "stale_after_s inf",
        lambda tmp: config(tmp, gateway="stale_after_s = inf"),
        "gateway.stale_after_s: expected a finite number, found inf",
    ),
    (
        "inf in an alarm setting",
        lambda tmp: config(tmp, rest="[alarms]\nretention_days = inf"),
        "alarms.retention_days: expected a finite number, found inf",
    ),
    (
        "nan in a table of tables",
        lambda tmp: config(tmp, rest="[alarms.rules.string_soc_low]\nlimit = nan"),
        "alarms.rules.string_soc_low.limit: expected a finite number, found nan",
    ),
    (
        "-inf in a plugin setting",
        lambda tmp: config(tmp, rest="[plugins.modbus_tcp]\nport = 0\nidle_timeout_s = -inf"),
        "plugins.modbus_tcp.idle_timeout_s: expected a finite number, found -inf",
    ),
    (
        "UPS and string of one name with BACnet",
        lambda tmp: config(tmp, rest='[[ups]]\nname = "S1"\n[plugins.bacnet]\n'),
        "strings[0].name: expected a name no UPS has while BACnet is on (object names such "
        "as 'S1.voltage' are built from both), found 'S1', the name of ups[1] too",
    ),
    (
        "gateway name of 256 octets with SNMP",
        lambda tmp: config(tmp, gateway=f'name = "{"g" * 256}"', rest="[plugins.snmp]\nport = 0"),
        "gateway.name: expected a name of at most 255 octets while SNMP is on (it is served "
        "as btmsGwName and sysName, DisplayStrings), found 256 octets",
    ),
    (
        "sysLocation of 300 octets",
        lambda tmp: config(tmp, rest=f'[plugins.snmp]\nport = 0\nsys_location = "{"é" * 150}"'),
        "plugins.snmp.sys_location: expected at most 255 octets (an SNMP DisplayString), found 300",
    ),
]


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


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_config_and_run_report_it(
    tmp_path: Path, case_file: Callable[[str | bytes], Path], make: Any, expected: str
) -> None:
    path = case_file(make(tmp_path))
    assert_config_error(path, expected.format(tmp=tmp_path))


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
