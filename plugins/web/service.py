"""The web service: one aiohttp application on the gateway's own event loop.

aiohttp's AppRunner starts a server inside an already running loop, so the
plugin needs no separate server process or thread (see docs/web.md for why
aiohttp); the sockets come from the plugin's own listener (listener.py),
which decides at accept who is served. Everything the handlers share lives
here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from aiohttp import log as web_log
from aiohttp import web
from btms_gateway.core.api import ActiveAlarms, AlarmEvent, Gateway, raise_open_file_limit

from . import api
from .auth import Authenticator
from .history import EventRing
from .history_metrics import HistoryCollector
from .json_cache import JsonCache
from .listener import ConnectionLimits, Listener
from .live import LiveHub
from .metrics import GatewayCollector, registry_for
from .security import Gatekeeper, HostCheck, guard_middleware, security_headers
from .settings import WebSettings

log = logging.getLogger("btms_gateway.web")
STATIC = Path(__file__).parent / "static"


class Stats:
    """The web server's own counters, exported as metrics."""

    def __init__(self) -> None:
        self.refused: dict[str, int] = {}
        self.hub: LiveHub | None = None

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    @property
    def clients(self) -> int:
        return len(self.hub.clients) if self.hub else 0


class WebService:
    def __init__(self, settings: WebSettings, gateway: Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ring = EventRing()
        #: the alarms active after the newest event the ring holds (as delivered
        #: with it; at start, the gateway's): the live stream sends them together
        self.active: ActiveAlarms = ()
        self.stats = Stats()
        self.auth = Authenticator(
            settings.users, settings.tokens, settings.session_ttl_s, settings.max_failed_logins
        )
        self.gate = Gatekeeper(self.auth, settings.actions_possible, self.stats)
        self.registry = registry_for(
            GatewayCollector(gateway, self.ring, settings.cell_metrics, self.stats)
        )
        self.registry.register(HistoryCollector(gateway))
        self.hub: LiveHub | None = None
        self.json_cache = JsonCache()  # used on the event loop only
        self.runner: web.AppRunner | None = None
        self.listener: Listener | None = None
        self.port: int | None = None
        self.tls = settings.tls_certfile is not None

    def build_app(self, listener: Listener) -> web.Application:
        hosts = HostCheck(self.settings.allowed_hosts, self.settings.host)
        app = web.Application(middlewares=[guard_middleware(hosts, self.stats, listener)])
        app.on_response_prepare.append(security_headers)
        api.add_routes(app, self)
        app.router.add_get("/", self.index)
        app.router.add_static("/static", STATIC, append_version=False)
        return app

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def start(self) -> None:
        settings = self.settings
        self.active = tuple(self.gateway.alarms.active())
        raise_open_file_limit()
        self.hub = LiveHub(asyncio.get_running_loop(), self._changed)
        self.stats.hub = self.hub
        context = None
        if settings.tls_certfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
        limits = ConnectionLimits(
            settings.allow,
            settings.max_connections,
            settings.max_connections_per_client,
            settings.header_timeout_s,
        )
        # the server (connection factory) exists after setup; the listener hands it sockets
        listener = Listener(limits, lambda: self._server(), self.stats.refuse, context)
        self.runner = web.AppRunner(
            self.build_app(listener),
            handle_signals=False,
            shutdown_timeout=0.5,
            keepalive_timeout=settings.keepalive_timeout_s,
            access_log=web_log.access_logger if settings.access_log else None,
        )
        await self.runner.setup()
        try:
            self.port = await listener.start(settings.host, settings.port)
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            where = f"{settings.host}:{settings.port}"
            raise OSError(f"web: cannot listen on {where}: {exc.strerror or exc}") from exc
        self.listener = listener
        log.info(
            "web dashboard, REST API and /metrics on %s://%s:%s (actions %s)",
            "https" if self.tls else "http",
            self.settings.host,
            self.port,
            "need a login" if self.settings.actions_possible else "disabled (read-only)",
        )

    def _server(self) -> asyncio.Protocol:
        assert self.runner is not None and self.runner.server is not None
        return self.runner.server()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        if self.hub is not None:
            self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def _changed(self, names: set[str]) -> None:
        # on the loop, once per burst of readings
        self.json_cache.drop_stale(self.gateway.store.snapshot, names)

    # --- from the plugin's hooks, on the loop ------------------------------------
    def on_reading(self, string: Any) -> None:
        if self.hub is not None:
            self.hub.string_changed(string.name)

    def on_alarm(self, event: AlarmEvent, active: ActiveAlarms) -> None:
        self.ring.add(event)
        self.active = active
        if self.hub is not None:
            self.hub.alarm_changed()

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"
