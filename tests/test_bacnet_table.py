"""The BACnet object table, its settings, the EDE export and the generated docs
(no network: the served device is checked in test_bacnet_device.py)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest
from btms_gateway.core.cli import build_cli
from btms_gateway.plugins.bacnet.ede import COLUMNS, ede_lines, state_text_lines, state_text_table
from btms_gateway.plugins.bacnet.listing import objects_csv, objects_markdown
from btms_gateway.plugins.bacnet.objects import (
    CELL_QUANTITIES,
    UNITS,
    Layout,
    TableError,
    build_points,
)
from btms_gateway.plugins.bacnet.settings import BacnetSettings
from click.testing import CliRunner
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
FULL = Layout(
    ups=tuple((f"UPS{u}", u) for u in range(1, 33)),
    strings=tuple((f"S{s}", s, f"UPS{s}") for s in range(1, 33)),
)


def test_full_plant_has_19200_cell_objects_with_unique_names_and_ids() -> None:
    points = build_points(FULL)
    cells = [p for p in points if p.scope == "cell"]
    assert len(cells) == 32 * 120 * len(CELL_QUANTITIES) == 19_200
    assert len({p.name for p in points}) == len(points)
    assert len({p.oid for p in points}) == len(points)
    assert all(0 <= p.instance <= 4_194_302 for p in points)


def test_every_analog_object_has_units_and_a_cov_increment() -> None:
    """Its unit is the table's in BACnet's engineering units: noUnits only for a count."""
    for p in build_points(FULL, cells="summary"):
        if p.kind == "analogInput":
            assert p.quantity is not None
            assert p.quantity.units == UNITS[p.quantity.unit_text], p.name
            assert (p.quantity.units == "noUnits") == (p.quantity.unit_text == ""), p.name
            assert p.quantity.cov_increment and p.quantity.cov_increment > 0, p.name


def test_instances_are_stable_when_the_cell_scope_changes() -> None:
    everything = {p.name: p.oid for p in build_points(FULL)}
    only_s3 = {p.name: p.oid for p in build_points(FULL, cells=["S3"])}
    assert all(everything[name] == oid for name, oid in only_s3.items())
    assert {p.string for p in build_points(FULL, cells=["S3"]) if p.scope == "cell"} == {"S3"}
    assert everything["S3.cell117.temperature"] == ("analogInput", 1_031_172)


def test_summary_mode_gives_min_max_mean_per_cell_quantity() -> None:
    points = build_points(FULL, cells="summary")
    per_string = Counter(p.string for p in points if p.scope == "summary")
    assert set(per_string.values()) == {len(CELL_QUANTITIES) * 3}
    assert not [p for p in points if p.scope == "cell"]
    names = {p.name for p in points}
    assert {"S1.cells.voltage.min", "S1.cells.voltage.max", "S1.cells.voltage.mean"} <= names


def test_structured_views_group_ups_string_cell() -> None:
    points = build_points(FULL)
    by_oid = {p.oid: p for p in points}
    root = by_oid[("structuredView", 1)]
    ups1 = by_oid[root.children[0]]
    assert ups1.name == "UPS1"
    string_view = by_oid[ups1.children[-1]]
    assert string_view.name == "S1"
    cell_view = by_oid[string_view.children[-1]]
    assert cell_view.name == "S1.cell120"
    assert [by_oid[c].name for c in cell_view.children] == [
        f"S1.cell120.{q.key}" for q in CELL_QUANTITIES
    ]
    # every served value object is reachable from the root view
    reachable, todo = set(), [root.oid]
    while todo:
        oid = todo.pop()
        reachable.add(oid)
        todo.extend(by_oid[oid].children)
    assert {p.oid for p in points} == reachable


def test_unknown_cell_string_and_name_clash_are_clear_errors() -> None:
    with pytest.raises(TableError, match=r"plugins.bacnet.cells: .*\['S99'\]"):
        build_points(FULL, cells=["S1", "S99"])
    clash = Layout(ups=(("A", 1),), strings=(("A", 1, "A"),))
    with pytest.raises(TableError, match="UPS and string names"):
        build_points(clash)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0", "explicit interface"),
        ("my-host", "IPv4 address to bind"),
        ("10.0.0.1/40", "IPv4 address to bind"),
        ("10.0.0.1:70000", "IPv4 address to bind"),
    ],
)
def test_bad_bind_address_is_refused(address: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BacnetSettings(address=address)


def test_settings_forbid_unknown_keys_and_bad_cells() -> None:
    with pytest.raises(ValidationError):
        BacnetSettings(device_instanse=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BacnetSettings(cells="some")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="without repeats"):
        BacnetSettings(cells=["S1", "S1"])
    with pytest.raises(ValidationError):
        BacnetSettings(device_instance=4_194_303)


def _parse_ede(lines: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    header: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for line in lines:
        if line.startswith("# keyname"):
            columns = line[2:].split(";")
        elif line.startswith("#"):
            continue
        elif not columns:
            key, _, value = line.partition(";")
            header[key] = value
        else:
            fields = line.split(";")
            assert len(fields) == len(columns), line
            rows.append(dict(zip(columns, fields, strict=True)))
    return header, rows


def test_ede_has_the_header_keys_mandatory_columns_and_one_row_per_object() -> None:
    settings = BacnetSettings(device_instance=1234, device_name="plant-gw")
    points = build_points(FULL, cells=["S1"])
    lines = ede_lines(settings, points)
    assert lines[0].startswith("# Engineering-Data-Exchange")
    header, rows = _parse_ede(lines)
    for key in (
        "PROJECT_NAME",
        "VERSION_OF_REFERENCEFILE",
        "TIMESTAMP_OF_LAST_CHANGE",
        "AUTHOR_OF_LAST_CHANGE",
        "VERSION_OF_LAYOUT",
    ):
        assert header[key], key
    assert header["VERSION_OF_LAYOUT"] == "2.3"
    assert len(COLUMNS) == 16
    assert len(rows) == len(points) + 2  # + device and network port
    for row in rows:  # mandatory columns filled in
        for col in COLUMNS[:5]:
            assert row[col], (col, row)
        assert row["device obj.-instance"] == "1234"
        assert row["settable"] == "N"
    volts = next(r for r in rows if r["object-name"] == "S1.cell001.voltage")
    assert (volts["object-type"], volts["object-instance"], volts["unit-code"]) == (
        "0",
        "1010010",
        "5",
    )
    assert volts["supports COV"] == "Y"


def test_ede_state_text_references_resolve() -> None:
    points = build_points(FULL, cells="none")
    _, rows = _parse_ede(ede_lines(BacnetSettings(), points))
    texts = {line.split(";")[0]: line.split(";")[1:] for line in state_text_lines(points)[2:]}
    state = next(r for r in rows if r["object-name"] == "S1.state")
    assert texts[state["state-text-reference"]][:3] == [
        "float charge",
        "equalize charge",
        "discharge",
    ]
    relay = next(r for r in rows if r["object-name"] == "S1.relay")
    assert texts[relay["state-text-reference"]] == ["open", "closed"]


def test_committed_object_docs_equal_the_generated_table() -> None:
    committed = (ROOT / "docs" / "bacnet-objects.md").read_text(encoding="utf-8")
    assert committed == objects_markdown(), (
        "docs/bacnet-objects.md is stale: run "
        "`btms-gateway export bacnet-objects --format md -o docs/bacnet-objects.md`"
    )


def test_export_commands_print_from_the_same_table(tmp_path: Path) -> None:
    runner = CliRunner()
    cli = build_cli()
    md = runner.invoke(cli, ["export", "bacnet-objects", "--format", "md"])
    assert md.exit_code == 0, md.output
    assert md.output == objects_markdown()
    rows = list(
        csv.DictReader(
            io.StringIO(runner.invoke(cli, ["export", "bacnet-objects", "--format", "csv"]).output)
        )
    )
    assert len(rows) == len(build_points(Layout((("UPS1", 1),), (("S1", 1, "UPS1"),))))
    ede = runner.invoke(cli, ["export", "ede", "--state-texts", str(tmp_path / "st.csv")])
    assert ede.exit_code == 0, ede.output
    assert "VERSION_OF_LAYOUT;2.3" in ede.output
    assert (tmp_path / "st.csv").read_text().startswith("# Engineering-Data-Exchange")
    assert objects_csv([]).startswith("object_type,instance,object_name")


def test_cells_names_are_checked_against_the_strings_when_the_loader_gives_them() -> None:
    class Gateway:
        strings = [type("S", (), {"name": "S1"})()]

    ok = BacnetSettings.model_validate({"cells": ["S1"]}, context={"gateway": Gateway()})
    assert ok.cells == ["S1"]
    with pytest.raises(ValidationError, match=r"configured string names \['S1'\], found \['S7'\]"):
        BacnetSettings.model_validate({"cells": ["S1", "S7"]}, context={"gateway": Gateway()})


def test_a_string_named_like_the_plant_view_is_refused() -> None:
    layout = Layout(ups=(("UPS1", 1),), strings=(("plant", 1, "UPS1"),))
    with pytest.raises(TableError, match=r"unique.*\['plant'\]"):
        build_points(layout)
    assert build_points(layout, structured_views=False)


def test_added_objects_never_renumber_the_first_releases_state_texts() -> None:
    """The EDE numbers state texts by first use; the objects the quantity table
    added (UPS status and quality come first in browse order) are numbered after
    the first release's, so a front end's imported references stay valid."""
    refs = state_text_table(build_points(FULL))
    first = [
        ("float charge", "equalize charge", "discharge", "idle", "abnormal", "unknown"),
        ("open", "closed"),
        ("off", "on"),
        ("normal", "alarm"),
        ("normal", "failing"),
    ]
    assert list(refs)[: len(first)] == first
    assert list(refs.values()) == list(range(1, len(refs) + 1))
    assert ("disabled", "ok", "error") in refs and ("good", "stale", "offline") in refs


def test_every_alarm_rule_marks_objects_or_is_said_not_to() -> None:
    """A rule added to the alarm engine shows on the objects it concerns
    (event state, in-alarm flag), or is listed as shown another way: the
    thermal and median rules of the battery analytics showed nowhere."""
    from btms_gateway.core.alarms.rules import RULES
    from btms_gateway.plugins.bacnet.objects import ALARM_TARGETS, NOT_SHOWN

    assert set(RULES) == set(ALARM_TARGETS) | NOT_SHOWN
    assert not set(ALARM_TARGETS) & NOT_SHOWN
    for rule, (scope, _keys) in ALARM_TARGETS.items():
        assert scope == RULES[rule].scope, rule
