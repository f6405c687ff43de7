"""EDE export: the BIG-EU "Engineering Data Exchange" files for BACnet (layout 2.3).

An EDE file is ';'-separated text: a header of key;value lines
(PROJECT_NAME, VERSION_OF_REFERENCEFILE, TIMESTAMP_OF_LAST_CHANGE,
AUTHOR_OF_LAST_CHANGE, VERSION_OF_LAYOUT), a comment line marking the five
mandatory and eleven optional columns, a comment line naming them, then one
row per object. Binary and multi-state objects point at a row of the
companion state-texts file through ``state-text-reference``; unit codes are
the BACnet engineering-units enumeration. Rows come from the same table
(objects.py) the device serves, plus the device and network-port objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from bacpypes3.basetypes import EngineeringUnits
from bacpypes3.primitivedata import ObjectType
from btms_gateway.core.api import __version__

from .objects import Point, Quantity
from .settings import BacnetSettings

LAYOUT_VERSION = "2.3"
COLUMNS = (
    "keyname",
    "device obj.-instance",
    "object-name",
    "object-type",
    "object-instance",
    "description",
    "present-value-default",
    "min-present-value",
    "max-present-value",
    "settable",
    "supports COV",
    "hi-limit",
    "low-limit",
    "state-text-reference",
    "unit-code",
    "vendor-specific-address",
)
MANDATORY = 5
NETWORK_PORT_INSTANCE = 1
COV_KINDS = {"analogInput", "binaryInput", "multiStateInput"}


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:g}"


def state_text_table(points: Iterable[Point]) -> dict[tuple[str, ...], int]:
    """Distinct state-text tuples, numbered from 1 in first-use order: the first
    release's objects first, then those added later (``Quantity.later``), so an
    added object never renumbers the references of the others."""
    refs: dict[tuple[str, ...], int] = {}
    for p in sorted(points, key=lambda p: p.quantity is not None and p.quantity.later):
        if p.quantity is not None and p.quantity.states:
            refs.setdefault(p.quantity.states, len(refs) + 1)
    return refs


def device_rows(settings: BacnetSettings) -> list[tuple[str, str, str]]:
    """(object type, instance, name) of the objects that exist beside the table."""
    return [
        ("device", str(settings.device_instance), settings.device_name),
        ("networkPort", str(NETWORK_PORT_INSTANCE), f"{settings.device_name}.ip"),
    ]


def ede_lines(
    settings: BacnetSettings,
    points: list[Point],
    *,
    project: str | None = None,
    author: str = f"btms-gateway {__version__}",
    now: float | None = None,
) -> list[str]:
    """The EDE file as lines (joined with CRLF by the writer, as the template does)."""
    refs = state_text_table(points)
    stamp = time.strftime("%d.%m.%Y", time.gmtime(time.time() if now is None else now))
    lines = [
        "# Engineering-Data-Exchange - B.I.G.-EU",
        f"PROJECT_NAME;{project or settings.device_name}",
        "VERSION_OF_REFERENCEFILE;1",
        f"TIMESTAMP_OF_LAST_CHANGE;{stamp}",
        f"AUTHOR_OF_LAST_CHANGE;{author}",
        f"VERSION_OF_LAYOUT;{LAYOUT_VERSION}",
        "#" + ";".join(["mandatory"] * MANDATORY + ["optional"] * (len(COLUMNS) - MANDATORY)),
        "# " + ";".join(COLUMNS),
    ]
    dev = str(settings.device_instance)
    for kind, instance, name in device_rows(settings):
        desc = settings.description if kind == "device" else "BACnet/IP port"
        lines.append(_row(name, dev, name, kind, instance, desc, None, None, False))
    for p in points:
        q: Quantity | None = p.quantity
        lines.append(
            _row(
                p.name,
                dev,
                p.name,
                p.kind,
                str(p.instance),
                p.description,
                q,
                refs.get(q.states) if q is not None and q.states else None,
                p.kind in COV_KINDS,
            )
        )
    return lines


def _row(
    key: str,
    dev: str,
    name: str,
    kind: str,
    instance: str,
    description: str,
    q: Quantity | None,
    state_ref: int | None,
    cov: bool,
) -> str:
    unit = ""
    if q is not None and q.kind == "analogInput":
        unit = str(int(EngineeringUnits(q.units)))
    fields = [
        key,
        dev,
        name,
        str(int(ObjectType(kind))),
        instance,
        description.replace(";", ","),
        "",
        _num(q.min_value) if q else "",
        _num(q.max_value) if q else "",
        "N",
        "Y" if cov else "N",
        "",
        "",
        str(state_ref) if state_ref else "",
        unit,
        "",
    ]
    return ";".join(fields)


def state_text_lines(points: list[Point]) -> list[str]:
    """The companion state-texts file: reference number, then the texts in
    state order (binary: inactive, active; multi-state: states 1..n)."""
    refs = state_text_table(points)
    width = max((len(t) for t in refs), default=2)
    lines = [
        "# Engineering-Data-Exchange - B.I.G.-EU - State-Texts",
        "#Reference Number;" + ";".join(f"Text {i}" for i in range(1, width + 1)),
    ]
    for texts, ref in refs.items():
        lines.append(";".join([str(ref), *texts]))
    return lines
