"""BTMS-GATEWAY-MIB: the shipped file is the generator's output, passes smilint
-l 6 as SMIv2 with no errors, loads in net-snmp, and names exactly the OIDs
the agent serves."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from btms_gateway.core.cli import build_cli
from btms_gateway.core.model import PlantSnapshot, Quality, StringSnapshot
from btms_gateway.kit.testing import make_reading
from btms_gateway.plugins.snmp.image import ServeContext, build_index, name_at, value_at
from btms_gateway.plugins.snmp.mibgen import generate, objects_markdown
from btms_gateway.plugins.snmp.tables import DEFAULT_BASE, object_oids, parse_oid
from click.testing import CliRunner
from conftest import require_tool
from snmp_support import MIB_ARGS, ROOT, TESTS

SHIPPED = ROOT / "docs" / "mib" / "BTMS-GATEWAY-MIB.txt"
ERROR_SEVERITY = re.compile(r": \[([0-9])\] ")


def smilint(path: Path) -> list[str]:
    """smilint -l 6 with the IETF base modules on SMIPATH; returns its lines."""
    tool = require_tool("smilint", "smitools")
    env = dict(os.environ, SMIPATH=str(TESTS / "mibs"))
    r = subprocess.run(
        [tool, "-l", "6", "-s", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    return (r.stdout + r.stderr).splitlines()


def errors(lines: list[str]) -> list[str]:
    """libsmi severities 0..3 are errors, 4..6 warnings and notices."""
    return [ln for ln in lines if (m := ERROR_SEVERITY.search(ln)) and int(m.group(1)) <= 3]


def test_shipped_mib_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == generate(parse_oid(DEFAULT_BASE)), (
        "regenerate with: btms-gateway export mib -o docs/mib/BTMS-GATEWAY-MIB.txt"
    )


def test_docs_object_list_is_generated() -> None:
    doc = (ROOT / "docs" / "snmp.md").read_text()
    start = doc.index("-->\n", doc.index("<!-- objects:begin")) + 4
    assert doc[start : doc.index("<!-- objects:end -->")] == objects_markdown()


def test_export_command_takes_a_base(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(build_cli(), ["export", "mib", "--base", "1.3.6.1.4.1.99999.7"])
    assert out.exit_code == 0, out.output
    assert "::= { enterprises 99999 7 }" in out.output
    target = tmp_path / "BTMS-GATEWAY-MIB.txt"
    out = runner.invoke(build_cli(), ["export", "mib", "-o", str(target)])
    assert out.exit_code == 0 and target.read_text() == SHIPPED.read_text()
    bad = runner.invoke(build_cli(), ["export", "mib", "--base", "1.3.6.1.2.1.99"])
    assert bad.exit_code == 2
    assert "expected an OID under enterprises" in bad.output


@pytest.mark.peer
@pytest.mark.parametrize("base", [DEFAULT_BASE, "1.3.6.1.4.1.99999.7", "1.3.6.1.3.4242"])
def test_smilint_level_6_reports_no_error(base: str, tmp_path: Path) -> None:
    path = tmp_path / "BTMS-GATEWAY-MIB.txt"
    path.write_text(generate(parse_oid(base)))
    lines = smilint(path)
    assert errors(lines) == [], "\n".join(lines)
    # only the implicit nodes of the base OID value may be reported
    assert all("implicit node definition" in ln for ln in lines), "\n".join(lines)
    # and libsmi really read it as SMIv2 (without the IETF base modules it
    # falls back to SMIv1 and reports nothing at all)
    env = dict(os.environ, SMIPATH=f"{TESTS / 'mibs'}:{tmp_path}")
    query = require_tool("smiquery", "smitools")
    info = subprocess.run(
        [query, "module", "BTMS-GATEWAY-MIB"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "Language: SMIv2" in info.stdout, info.stdout + info.stderr


@pytest.mark.peer
def test_smilint_check_can_fail(tmp_path: Path) -> None:
    """Negative control: the same check reports a broken module."""
    broken = generate(parse_oid(DEFAULT_BASE)).replace("Gauge32, ", "", 1)
    broken = broken.replace("{ btmsGateway 2 }", "{ btmsGatewayy 2 }")
    path = tmp_path / "BTMS-GATEWAY-MIB.txt"
    path.write_text(broken)
    found = errors(smilint(path))
    assert any("Gauge32" in e for e in found), found
    assert any("btmsGatewayy" in e for e in found), found


@pytest.mark.peer
def test_net_snmp_resolves_every_name_to_the_agents_oid() -> None:
    tool = require_tool("snmptranslate", "snmp")
    oids = object_oids(parse_oid(DEFAULT_BASE))
    names = sorted(oids)
    r = subprocess.run(
        [tool, *MIB_ARGS, "-On", *(f"BTMS-GATEWAY-MIB::{n}" for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    got = r.stdout.split()
    assert got == ["." + ".".join(map(str, oids[n])) for n in names]
    detail = subprocess.run(
        [tool, *MIB_ARGS, "-Td", "BTMS-GATEWAY-MIB::btmsCellVoltage"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert 'DISPLAY-HINT\t"d-3"' in detail and 'UNITS\t\t"V"' in detail


def test_index_is_sorted_and_refresh_swaps_values_only() -> None:
    strings = {
        f"S{i}": StringSnapshot(
            f"S{i}", i, "UPS1", 1, i, "bus1", Quality.GOOD, make_reading(120), 0.0
        )
        for i in range(1, 33)
    }
    ctx = ServeContext(
        plant=PlantSnapshot(strings=strings, ups={}),
        gateway_name="gw",
        version="0",
        uptime_s=lambda: 1.0,
        counters=lambda name: None,
    )
    base = parse_oid(DEFAULT_BASE)
    index = build_index(base, ctx)  # raises if the OIDs were not ascending
    names = [name_at(index, pos) for pos in range(index.size)]
    assert names == sorted(names) and len(set(names)) == len(names)
    cells = [o for o in names if o[len(base) + 1] == 4]
    assert len(cells) == 32 * 120 * 7
    voltage = names.index((*object_oids(base)["btmsCellVoltage"], 5, 9))
    assert int(value_at(index, voltage, ctx)) == 2259
    new = dict(strings, S5=StringSnapshot("S5", 5, "UPS1", 1, 5, "bus1", Quality.GOOD,
                                          make_reading(120, cell_voltage_v=2.0), 0.0))  # fmt: skip
    ctx.plant = PlantSnapshot(strings=new, ups={})
    assert int(value_at(index, voltage, ctx)) == 2009  # same index, new value
