"""Who may be answered and who may act: Host and Origin checks, response
headers, and the credential check every action (POST) goes through (who may
connect at all is decided at accept, in listener.py).

Reading is open to every allowed client (read-only by default); an action
needs a user (HTTP Basic, or the dashboard's session cookie plus its CSRF
header) or a bearer token. With no users and no tokens configured, actions
are refused outright (403).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

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
#: scrypt runs at once (about 50 ms and 16 MB each), and how many may wait for one
PASSWORD_CHECKS, PASSWORD_QUEUE = 2, 8


def client_address(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else ""


#: names every gateway answers to besides ``allowed_hosts`` and its own addresses
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HostCheck:
    """Which Host (and Origin) names the server answers to, against DNS
    rebinding: a page from another site that gets its name resolved to the
    gateway reaches it with that site's name in Host, which no configured
    name matches. Allowed: ``allowed_hosts`` (``"*"``: any), the listen
    address, the address the connection arrived on, and localhost forms."""

    def __init__(self, allowed: list[str], listen_host: str) -> None:
        self.any = "*" in allowed
        self.names = {_bare(n) for n in allowed if n != "*"} | set(LOCAL_NAMES)
        self.names.add(_bare(listen_host))

    def allows(self, name: str, request: web.Request) -> bool:
        if self.any:
            return True
        bare = _bare(name)
        if bare in self.names or bare.endswith(".localhost"):
            return True
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            return False
        if address.is_loopback:
            return True
        local = request.transport.get_extra_info("sockname") if request.transport else None
        if not local:
            return False
        return bare == _bare(str(local[0]))


def _bare(host: str) -> str:
    """``Host``/``Origin`` authority without port, brackets or trailing dot, lowercase."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".").split("%", 1)[0]
    try:
        return str(ipaddress.ip_address(host))  # one spelling per address
    except ValueError:
        return host


def guard_middleware(hosts: HostCheck, stats: Any, listener: Any) -> Any:
    """Check the Host (and, for actions, the Origin) header before any handler
    runs, answer errors as JSON under /api/ and /health/ (the router's 404
    and 405 included), and tell the listener when a connection is busy with
    a request (see listener.py)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        listener.request_started(request.transport)
        try:
            response: web.StreamResponse | None = _screen(request, hosts, stats)
            if response is None:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = _error_answer(request, exc)
        finally:
            listener.request_finished(request.transport)
        return response

    return guard


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer the application sends (errors,
    static files and the live stream included) carries the security headers."""
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    if _is_api(request.path):
        response.headers.setdefault("Cache-Control", "no-store")


def _screen(request: web.Request, hosts: HostCheck, stats: Any) -> web.Response | None:
    host = request.headers.get("Host")
    if host is not None and not hosts.allows(host, request):
        stats.refuse("host")
        return web.json_response(
            {"error": f"host name {_bare(host)!r} is not served here (allowed_hosts)"}, status=421
        )
    origin = request.headers.get("Origin")
    if request.method not in SAFE_METHODS and origin is not None:
        authority = urlsplit(origin).netloc if origin != "null" else ""
        if not authority or not hosts.allows(authority, request):
            stats.refuse("origin")
            return web.json_response({"error": "cross-site request refused (Origin)"}, status=403)
    return None


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/health/")) or path in ("/api", "/health", "/metrics")


def _error_answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    """An answer of its own for an HTTP exception (the router's 404/405, the
    gatekeeper's 401/403/429, aiohttp's 413): JSON under the API paths."""
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if exc.status >= 400 and _is_api(request.path) and exc.content_type != "application/json":
        if exc.status == 404:
            message = f"no such path: {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed here"
        else:
            message = exc.reason
        return web.json_response({"error": message}, status=exc.status, headers=headers)
    return web.Response(
        status=exc.status,
        reason=exc.reason,
        body=exc.body,
        content_type=exc.content_type if exc.body is not None else None,
        headers=headers,
    )


class Gatekeeper:
    """Resolves the acting user of a request, or raises 401/403/429."""

    def __init__(self, auth: Authenticator, actions_possible: bool, stats: Any) -> None:
        self.auth = auth
        self.actions_possible = actions_possible
        self.stats = stats
        self._checks = asyncio.Semaphore(PASSWORD_CHECKS)
        self._waiting = 0  # password checks in progress or queued for one

    def _refuse(self, status: int, reason: str, message: str, **headers: str) -> web.HTTPException:
        self.stats.refuse(reason)
        cls = {
            401: web.HTTPUnauthorized,
            403: web.HTTPForbidden,
            429: web.HTTPTooManyRequests,
            503: web.HTTPServiceUnavailable,
        }
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
        """scrypt in a worker thread, at most PASSWORD_CHECKS at once.

        The attempt counts against the address before the check starts
        (and is forgotten if the password is right), so parallel guesses
        meet the limit as sequential ones do: too many from one address -> 429.
        More than PASSWORD_QUEUE waiting for a check -> 503."""
        client = client_address(request)
        if self._waiting >= PASSWORD_QUEUE:
            busy = "too many logins being checked; try again"
            raise self._refuse(503, "logins_busy", busy, **{"Retry-After": "1"})
        attempt = self.auth.attempt(client)
        if attempt is None:
            raise self._refuse(429, "throttled", "too many failed logins; wait a minute")
        self._waiting += 1
        try:
            async with self._checks:
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(None, self.auth.check_password, user, password)
        finally:
            self._waiting -= 1
        if ok:
            self.auth.succeeded(client, attempt)
        else:
            log.warning("failed web login for user %r from %s", user, client)
        return ok


def _challenge() -> dict[str, str]:
    # Bearer, not Basic: a Basic challenge would make browsers pop up their own
    # login dialog and then send the password with every request automatically
    return {"WWW-Authenticate": 'Bearer realm="btms-gateway"'}
