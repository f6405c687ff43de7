"""Writes BTMS-GATEWAY-MIB (SMIv2 text) from tables.py, for any enterprise base.

The output is deterministic (fixed LAST-UPDATED, no timestamps), so the file
committed in docs/mib/ can be compared with a fresh export in a test.
"""

from __future__ import annotations

import textwrap

from .conventions import TCS
from .smi import TC, Obj, Table
from .tables import (
    CONFORMANCE_ARC,
    DEFAULT_BASE,
    ENTERPRISES,
    EXPERIMENTAL,
    GATEWAY_ARC,
    MODULE,
    NOTIF_OBJECTS,
    NOTIF_OBJECTS_ARC,
    NOTIFICATIONS,
    NOTIFICATIONS_ARC,
    OBJECTS_ARC,
    SCALARS,
    TABLES,
    object_oids,
    parse_oid,
)

#: the module's revisions, newest first (LAST-UPDATED is the newest)
REVISIONS = (
    (
        "202612040000Z",
        "btmsStringRuntimeRemaining and btmsStringDepthOfDischarge: the running "
        "discharge's estimate.",
    ),
    ("202611250000Z", "Initial version."),
)
REVISION = REVISIONS[0][0]
SMI_TYPES = ("Integer32", "Unsigned32", "Gauge32", "Counter32", "TimeTicks")
TC_TYPES = ("DisplayString", "TruthValue", "DateAndTime")


def _revisions() -> str:
    return "\n".join(
        f'    REVISION "{when}"\n    DESCRIPTION\n{_text(what)}' for when, what in REVISIONS
    )


def _text(body: str, indent: int = 8) -> str:
    """A quoted DESCRIPTION body, wrapped; double quotes cannot appear inside."""
    lines = textwrap.wrap(body.replace('"', "'"), width=68 - indent)
    pad = " " * indent
    return pad + '"' + ("\n" + pad).join(lines) + '"'


def _root(base: tuple[int, ...]) -> str:
    if base[:6] == ENTERPRISES:
        rest, parent = base[6:], "enterprises"
    elif base[:5] == EXPERIMENTAL:
        rest, parent = base[5:], "experimental"
    else:  # parse_oid() refuses anything else
        raise ValueError(f"unsupported base {base}")
    return "{ " + parent + " " + " ".join(str(p) for p in rest) + " }"


def _syntax(obj: Obj) -> str:
    if obj.base == "BITS":
        named = ", ".join(f"{n}({b})" for n, b in obj.bits)
        return f"BITS {{ {named} }}"
    return obj.syntax


def _seq_type(obj: Obj) -> str:
    return "BITS" if obj.base == "BITS" else obj.syntax.split(" (")[0]


def _object(obj: Obj, parent: str, index: tuple[str, ...] = ()) -> str:
    out = [f"{obj.name} OBJECT-TYPE", f"    SYNTAX      {_syntax(obj)}"]
    if obj.units:
        out.append(f'    UNITS       "{obj.units}"')
    out += [f"    MAX-ACCESS  {obj.access}", "    STATUS      current", "    DESCRIPTION"]
    out.append(_text(obj.description))
    if index:
        out.append(f"    INDEX       {{ {', '.join(index)} }}")
    out.append(f"    ::= {{ {parent} {obj.subid} }}")
    return "\n".join(out)


def _tc(tc: TC) -> str:
    out = [f"{tc.name} ::= TEXTUAL-CONVENTION"]
    if tc.display_hint:
        out.append(f'    DISPLAY-HINT "{tc.display_hint}"')
    out += ["    STATUS       current", "    DESCRIPTION", _text(tc.description)]
    if tc.enums:
        out.append(f"    SYNTAX       INTEGER {{ {', '.join(f'{n}({v})' for n, v in tc.enums)} }}")
    else:
        out.append(f"    SYNTAX       {tc.base}{' ' + tc.range if tc.range else ''}")
    return "\n".join(out)


def _table(t: Table) -> list[str]:
    seq = ",\n".join(f"    {c.name:<28} {_seq_type(c)}" for c in t.columns)
    entry = Obj(t.entry_name, 1, t.entry_type, "", t.entry_description, "not-accessible")
    table = Obj(
        t.table_name, t.subid, f"SEQUENCE OF {t.entry_type}", "", t.description, "not-accessible"
    )
    return [
        _object(table, "btmsObjects"),
        _object(entry, t.table_name, t.index),
        f"{t.entry_type} ::= SEQUENCE {{\n{seq}\n}}",
        *(_object(c, t.entry_name) for c in t.columns),
    ]


def _group(name: str, kind: str, members: list[str], sub: int, what: str) -> str:
    listed = ",\n".join(f"        {m}" for m in members)
    word = "NOTIFICATIONS" if kind == "NOTIFICATION-GROUP" else "OBJECTS"
    return (
        f"{name} {kind}\n    {word} {{\n{listed}\n    }}\n    STATUS      current\n"
        f"    DESCRIPTION\n{_text(what)}\n    ::= {{ btmsGroups {sub} }}"
    )


def groups() -> list[tuple[str, str, list[str], str]]:
    """(group name, kind, members, description) for every conformance group."""
    out = [("btmsGatewayGroup", "OBJECT-GROUP", [s.name for s in SCALARS], "Gateway scalars.")]
    for t in TABLES:
        cols = [c.name for c in t.columns if c.access != "not-accessible"]
        out.append((f"{t.name}Group", "OBJECT-GROUP", cols, f"Columns of {t.table_name}."))
    out.append(
        (
            "btmsNotifObjectsGroup",
            "OBJECT-GROUP",
            [o.name for o in NOTIF_OBJECTS],
            "Objects carried only in notifications.",
        )
    )
    out.append(
        (
            "btmsNotificationsGroup",
            "NOTIFICATION-GROUP",
            [n.name for n in NOTIFICATIONS],
            "Alarm and string quality notifications.",
        )
    )
    return out


def generate(base: tuple[int, ...]) -> str:
    """The whole module text for enterprise base ``base``."""
    dotted = ".".join(str(p) for p in base)
    parent = "enterprises" if base[:6] == ENTERPRISES else "experimental"
    about = (
        "Battery monitoring (BTMS BM-SM string masters) as exposed by btms-gateway: "
        "gateway counters, UPS, strings, cells, active alarms and alarm notifications. "
        f"The module sits under {dotted}; the default (net-snmp's netSnmpPlaypen, "
        f"{DEFAULT_BASE}) is a placeholder that a site replaces with its own "
        "enterprise number."
    )
    header = f"""{MODULE} DEFINITIONS ::= BEGIN

-- Generated from the tables the agent serves (btms_gateway.plugins.snmp.tables)
-- by the command: btms-gateway export mib, with base {dotted}.
-- Do not edit by hand.

IMPORTS
    MODULE-IDENTITY, OBJECT-TYPE, NOTIFICATION-TYPE,
    {", ".join(SMI_TYPES)}, {parent}
        FROM SNMPv2-SMI
    TEXTUAL-CONVENTION, {", ".join(TC_TYPES)}
        FROM SNMPv2-TC
    MODULE-COMPLIANCE, OBJECT-GROUP, NOTIFICATION-GROUP
        FROM SNMPv2-CONF;

btmsGatewayMIB MODULE-IDENTITY
    LAST-UPDATED "{REVISION}"
    ORGANIZATION "btms-gateway project"
    CONTACT-INFO
        "btms-gateway project; see docs/snmp.md of the distribution."
    DESCRIPTION
{_text(about)}
{_revisions()}
    ::= {_root(base)}
"""
    parts = [header]
    parts += [_tc(tc) for tc in TCS]
    parts.append(
        f"btmsNotifications OBJECT IDENTIFIER ::= {{ btmsGatewayMIB {NOTIFICATIONS_ARC} }}\n"
        f"btmsObjects       OBJECT IDENTIFIER ::= {{ btmsGatewayMIB {OBJECTS_ARC} }}\n"
        f"btmsConformance   OBJECT IDENTIFIER ::= {{ btmsGatewayMIB {CONFORMANCE_ARC} }}\n"
        f"btmsGateway       OBJECT IDENTIFIER ::= {{ btmsObjects {GATEWAY_ARC} }}"
    )
    parts += [_object(s, "btmsGateway") for s in SCALARS]
    for t in TABLES:
        parts += _table(t)
    parts.append(
        f"btmsNotificationObjects OBJECT IDENTIFIER ::= {{ btmsObjects {NOTIF_OBJECTS_ARC} }}"
    )
    parts += [_object(o, "btmsNotificationObjects") for o in NOTIF_OBJECTS]
    for n in NOTIFICATIONS:
        objs = ",\n".join(f"        {o}" for o in n.objects)
        parts.append(
            f"{n.name} NOTIFICATION-TYPE\n    OBJECTS {{\n{objs}\n    }}\n"
            f"    STATUS      current\n    DESCRIPTION\n{_text(n.description)}\n"
            f"    ::= {{ btmsNotifications {n.subid} }}"
        )
    parts.append(
        "btmsCompliances OBJECT IDENTIFIER ::= { btmsConformance 1 }\n"
        "btmsGroups      OBJECT IDENTIFIER ::= { btmsConformance 2 }"
    )
    all_groups = groups()
    parts += [_group(n, k, m, i, d) for i, (n, k, m, d) in enumerate(all_groups, start=1)]
    mandatory = ",\n".join(f"        {g[0]}" for g in all_groups)
    parts.append(
        "btmsCompliance MODULE-COMPLIANCE\n    STATUS      current\n    DESCRIPTION\n"
        + _text("An agent implementing everything btms-gateway serves and sends.")
        + f"\n    MODULE -- this module\n    MANDATORY-GROUPS {{\n{mandatory}\n    }}\n"
        "    ::= { btmsCompliances 1 }"
    )
    return "\n\n".join(parts) + "\n\nEND\n"


def objects_markdown() -> str:
    """The object list of docs/snmp.md (a test keeps the doc equal to this)."""
    oids = object_oids(parse_oid(DEFAULT_BASE))
    cut = len(parse_oid(DEFAULT_BASE))
    lines = ["| object | OID under the base | syntax | units | access |", "|---|---|---|---|---|"]
    objs = [*SCALARS, *(c for t in TABLES for c in t.columns), *NOTIF_OBJECTS]
    for o in sorted(objs, key=lambda o: oids[o.name]):
        rel = ".".join(map(str, oids[o.name][cut:]))
        syntax = "BITS" if o.base == "BITS" else o.syntax
        lines.append(f"| {o.name} | B.{rel} | {syntax} | {o.units or ''} | {o.access} |")
    for n in NOTIFICATIONS:
        rel = ".".join(map(str, oids[n.name][cut:]))
        lines.append(f"| {n.name} | B.{rel} | NOTIFICATION-TYPE | | |")
    return "\n".join(lines) + "\n"
