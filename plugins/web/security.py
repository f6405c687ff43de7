"""Who may connect and who may act: the allowlist, response headers, and the
credential check every action (POST) goes through.

Reading is open to every allowed client (read-only by default); an action
needs a user (HTTP Basic, or the dashboard's session cookie plus its CSRF
header) or a bearer token. With no users and no tokens configured, actions
are refused outright (403).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from btms_gateway.core.netguard import ClientAllowlist

from .auth import Authenticator

log = logging.getLogger("btms_gateway.web")

SESSION_COOKIE = "btms_session"
CSRF_HEADER = "X-CSRF-Token"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_address(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else ""


def guard_middleware(allow: list[str], stats: Any) -> Any:
    """Refuse clients outside the allowlist before any handler runs, and add
    the security headers to every answer."""
    allowlist = ClientAllowlist(allow)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowlist.allows(client_address(request)):
            stats.refuse("allowlist")
            return web.json_response({"error": "client not allowed"}, status=403)
        response = await handler(request)
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith("/api/") or request.path.startswith("/health/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guard


class Gatekeeper:
    """Resolves the acting user of a request, or raises 401/403/429."""

    def __init__(self, auth: Authenticator, actions_possible: bool, stats: Any) -> None:
        self.auth = auth
        self.actions_possible = actions_possible
        self.stats = stats

    def _refuse(self, status: int, reason: str, message: str, **headers: str) -> web.HTTPException:
        self.stats.refuse(reason)
        cls = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 429: web.HTTPTooManyRequests}
        return cls[status](
            text=json.dumps({"error": message}), content_type="application/json", headers=headers
        )

    async def user(self, request: web.Request) -> str:
        if not self.actions_possible:
            raise self._refuse(
                403, "actions_disabled", "actions are disabled: no users or tokens configured"
            )
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            user = self.auth.token_user(value.strip())
            if user is None:
                raise self._refuse(401, "bad_token", "invalid token", **_challenge())
            return user
        if scheme.lower() == "basic" and value:
            return await self._basic(request, value.strip())
        session = self.auth.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            if request.headers.get(CSRF_HEADER) != session.csrf:
                raise self._refuse(403, "csrf", "missing or wrong X-CSRF-Token header")
            return session.user
        raise self._refuse(401, "no_credentials", "login required", **_challenge())

    async def _basic(self, request: web.Request, value: str) -> str:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if not sep:
            raise self._refuse(401, "bad_credentials", "malformed Basic credentials")
        if await self.check_password(request, user, password):
            return user
        raise self._refuse(401, "bad_credentials", "wrong user or password", **_challenge())

    async def check_password(self, request: web.Request, user: str, password: str) -> bool:
        """scrypt in a worker thread; too many failures from one address -> 429."""
        client = client_address(request)
        if self.auth.throttled(client):
            raise self._refuse(429, "throttled", "too many failed logins; wait a minute")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.auth.check_password, user, password)
        if not ok:
            self.auth.failed(client)
            log.warning("failed web login for user %r from %s", user, client)
        return ok


def _challenge() -> dict[str, str]:
    # Bearer, not Basic: a Basic challenge would make browsers pop up their own
    # login dialog and then send the password with every request automatically
    return {"WWW-Authenticate": 'Bearer realm="btms-gateway"'}
