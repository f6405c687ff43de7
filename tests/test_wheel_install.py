"""The wheel works outside the repository.

``python -m build`` makes an sdist and, from it, the wheel (so a file the sdist
leaves out is missing from the wheel too); the wheel goes into a fresh
virtualenv in a temporary folder, with its dependencies from the package
index, and every command runs with that folder as its working directory: an
editable install hides package data it forgot (the dashboard's static
files, the unit template, the sample config) because it reads the checkout.
Nothing here imports btms_gateway from the checkout; the installed demo is
checked by independent clients (mbpoll, net-snmp with the MIB the installed
wheel exports, HTTP, headless Chromium).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import demo_endpoints, reading_stdout
from conftest import require_tool, wait_for

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "core/version.py").read_text())[1]  # type: ignore[index]

slow = pytest.mark.slow  # and peer: mbpoll, net-snmp, systemd-analyze, chromium


@dataclass
class Installed:
    venv: Path
    work: Path  # the working directory of every command: outside the checkout
    wheel: Path
    seconds: dict[str, float]

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "btms-gateway"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            cwd=self.work,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return env


def timed(seconds: dict[str, float], name: str, cmd: list[str], cwd: Path, limit: float) -> str:
    started = time.monotonic()
    result = subprocess.run(
        cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=limit
    )
    seconds[name] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, (
        f"{' '.join(cmd)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result.stdout


def copy_of_the_checkout(target: Path) -> Path:
    """The files git tracks (and new ones it does not ignore), as a fresh clone
    would have them: no build/ or *.egg-info of earlier builds, whose file
    lists would otherwise slip package data into the wheel that the
    configuration forgot."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel-install")
    seconds: dict[str, float] = {}
    dist = work / "dist"
    source = copy_of_the_checkout(work / "src")
    build = [sys.executable, "-m", "build", "--outdir", str(dist), str(source)]
    timed(seconds, "build", build, work, 600)
    [wheel] = dist.glob("btms_gateway-*.whl")
    venv = work / "venv"
    timed(seconds, "venv", [sys.executable, "-m", "venv", str(venv)], work, 120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    timed(seconds, "install", [*pip, f"{wheel}[systemd]"], work, 600)
    print(f"\nwheel install timings (s): {seconds}")
    return Installed(venv, work, wheel, seconds)


def test_every_package_folder_is_in_the_wheel() -> None:
    """Packages are listed one by one in pyproject.toml (the folders are mapped
    into btms_gateway): a new one left out would be missing only from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = {
        ".".join((package, *init.parent.relative_to(ROOT / folder).parts))
        for package, folder in mapped.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found == listed


def test_bac0_is_for_the_tests_only() -> None:
    """BAC0 (and its own dependencies) came with every install while only a
    test uses it: it belongs in the test extra, and nothing the wheel ships
    may import it. bacpypes3, which the BACnet plugin is built on, stays."""
    runtime = [re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in PYPROJECT["project"]["dependencies"]]
    assert "bac0" not in runtime and "bacpypes3" in runtime
    assert any(d.startswith("BAC0") for d in PYPROJECT["project"]["optional-dependencies"]["test"])
    shipped = [ROOT / folder for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values()]
    importers = [
        path
        for folder in shipped
        for path in folder.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+BAC0\b", path.read_text(), flags=re.M)
    ]
    assert importers == []


@slow
@pytest.mark.peer
def test_installed_package_comes_from_the_venv_with_one_version(installed: Installed) -> None:
    probe = (
        "import importlib.metadata as m, btms_gateway.core as c, btms_gateway.plugins.web as w;"
        "print(c.__file__); print(w.__file__); print(m.version('btms-gateway'))"
    )
    out = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", probe],
        cwd=installed.work,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    site = str(installed.venv / "lib")
    assert out[0].startswith(site) and out[1].startswith(site), out
    assert out[2] == VERSION
    assert installed.wheel.name.startswith(f"btms_gateway-{VERSION}-")
    version = installed.run("--version")
    assert version.stdout.strip() == f"btms-gateway, version {VERSION}"


@slow
@pytest.mark.peer
def test_every_builtin_plugin_is_listed(installed: Installed) -> None:
    out = installed.run("plugins")
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    builtin = set(PYPROJECT["project"]["entry-points"]["btms_gateway"])
    assert builtin <= set(listed), out.stdout
    for name in builtin:
        assert f"btms-gateway {VERSION}" in listed[name]
    assert "NOT LOADED" not in out.stdout


@slow
@pytest.mark.peer
def test_every_export_runs_and_the_mib_is_the_shipped_one(installed: Installed) -> None:
    listing = installed.run("export", "--help").stdout
    names = re.findall(r"^  ([a-z][a-z-]+)\s", listing.split("Commands:")[1], flags=re.M)
    assert {"mib", "modbus-map", "bmsm-registers", "bacnet-objects", "ede"} <= set(names)
    for name in names:
        out = installed.run("export", name)
        assert out.returncode == 0, f"export {name}: {out.stderr[-2000:]}"
        assert len(out.stdout) > 200, f"export {name} printed almost nothing"
    mib = installed.run("export", "mib").stdout
    assert mib == (ROOT / "docs" / "mib" / "BTMS-GATEWAY-MIB.txt").read_text()


@slow
@pytest.mark.peer
def test_service_unit_from_the_wheel_verifies(installed: Installed) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    root = installed.work / "root"
    out = installed.run("service", "install", "--root", str(root))  # --exec: this venv's script
    assert out.returncode == 0, out.stderr
    unit = root / "etc/systemd/system/btms-gateway.service"
    assert f"ExecStart={installed.command} run -c" in unit.read_text()
    assert (root / "etc/btms-gateway/gateway.toml").is_file()
    check = installed.run("check-config", str(root / "etc/btms-gateway/gateway.toml"))
    assert check.returncode == 0, check.stderr
    verify = subprocess.run(
        [analyze, "verify", str(unit)], cwd=installed.work, capture_output=True, text=True
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


@dataclass
class Demo:
    """The installed demo, running: its process, its output so far, where each plugin listens."""

    proc: subprocess.Popen[str]
    lines: list[str]
    ports: dict[str, int]

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


@pytest.fixture
def demo(installed: Installed) -> Iterator[Demo]:
    """The installed demo on free ports (its defaults may be held on this machine)."""
    with reading_stdout(
        [str(installed.command), "demo", "--free-ports", "--data-dir", str(installed.work / "var")],
        cwd=installed.work,
        env=clean_env(),
    ) as (proc, lines):
        wait_for(lambda: "Ctrl-C stops.\n" in lines or proc.poll() is not None, 90, "the endpoints")
        assert proc.poll() is None, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
        yield Demo(proc, lines, demo_endpoints(lines))


@slow
@pytest.mark.peer
def test_demo_from_the_wheel_serves_every_protocol_and_stops_cleanly(
    installed: Installed, demo: Demo, tmp_path: Path
) -> None:
    proc, lines, web = demo.proc, demo.lines, demo.web
    mbpoll = require_tool("mbpoll", "mbpoll")
    snmpget = require_tool("snmpget", "snmp")
    wait_for(lambda: http_get(web + "/health/ready")[0] == 200, 90, "the demo's web /health/ready")
    wait_for(
        lambda: (
            {"A1", "A2", "B1", "B2"}
            <= {m[1] for m in re.finditer(r"^\S+  (\w+)\s+GOOD ", "".join(lines), flags=re.M)}
        ),
        60,
        "every demo string GOOD",
    )
    # Modbus TCP: string A1's cell count (BM-GW unit 101, address 10 = mbpoll's reference 11)
    modbus = subprocess.run(
        [mbpoll, "-m", "tcp", "-p", str(demo.ports["modbus_tcp"]), "-a", "101", "-r", "11",
         "-c", "1", "-t", "4", "-1", "127.0.0.1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert modbus.returncode == 0, modbus.stdout + modbus.stderr
    assert re.findall(r"^\[11\]:\s+(\d+)", modbus.stdout, flags=re.M) == ["120"], modbus.stdout
    # SNMP with the MIB the installed wheel exports
    mibs = tmp_path / "mibs"
    mibs.mkdir()
    assert installed.run("export", "mib", "-o", str(mibs / "BTMS-GATEWAY-MIB.txt")).returncode == 0
    snmp = subprocess.run(
        [snmpget, "-v2c", "-c", "public", "-M", f"{ROOT / 'tests/mibs'}:{mibs}",
         "-m", "SNMPv2-MIB:BTMS-GATEWAY-MIB", f"127.0.0.1:{demo.ports['snmp']}",
         "BTMS-GATEWAY-MIB::btmsStringCellCount.1", "SNMPv2-MIB::sysDescr.0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert snmp.returncode == 0, snmp.stderr
    assert re.search(r"btmsStringCellCount\.1 = Gauge32: 120\b", snmp.stdout), snmp.stdout
    assert f"btms-gateway {VERSION}" in snmp.stdout
    # the dashboard's files and the API
    for path, marker in (
        ("/", b'id="gw-version"'),
        ("/static/app.js", b"gw-version"),
        ("/static/app.css", b".muted"),
        ("/static/favicon.svg", b"<svg"),
    ):
        status, body = http_get(web + path)
        assert status == 200 and marker in body, f"GET {path}: {status}"
    status, body = http_get(web + "/api/plant")
    assert status == 200
    assert json.loads(body)["gateway"]["version"] == VERSION
    assert http_get(web + "/api/openapi.json")[0] == 200
    assert dashboard_version(web) == f"v{VERSION}"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    assert "Traceback" not in stderr, stderr[-3000:]


def dashboard_version(web: str) -> str:
    """What headless Chromium shows in the dashboard's header as the version."""
    from browser_support import CHROMIUM_FLAGS, TIMEOUT_MS
    from playwright.sync_api import expect, sync_playwright

    chromium = require_tool("chromium", "chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(web + "/")
            shown = page.locator("#gw-version")
            expect(shown).to_have_text(re.compile(r"^v\S+"), timeout=TIMEOUT_MS)
            return shown.inner_text()
        finally:
            browser.close()
