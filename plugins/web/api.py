"""HTTP routes: the JSON REST API, the live stream, health, metrics and login.

Handlers only read immutable snapshots on the loop; anything that may block
(SQLite event-log queries, acknowledging with its fsync, scrypt, a metrics
scrape at full scale) runs in an executor so the gateway's loop stays free.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from btms_gateway.core.api import QueryError
from prometheus_client.exposition import choose_encoder

from . import batteries, data, events, history
from .json_cache import LIVE, REST
from .live import Client, serve_client, sse, sse_text
from .openapi import openapi_document
from .security import CSRF_HEADER, SESSION_COOKIE, client_address

if TYPE_CHECKING:
    from .service import WebService

log = logging.getLogger("btms_gateway.web")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=lambda o: json.dumps(o, default=str))


def _text(text: str) -> web.Response:
    """A JSON answer already encoded (as ``_json`` would have encoded it)."""
    return web.json_response(text=text)


def _not_found(what: str) -> web.Response:
    return _json({"error": f"{what} not found"}, 404)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _flag(raw: str) -> bool | None:
    """A boolean query parameter; None when it is neither."""
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
        raw.lower()
    )


def history_state(store: Any) -> dict[str, Any]:
    st = store.status()
    return {"state": st.state, "reason": st.reason, "since": st.since}


def add_routes(app: web.Application, svc: WebService) -> None:
    h = Handlers(svc)
    r = app.router
    for path, handler in (
        ("/api/plant", h.plant),
        ("/api/ups", h.ups_list),
        ("/api/ups/{name}", h.ups),
        ("/api/strings", h.strings),
        ("/api/strings/{name}", h.string),
        ("/api/strings/{name}/history", h.history),
        ("/api/strings/{name}/resistance", h.resistance),
        ("/api/discharges", h.discharges),
        ("/api/discharges/{id}", h.discharge),
        ("/api/reports", h.reports),
        ("/api/reports/{kind}/{subject}", h.report),
        ("/api/history", h.history_info),
        ("/api/buses", h.buses),
        ("/api/alarms", h.alarms),
        ("/api/events", h.events),
        ("/api/stream", h.stream),
        ("/api/session", h.session),
        ("/api/openapi.json", h.openapi),
        ("/metrics", h.metrics),
        ("/health/live", h.live),
        ("/health/ready", h.ready),
    ):
        r.add_get(path, handler)
    r.add_post("/api/alarms/{alarm_id}/acknowledge", h.acknowledge)
    r.add_post("/api/strings/{name}/baseline", h.retake_baseline)
    r.add_post("/api/login", h.login)
    r.add_post("/api/logout", h.logout)


class Handlers:
    def __init__(self, svc: WebService) -> None:
        self.svc = svc
        self.gw = svc.gateway
        self.cache = svc.json_cache
        self.limits = data.LimitsCache()
        # the live plant event last composed: (hub generation, loop time, bytes)
        self._plant_event: tuple[int, float, bytes] | None = None

    # --- plant data (text from json_cache: the same JSON as data.plant() & co.) ----------
    async def plant(self, request: web.Request) -> web.Response:
        snap = self.gw.store.snapshot
        await self.cache.prepare(snap, REST)
        return _text(data.plant_text(self.gw, self.cache, REST, snap))

    async def ups_list(self, request: web.Request) -> web.Response:
        return _text(self.cache.ups_list(self.gw.store.snapshot, REST))

    async def ups(self, request: web.Request) -> web.Response:
        out = data.ups_text(self.gw, self.cache, REST, request.match_info["name"])
        return _text(out) if out is not None else _not_found("UPS")

    async def strings(self, request: web.Request) -> web.Response:
        snap = self.gw.store.snapshot
        await self.cache.prepare(snap, REST)
        return _text(self.cache.strings(snap, REST))

    async def string(self, request: web.Request) -> web.Response:
        cells = _flag(request.query.get("cells", "true"))
        if cells is None:
            found = request.query["cells"]
            return _json({"error": f"cells: expected true or false, found {found!r}"}, 400)
        name = request.match_info["name"]
        out = data.string_text(self.gw, self.cache, REST, name, cells, self.limits)
        return _text(out) if out is not None else _not_found("string")

    async def history(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.gw.store.snapshot.strings:
            return _not_found("string")
        store = self.gw.history
        if store is None:
            return _json({"error": "history is off on this gateway ([history] enabled)"}, 404)
        try:
            req = history.parse(request.query, time.time())
        except QueryError as exc:
            return _json({"error": str(exc)}, 400)
        state = history_state(store)
        try:
            series = await _blocking(history.run, store.queries, name, req)
        except QueryError as exc:
            if "no history" in str(exc):
                return _json(history.empty_json(name, req, state))
            return _json({"error": str(exc)}, 400)
        return _json(await _blocking(history.series_json, series, state, req.limit))

    async def history_info(self, request: web.Request) -> web.Response:
        store = self.gw.history
        if store is None:
            return _json({"error": "history is off on this gateway ([history] enabled)"}, 404)
        try:
            info = await _blocking(store.queries.info)
        except QueryError:
            info = None
        return _json({"status": history_state(store), "info": info})

    async def buses(self, request: web.Request) -> web.Response:
        return _json(data.buses(self.gw))

    # --- battery health (batteries.py; everything in an executor) ------------------------
    async def resistance(self, request: web.Request) -> web.Response:
        out = await _blocking(batteries.resistance, self.gw, request.match_info["name"])
        return _json(out) if out is not None else _not_found("string")

    async def discharges(self, request: web.Request) -> web.Response:
        string = request.query.get("string") or None
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return _json({"error": "limit: expected an integer 1..500"}, 400)
        if not 1 <= limit <= batteries.MAX_LIST:
            return _json({"error": "limit: expected an integer 1..500"}, 400)
        rows = await _blocking(batteries.discharges, self.gw, string, limit)
        return _json({"discharges": rows})

    async def discharge(self, request: web.Request) -> web.Response:
        try:
            event_id = int(request.match_info["id"])
        except ValueError:
            return _json({"error": "a discharge id is a number"}, 400)
        out = await _blocking(batteries.discharge, self.gw, event_id)
        return _json(out) if out is not None else _not_found("discharge")

    async def retake_baseline(self, request: web.Request) -> web.Response:
        user = await self.svc.gate.user(request)
        name = request.match_info["name"]
        if name not in self.gw.store.snapshot.strings:
            return _not_found("string")
        cell = None
        if request.can_read_body:
            if request.content_type != "application/json":
                return _json({"error": "expected Content-Type: application/json"}, 415)
            try:
                body = await request.json()
                cell = body.get("cell") if isinstance(body, dict) else None
                if cell is not None and (not isinstance(cell, int) or cell < 1):
                    raise ValueError
            except ValueError:
                return _json({"error": 'expected JSON {"cell": N} (or no body: every cell)'}, 400)
        ok, message = await _blocking(batteries.retake, self.gw, name, cell, user)
        if not ok:
            return _json({"error": message}, 409)
        log.info("%s", message)
        return _json({"string": name, "cell": cell, "by": user, "message": message})

    async def reports(self, request: web.Request) -> web.Response:
        return _json({"kinds": batteries.report_kinds(self.gw)})

    async def report(self, request: web.Request) -> web.Response:
        fmt = request.query.get("format", "pdf")
        if fmt not in ("pdf", "html"):
            return _json({"error": f"format: pdf or html, found {fmt!r}"}, 400)
        kind, subject = request.match_info["kind"], request.match_info["subject"]
        try:
            made = await _blocking(batteries.report, self.gw, kind, subject, fmt)
        except batteries.ReportError as exc:
            status = 503 if "not installed" in str(exc) else 404
            return _json({"error": str(exc)}, status)
        return web.Response(
            body=made.data,
            content_type=made.media_type.split(";")[0],
            charset="utf-8" if made.media_type.startswith("text/") else None,
            headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
        )

    # --- alarms and events -----------------------------------------------------------
    async def alarms(self, request: web.Request) -> web.Response:
        return _json(await _blocking(data.active_alarms, self.gw))

    async def events(self, request: web.Request) -> web.Response:
        try:
            query = events.parse(request.query)
        except events.QueryError as exc:
            return _json({"error": str(exc)}, 400)
        log_ = data.event_log(self.gw)
        rows, more = await _blocking(events.run, query, log_, self.svc.ring)
        out: dict[str, Any] = {
            "source": "event_log" if log_ is not None else "memory",
            "order": query.order,
            "limit": query.limit,
            "more": more,
            "events": data.events_json(rows),
        }
        if query.order == "asc":
            out["next_after_seq"] = rows[-1].seq if rows else query.after_seq
        else:
            out["next_before_seq"] = rows[-1].seq if rows else query.before_seq
        return _json(out)

    async def acknowledge(self, request: web.Request) -> web.Response:
        user = await self.svc.gate.user(request)
        alarm_id = request.match_info["alarm_id"]
        by = await _blocking(data.acknowledge, self.gw, alarm_id, user)
        if by is None:
            return _json({"error": f"no active alarm {alarm_id!r}"}, 404)
        if by == user:
            log.info("alarm %s acknowledged by %s via web", alarm_id, user)
        # who the alarm engine recorded: a second acknowledge does not change it
        return _json({"alarm_id": alarm_id, "acknowledged": True, "by": by})

    # --- live stream -------------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        hub = self.svc.hub
        assert hub is not None
        name = request.query.get("string") or None
        if name is not None and name not in self.gw.store.snapshot.strings:
            return _not_found("string")
        settings, address = self.svc.settings, client_address(request)
        if len(hub.clients) >= settings.max_live_clients:
            self.svc.stats.refuse("live_clients")
            return _json({"error": "too many live clients; try again later"}, 503)
        if hub.clients_from(address) >= settings.max_live_clients_per_client:
            self.svc.stats.refuse("live_clients_per_client")
            return _json({"error": "too many live streams from this address"}, 503)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        client = hub.join(name, address)
        client.last_seq, client.position = self.svc.ring.last_seq, self.svc.ring.position
        try:
            await response.write(sse("hello", {"string": name, "last_seq": client.last_seq}))
            await serve_client(
                hub, client, response.write, self._compose, self.svc.settings.live_interval_s
            )
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            hub.leave(client)
        return response

    async def _compose(self, client: Client) -> list[bytes]:
        out = []
        if client.plant:
            client.plant = False
            out.append(await self._live_plant())
        if client.selected and client.string:
            client.selected = False
            if out:
                await asyncio.sleep(0)  # the plant and the cells in two loop callbacks
            text = data.string_text(self.gw, self.cache, LIVE, client.string, True, self.limits)
            out.append(sse_text("string", text if text is not None else "null"))
        if client.alarms:
            client.alarms = False
            # the events and the alarms active after the newest of them, as delivered
            new, client.position = self.svc.ring.since(client.position)
            active = data.alarms_json(self.svc.active)
            out.append(sse("alarms", {"active": active, "events": data.events_json(new)}))
        return out

    async def _live_plant(self) -> bytes:
        """The plant event, composed once for all clients woken by one flush of
        the hub, in steps: the strings that changed, then (after a yield) the
        bus counters and the text. A client served later in the same flush gets
        the same event (a change after it comes with the next flush), if it is
        younger than ``live_interval_s``: bus counters move without a flush.
        The plant snapshot is not kept (see JsonCache.plant_open)."""
        assert self.svc.hub is not None
        generation, now = self.svc.hub.generation, asyncio.get_running_loop().time()
        last = self._plant_event
        fresh = last is not None and now - last[1] < self.svc.settings.live_interval_s
        if last is not None and last[0] == generation and fresh:
            return last[2]
        snap = self.gw.store.snapshot
        await self.cache.prepare(snap, LIVE)
        await asyncio.sleep(0)
        text = data.plant_text(self.gw, self.cache, LIVE, snap, buses=data.buses(self.gw))
        chunk = sse_text("plant", text)
        self._plant_event = (generation, now, chunk)
        return chunk

    # --- login ---------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            # a form on another site can post text/plain or a form encoding
            # without the browser asking first, never application/json
            return _json({"error": "expected Content-Type: application/json"}, 415)
        try:
            async with asyncio.timeout(self.svc.settings.header_timeout_s):
                body = await request.json()
            user, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return _json({"error": 'expected JSON {"user": ..., "password": ...}'}, 400)
        except TimeoutError:
            return _json({"error": "the request body did not arrive in time"}, 408)
        if not self.svc.settings.users:
            return _json({"error": "no users configured: the dashboard is read-only"}, 403)
        if not await self.svc.gate.check_password(request, user, password):
            self.svc.stats.refuse("bad_credentials")
            return _json({"error": "wrong user or password"}, 401)
        sid, session = self.svc.auth.open_session(user)
        log.info("web login by %r", user)
        response = _json({"user": user, "csrf": session.csrf, "expires": session.expires})
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            httponly=True,
            samesite="Strict",
            secure=self.svc.tls,
            path="/",
            max_age=int(self.svc.settings.session_ttl_s),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.svc.auth.close_session(request.cookies.get(SESSION_COOKIE))
        response = _json({"user": None})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def session(self, request: web.Request) -> web.Response:
        s = self.svc.auth.session(request.cookies.get(SESSION_COOKIE))
        return _json(
            {
                "user": s.user if s else None,
                "csrf": s.csrf if s else None,
                "csrf_header": CSRF_HEADER,
                "login_possible": bool(self.svc.settings.users),
            }
        )

    # --- machine endpoints ---------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(data.registered(self.gw)))

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await _blocking(encoder, self.svc.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def live(self, request: web.Request) -> web.Response:
        return _json({"status": "live", "uptime_s": round(self.gw.uptime_s(), 3)})

    async def ready(self, request: web.Request) -> web.Response:
        ok, reason = data.readiness(self.gw, self.svc.settings.ready_when)
        body: dict[str, Any] = {
            "status": "ready" if ok else "not_ready",
            "reason": reason,
            "at": time.time(),
        }
        body["event_log"] = data.event_log_health(self.gw)
        return _json(body, 200 if ok else 503)
