"""The docs say what the code does: one definition of STALE (from the first
failed poll), one name for each alarm-word bit, hook docstrings whose
attribute paths exist, REST examples that run against the demo, and no
citation of a document users do not have."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from btms_gateway.core import hookspecs
from btms_gateway.core.demo_plant import PLANT, UPS_OF
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp.map import point
from btms_gateway.plugins.snmp.conventions import TCS
from btms_gateway.protocols.bmsm.registers import STRING_BLOCK

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "docs/mib/BTMS-GATEWAY-MIB.txt"]
SHIPPED = [
    path
    for folder in ("core", "protocols", "plugins", "kit", "examples")
    for path in (ROOT / folder).rglob("*.py")
    if "build" not in path.parts
]


def test_no_citation_of_documents_outside_the_repository() -> None:
    cited = re.compile(r"DEVICE\.md|DESIGN\.md|design card|DESIGN card")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*DOCS, ROOT / "README.md", *SHIPPED]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    assert found == []
    assert (ROOT / "docs/device.md").is_file()


def test_stale_is_defined_by_the_first_failed_poll_everywhere() -> None:
    """The engine marks a string STALE at its first failed poll; the guide,
    the MIB and the BACnet page used to say "older than the stale limit"."""
    wrong = [
        str(path.relative_to(ROOT))
        for path in [*DOCS, *SHIPPED]
        if "stale limit" in path.read_text(encoding="utf-8")
    ]
    assert wrong == []
    quality = next(tc for tc in TCS if tc.name == "BtmsQuality")
    assert "first failure" in quality.description
    guide = (ROOT / "docs/modbus-scada-guide.md").read_text()
    assert "STALE (the last\npoll failed, from the first failure on" in guide


def test_alarm_word_bit_1_has_one_name() -> None:
    device = next(r for r in STRING_BLOCK if r.field == "alarms").meaning
    modbus = point("string_alarm_word").description
    for text in (device, modbus):
        assert "b0 current high (charge), b1 current high (discharge)," in text, text
    everywhere = [p for p in [*DOCS, *SHIPPED] if "current low" in p.read_text(encoding="utf-8")]
    assert everywhere == [ROOT / "docs/device.md"]  # which quotes the datasheet, once


def test_hook_docstrings_name_attributes_a_gateway_has(tmp_path: Path) -> None:
    doc = inspect.getdoc(hookspecs.shutdown) or ""
    paths = re.findall(r"``(gateway(?:\.\w+)+)``", doc)
    assert paths
    gateway = GatewayHarness(plant_config(1, 1, data_dir=str(tmp_path))).gateway
    for path in paths:
        value: object = gateway
        for name in path.split(".")[1:]:
            value = getattr(value, name)
        assert isinstance(value, float), path
    reading = inspect.getdoc(hookspecs.string_reading) or ""
    assert "a task on the gateway's event loop" in reading


def test_rest_examples_use_the_demos_strings() -> None:
    web = (ROOT / "docs/web.md").read_text()
    examples = "\n".join(re.findall(r"```sh\n(.*?)```", web, flags=re.S))
    named = set(re.findall(r"/api/strings/([\w.-]+)", examples))
    named |= set(re.findall(r"[?&]string=([\w.-]+)", examples))
    named |= set(re.findall(r"/api/alarms/\w+:([\w.-]+):\d+/", examples))
    assert named and named <= set(UPS_OF), named
    assert {name for *_, strings in PLANT for name, *_ in strings} == set(UPS_OF)
