"""The OpenAPI 3.1 description of the REST API, served at /api/openapi.json.

Written by hand next to the handlers (api.py), except the plant quantities:
a UPS's, a string's and a cell's values derive from the quantity table. A
schema's layout holds a ``Slot`` where the JSON shapes serve a quantity (the
key is its ``json_key``, the position today's), and the property is made from
the quantity: its JSON type from its kind (an enumeration by its member names,
as the JSON shapes write them), null allowed, no description, unless its entry
in ``PLACEMENTS`` (keyed by ``(level, key)``, as the other protocols' are)
says otherwise: a value the shape always carries, today's wording. A quantity
a plugin registers is placed automatically: a property of its level's detail
schema (of ``Cell`` for a cell quantity), its raw value's type or null,
described by its description and unit. Checked in the tests twice: the
document validates with openapi-spec-validator, and real responses validate
against these schemas, so the description cannot drift unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from btms_gateway.core.api import QUANTITIES, Level, Quantity, __version__


def _n(kind: str, **extra: Any) -> dict[str, Any]:
    """A nullable value: None means not measured / not read (never invented)."""
    return {"type": [kind, "null"], **extra}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _arr(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


@dataclass(frozen=True, slots=True)
class Slot:
    """A quantity of ``level`` in a schema's layout, under its JSON key: its
    property derives from the table when the document is made."""

    level: Level


@dataclass(frozen=True, slots=True)
class Property:
    """How a core quantity's property differs from the rule (null allowed, no
    description, an enumeration's members listed), as today's document has it."""

    nullable: bool = True
    description: str = ""
    members: bool = True


U, S, C = Level.UPS, Level.STRING, Level.CELL
UQ, SQ, CQ = Slot(U), Slot(S), Slot(C)
#: where a core quantity's property is not the rule's, keyed by (level, key) of the table:
#: a value the JSON shape always carries (a string's reading is null as a whole instead)
PLACEMENTS: dict[tuple[Level, str], Property] = {
    (U, "quality"): Property(nullable=False),
    (U, "status"): Property(nullable=False),
    (S, "quality"): Property(nullable=False),
    (S, "status"): Property(nullable=False),
    (S, "voltage"): Property(nullable=False),
    (S, "current"): Property(nullable=False, description="+ charge, - discharge"),
    (S, "soc"): Property(nullable=False),
    (S, "balance"): Property(nullable=False),
    (S, "state"): Property(nullable=False, members=False),
    (S, "alarm_word"): Property(nullable=False, description="BM-SM alarm word (HR 13)"),
    (S, "cell_count"): Property(nullable=False),
    (S, "soh"): Property(description="derived: the lowest cell SOH"),
    (C, "flags"): Property(nullable=False, description="bits: 1 sensor lost, 2 balancing"),
}

NUM, INT, STR, BOOL = ({"type": t} for t in ("number", "integer", "string", "boolean"))
SEVERITY = {"type": "string", "enum": ["warning", "alarm", "critical"]}
BAND = {"type": "object", "additionalProperties": True}
RETAKEN = _obj({"string": STR, "cell": _n("integer"), "by": STR, "message": STR})

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Cell": _obj(
        {
            "index": INT,
            "voltage_v": CQ,
            "resistance_mohm": CQ,
            "temperature_c": CQ,
            "soc_pct": CQ,
            "soh_pct": CQ,
            "status": CQ,
        }
    ),
    "Reading": _obj(
        {
            "voltage_v": SQ,
            "current_a": SQ,
            "soc_pct": SQ,
            "balance_pct": SQ,
            "state": SQ,
            "alarms": SQ,
            "alarm_bits": _arr(STR),
            "cell_count": SQ,
            "ambient_temperature_c": SQ,
            "ambient_humidity_pct": SQ,
            "relay_closed": SQ,
            "aux_input_on": SQ,
            "read_at": {"type": "number", "description": "epoch seconds of the poll"},
            "soh_pct": SQ,
            "cells": _arr(_ref("Cell")),
        },
        required=["voltage_v", "current_a", "soc_pct", "state", "cell_count", "read_at"],
    ),
    "String": _obj(
        {
            "name": STR,
            "index": INT,
            "ups": _n("string"),
            "bus": STR,
            "slave_id": INT,
            "quality": SQ,
            "status": SQ,
            "changed_at": NUM,
            "age_s": SQ,
            "reading": {"oneOf": [_ref("Reading"), {"type": "null"}]},
        }
    ),
    "StringDetail": {
        "allOf": [
            _ref("String"),
            _obj(
                {
                    "ups_index": INT,
                    "limits": {"type": "object", "additionalProperties": BAND},
                    "baseline_mohm": _arr(_n("number")),
                    "derived": {
                        "type": "object",
                        "description": "derived values (docs/analytics.md): key -> value or null",
                        "additionalProperties": _n("number"),
                    },
                    "cell_derived": {
                        "type": "object",
                        "description": "per-cell derived values, in the order of the cells",
                        "additionalProperties": _arr(_n("number")),
                    },
                },
                required=["ups_index", "derived"],
            ),
        ]
    },
    "DischargeCell": _obj(
        {
            "cell": INT,
            "rank": {"type": "integer", "description": "1 = the weakest"},
            "start_v": NUM,
            "lowest_v": NUM,
            "end_v": NUM,
            "drop_v_per_h": _n("number"),
            "cutoff_s": _n("number", description="seconds from the start to the cutoff"),
        }
    ),
    "Discharge": _obj(
        {
            "id": INT,
            "string": STR,
            "start": NUM,
            "end": NUM,
            "duration_s": NUM,
            "ah": NUM,
            "wh": NUM,
            "mean_current_a": NUM,
            "start_voltage_v": NUM,
            "lowest_voltage_v": NUM,
            "end_voltage_v": NUM,
            "cutoff_v": NUM,
            "string_cutoff_v": NUM,
            "reached_cutoff": BOOL,
            "dod_pct": _n("number"),
            "weakest": _arr(INT),
        }
    ),
    "CellHealth": _obj(
        {
            "cell": INT,
            "mohm": _n("number"),
            "baseline_mohm": _n("number"),
            "baseline_source": _n("string"),
            "baseline_set_at": _n("number"),
            "vs_baseline_pct": _n("number"),
            "vs_median_pct": _n("number"),
            "trend_mohm_per_month": _n("number"),
            "limit_mohm": _n("number"),
            "crosses_at": _n("number"),
            "status": {"type": "string", "enum": ["ok", "learning", "warning", "alarm"]},
        }
    ),
    "Resistance": _obj(
        {
            "string": STR,
            "at": NUM,
            "median_mohm": _n("number"),
            "warning_pct": NUM,
            "alarm_pct": NUM,
            "median_warning_pct": NUM,
            "median_alarm_pct": NUM,
            "cells": _arr(_ref("CellHealth")),
        }
    ),
    "Ups": _obj(
        {
            "name": STR,
            "index": INT,
            "strings": _arr(STR),
            "voltage_v": UQ,
            "current_a": UQ,
            "soc_pct": UQ,
            "quality": UQ,
            "status": UQ,
            "read_at": _n("number"),
        }
    ),
    "UpsDetail": {
        "allOf": [_ref("Ups"), _obj({"string_details": _arr(_ref("String"))})],
    },
    "Plant": _obj(
        {
            "taken_at": NUM,
            "gateway": _obj(
                {
                    "name": STR,
                    "version": STR,
                    "uptime_s": NUM,
                    "demo": BOOL,
                    "alarm_engine": BOOL,
                    "event_log": BOOL,
                }
            ),
            "ups": _arr(_ref("Ups")),
            "strings": _arr(_ref("String")),
        }
    ),
    "Counters": {
        "type": "object",
        "required": [
            "requests",
            "responses",
            "errors",
            "polls",
            "polls_failed",
            "polls_failed_by_cause",
        ],
        "properties": {
            "polls_failed": INT,
            "polls_failed_by_cause": {"type": "object", "additionalProperties": INT},
        },
    },
    "Bus": _obj(
        {
            "name": STR,
            "interval_s": NUM,
            "last_cycle_s": _n("number"),
            "cycles": INT,
            "port_open": BOOL,
            "counters": _ref("Counters"),
            "strings": {"type": "object", "additionalProperties": _ref("Counters")},
        }
    ),
    "Path": _obj({"ups": _n("string"), "string": _n("string"), "cell": _n("integer"), "text": STR}),
    "Alarm": _obj(
        {
            "alarm_id": STR,
            "rule": STR,
            "severity": SEVERITY,
            "path": _ref("Path"),
            "value": _n("number"),
            "limit": _n("number"),
            "unit": STR,
            "message": STR,
            "raised_at": NUM,
            "acknowledged": BOOL,
            "acknowledged_by": _n("string"),
            "acknowledged_at": _n("number"),
        }
    ),
    "Event": _obj(
        {
            "seq": INT,
            "kind": {"type": "string", "enum": ["raised", "cleared", "acknowledged"]},
            "alarm_id": STR,
            "rule": STR,
            "severity": SEVERITY,
            "path": _ref("Path"),
            "value": _n("number"),
            "limit": _n("number"),
            "unit": STR,
            "message": STR,
            "at": NUM,
            "by": _n("string"),
            "persisted": BOOL,
        }
    ),
    "EventPage": _obj(
        {
            "source": {"type": "string", "enum": ["event_log", "memory"]},
            "order": {"type": "string", "enum": ["asc", "desc"]},
            "limit": INT,
            "more": BOOL,
            "next_after_seq": _n("integer"),
            "next_before_seq": _n("integer"),
            "events": _arr(_ref("Event")),
        },
        required=["source", "order", "limit", "more", "events"],
    ),
    "History": _obj(
        {
            "string": STR,
            "from": NUM,
            "to": NUM,
            "resolution": {"type": "string", "enum": ["raw", "minute", "hour"]},
            "step_s": _n("number", description="bucket width; null for raw readings"),
            "source": {"type": "string", "enum": ["history"]},
            "history": _ref("HistoryState"),
            "t": _arr({"type": "number", "description": "epoch seconds (row or bucket start)"}),
            "series": _arr(
                _obj(
                    {
                        "quantity": STR,
                        "cell": _n("integer"),
                        "unit": STR,
                        "value": _arr(_n("number")),
                        "min": _arr(_n("number")),
                        "mean": _arr(_n("number")),
                        "max": _arr(_n("number")),
                        "count": _arr(INT),
                    },
                    required=["quantity", "cell", "unit"],
                )
            ),
        }
    ),
    "Health": _obj(
        {"status": STR, "reason": STR, "at": NUM, "event_log": _ref("EventLogHealth")},
        required=["status"],
    ),
    "EventLogHealth": _obj(
        {
            "failing": BOOL,
            "since": _n("number"),
            "error": _n("string"),
            "write_failures": INT,
            "unwritten": INT,
            "dropped": INT,
        }
    ),
    "HistoryState": _obj(
        {
            "state": {
                "type": "string",
                "enum": ["starting", "recording", "paused", "read_only", "stopped"],
            },
            "reason": STR,
            "since": NUM,
        }
    ),
    "HistoryInfo": _obj(
        {"status": _ref("HistoryState"), "info": {"type": ["object", "null"]}},
    ),
    "Session": _obj(
        {"user": _n("string"), "csrf": _n("string"), "csrf_header": STR, "login_possible": BOOL}
    ),
    "Login": _obj({"user": STR, "password": {"type": "string", "format": "password"}}),
    "LoginResult": _obj({"user": STR, "csrf": STR, "expires": NUM}),
    "AckResult": _obj({"alarm_id": STR, "acknowledged": BOOL, "by": STR}),
}


def _ok(schema: dict[str, Any], text: str = "OK") -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


ERR = _ok(_ref("Error"), "error")
NAME = {"in": "path", "required": True, "schema": STR}


def _get(
    summary: str, schema: dict[str, Any], params: list[Any] | None = None, /, **more: Any
) -> dict[str, Any]:
    responses = {"200": _ok(schema), **more}
    return {"get": {"summary": summary, "parameters": params or [], "responses": responses}}


def _q(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "schema": schema, "description": text}


#: the JSON type of each kind of quantity
KIND_TYPES = {"number": "number", "count": "integer", "enum": "integer", "bits": "integer",
              "bool": "boolean"}  # fmt: skip
#: the schema that carries the quantities plugins register, by level (REST serves
#: them in the detail answers, a cell's in the string detail's cells)
DETAIL = {Level.STRING: "StringDetail", Level.UPS: "UpsDetail", Level.CELL: "Cell"}


def quantity_property(q: Quantity) -> dict[str, Any]:
    """A registered quantity as a property of its level's detail schema."""
    unit = f" ({q.unit})" if q.unit else ""
    return {"type": [KIND_TYPES[q.kind], "null"], "description": f"{q.description}{unit}"}


def core_property(q: Quantity) -> dict[str, Any]:
    """A core quantity as the JSON shapes serve it: an enumeration by its member names."""
    place = PLACEMENTS.get((q.level, q.key), Property())
    kind = "string" if q.kind == "enum" else KIND_TYPES[q.kind]
    out: dict[str, Any] = {"type": [kind, "null"] if place.nullable else kind}
    if q.kind == "enum" and place.members:
        out["enum"] = list(q.values.values())
    if place.description:
        out["description"] = place.description
    return out


def _served(table: tuple[Quantity, ...], slot: Slot, json_key: str) -> Quantity:
    for q in table:
        if q.level is slot.level and q.json_key == json_key:
            return q
    raise KeyError(f"OpenAPI: no {slot.level.value} quantity served as {json_key!r}")


def _with_properties(schema: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an object, or an ``allOf`` whose last part is one) with ``props``
    added to its properties (not required: an answer may lack them)."""
    if "allOf" not in schema:
        return {**schema, "properties": {**schema["properties"], **props}}
    parts = list(schema["allOf"])
    parts[-1] = _with_properties(parts[-1], props)
    return {**schema, "allOf": parts}


def schemas_of(table: tuple[Quantity, ...]) -> dict[str, Any]:
    """SCHEMAS with every slot's property made from its quantity, and the
    registered quantities added to their level's detail schema."""
    out = dict(SCHEMAS)
    for name, schema in SCHEMAS.items():
        props = schema.get("properties", {})
        if any(isinstance(v, Slot) for v in props.values()):
            out[name] = {**schema, "properties": {
                k: core_property(_served(table, v, k)) if isinstance(v, Slot) else v
                for k, v in props.items()
            }}  # fmt: skip
    for level, name in DETAIL.items():
        props = {
            q.key: quantity_property(q)
            for q in table
            if q.level is level and q not in QUANTITIES and q.read is not None
        }
        if props:
            out[name] = _with_properties(out[name], props)
    return out


def openapi_document(registered: Iterable[Quantity] = ()) -> dict[str, Any]:
    """The document; ``registered``: the quantities plugins registered (a gateway's
    table beyond core's), each a property of its level's detail schema."""
    events_params = [
        _q("since", NUM, "events at or after (epoch seconds)"),
        _q("until", NUM, "events before (epoch seconds)"),
        _q("kind", STR, "comma list of raised, cleared, acknowledged"),
        _q("severity", STR, "comma list of warning, alarm, critical"),
        _q("string", STR, "only events of this string"),
        _q("alarm_id", STR, "only events of this alarm"),
        _q("after_seq", INT, "cursor: events after this seq (order=asc)"),
        _q("before_seq", INT, "cursor: events before this seq (order=desc)"),
        _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)"),
        _q("order", {"type": "string", "enum": ["asc", "desc"]}, "desc (default): newest first"),
    ]
    history_params = [
        _q("from", STR, "epoch seconds or ISO 8601 (default: one hour before to)"),
        _q("since", STR, "the same as from (the old parameter name)"),
        _q("to", STR, "epoch seconds or ISO 8601 (default: now)"),
        _q("quantities", STR, "comma list (default voltage_v,current_a,soc_pct); cell_* for cells"),
        _q("cells", STR, 'cells of the cell_* quantities: "1-4,7" or "all" (default all)'),
        _q(
            "resolution",
            {"type": "string", "enum": ["auto", "raw", "minute", "hour"]},
            "tier; auto (default) picks it from the span",
        ),
        _q("max_points", {"type": "integer", "minimum": 2}, "merge rows into wider buckets"),
        _q("limit", {"type": "integer", "minimum": 1}, "only the newest N rows"),
    ]
    paths: dict[str, Any] = {
        "/api/plant": _get("The whole plant: UPS and strings (no cells)", _ref("Plant")),
        "/api/ups": _get("Every UPS", _arr(_ref("Ups"))),
        "/api/ups/{name}": _get(
            "One UPS with its strings",
            _ref("UpsDetail"),
            [{**NAME, "name": "name"}],
            **{"404": ERR},
        ),
        "/api/strings": _get("Every string (no cells)", _arr(_ref("String"))),
        "/api/strings/{name}": _get(
            "One string with its cells, alarm limits and resistance baselines",
            _ref("StringDetail"),
            [{**NAME, "name": "name"}, _q("cells", BOOL, "include cells (true)")],
            **{"404": ERR, "400": ERR},
        ),
        "/api/strings/{name}/history": _get(
            "Recorded readings of a string and its cells over a time range (docs/history.md)",
            _ref("History"),
            [{**NAME, "name": "name"}, *history_params],
            **{"404": ERR, "400": ERR},
        ),
        "/api/strings/{name}/resistance": _get(
            "Each cell's resistance against its baseline and the string median, trends",
            _ref("Resistance"),
            [{**NAME, "name": "name"}],
            **{"404": ERR},
        ),
        "/api/strings/{name}/baseline": {
            "post": {
                "summary": "Re-take resistance baselines from the current reading (needs "
                "credentials; recorded in the event log with who did it)",
                "parameters": [{**NAME, "name": "name"}],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _obj({"cell": INT}, [])}},
                },
                "security": [{"bearer": []}, {"basic": []}, {"session": [], "csrf": []}],
                "responses": {
                    "200": _ok(RETAKEN),
                    **{code: ERR for code in ("400", "401", "403", "404", "409", "415", "429")},
                },
            }
        },
        "/api/discharges": _get(
            "Captured discharges, newest first (no cells)",
            _obj({"discharges": _arr(_ref("Discharge"))}),
            [_q("string", STR, "only this string's"), _q("limit", INT, "at most (50; 1..500)")],
            **{"400": ERR},
        ),
        "/api/discharges/{id}": _get(
            "One discharge with every cell, weakest first",
            {"allOf": [_ref("Discharge"), _obj({"cells": _arr(_ref("DischargeCell"))})]},
            [{**NAME, "name": "id"}],
            **{"400": ERR, "404": ERR},
        ),
        "/api/reports": _get("The report kinds installed", _obj({"kinds": _arr(STR)})),
        "/api/reports/{kind}/{subject}": {
            "get": {
                "summary": "Make a report (a discharge id, a string name) as PDF or HTML",
                "parameters": [
                    {**NAME, "name": "kind"},
                    {**NAME, "name": "subject"},
                    _q("format", {"type": "string", "enum": ["pdf", "html"]}, "pdf (default)"),
                ],
                "responses": {
                    "200": {
                        "description": "the report, as an attachment",
                        "content": {"application/pdf": {}, "text/html": {}},
                    },
                    **{code: ERR for code in ("400", "404", "503")},
                },
            }
        },
        "/api/history": _get(
            "The history store: state (recording, paused, read_only) and what it holds",
            _ref("HistoryInfo"),
            **{"404": ERR},
        ),
        "/api/buses": _get("Buses with communication counters", _arr(_ref("Bus"))),
        "/api/alarms": _get("Active alarms", _arr(_ref("Alarm"))),
        "/api/events": _get(
            "Alarm events with filters and paging", _ref("EventPage"), events_params, **{"400": ERR}
        ),
        "/api/alarms/{alarm_id}/acknowledge": {
            "post": {
                "summary": "Acknowledge an active alarm (needs credentials)",
                "parameters": [{**NAME, "name": "alarm_id"}],
                "security": [{"bearer": []}, {"basic": []}, {"session": [], "csrf": []}],
                "responses": {
                    "200": _ok(_ref("AckResult")),
                    "401": ERR,
                    "403": ERR,
                    "404": ERR,
                    "429": ERR,
                    "503": ERR,
                },
            }
        },
        "/api/login": {
            "post": {
                "summary": "Open a dashboard session (sets an HttpOnly cookie)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Login")}},
                },
                "responses": {
                    "200": _ok(_ref("LoginResult")),
                    **{code: ERR for code in ("400", "401", "403", "408", "415", "429", "503")},
                },
            }
        },
        "/api/logout": {"post": {"summary": "End the session", "responses": {"200": _ok(BAND)}}},
        "/api/session": _get("The current dashboard session, if any", _ref("Session")),
        "/api/stream": _get(
            "Live updates as server-sent events (hello, plant, string, alarms)",
            STR,
            [_q("string", STR, "the string whose cells to push")],
            **{"404": ERR, "503": ERR},
        ),
        "/api/openapi.json": _get("This description (OpenAPI 3.1)", {"type": "object"}),
        "/health/live": _get("The server answers", _ref("Health")),
        "/health/ready": _get(
            "Ready when strings have GOOD data (503 with the reason when not)",
            _ref("Health"),
            **{"503": _ok(_ref("Health"), "not ready")},
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": STR}}}
                },
            }
        },
    }
    paths["/api/stream"]["get"]["responses"]["200"] = {
        "description": "an event stream",
        "content": {"text/event-stream": {"schema": STR}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "btms-gateway REST API",
            "version": __version__,
            "description": "Battery plant data, alarms and events. Read-only without "
            "credentials; actions need a token, a user (Basic) or a dashboard session.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas_of((*QUANTITIES, *registered)),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "btms_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }
