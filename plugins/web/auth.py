"""Credentials: scrypt password hashes, hashed bearer tokens, browser sessions.

Nothing secret is stored in plain form: the config holds only hashes, sessions
live in memory as random ids, and no function here logs a password, token or
session id. scrypt (memory-hard, in the standard library) makes a stolen
config file expensive to brute-force; tokens are 256 random bits, so a single
SHA-256 suffices for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), the only form the config accepts."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def is_password_hash(stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5])
    except ValueError:
        return False
    return n >= 2**10 and n & (n - 1) == 0 and r >= 1 and p >= 1 and len(salt) >= 8 and bool(digest)


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    want = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(want),
        maxmem=2**28,
    )
    return hmac.compare_digest(got, want)


def new_token() -> tuple[str, str]:
    """A fresh bearer token and the hash to put in the config."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def is_token_hash(stored: str) -> bool:
    head, _, digest = stored.partition("$")
    return head == "sha256" and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


@dataclass
class Session:
    user: str
    csrf: str
    expires: float


class Authenticator:
    """Checks credentials against the configured hashes and keeps browser sessions."""

    def __init__(
        self,
        users: dict[str, str],
        tokens: dict[str, str],
        session_ttl_s: float,
        max_failed: int,
    ) -> None:
        self.users = dict(users)
        self.tokens = {h: name for name, h in tokens.items()}
        self.session_ttl_s = session_ttl_s
        self.max_failed = max_failed
        self.sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._dummy = next(iter(self.users.values()), None)

    def check_password(self, user: str, password: str) -> bool:
        """Runs scrypt even for an unknown user, so timing does not tell which
        user names exist. Blocking (~50 ms): call it in an executor."""
        stored = self.users.get(user)
        if stored is None:
            if self._dummy is not None:
                verify_password(password, self._dummy)
            return False
        return verify_password(password, stored)

    def token_user(self, token: str) -> str | None:
        name = self.tokens.get(hash_token(token))
        return f"token:{name}" if name is not None else None

    def attempt(self, client: str, now: float | None = None) -> float | None:
        """Count a login attempt from ``client`` before its password is checked
        (as a failure until ``succeeded``); None when the address is over its
        limit for the last minute (counting attempts still being checked)."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.get(client, []) if now - t < 60.0]
        if len(recent) >= self.max_failed:
            self._failures[client] = recent
            return None
        recent.append(now)
        self._failures[client] = recent
        if len(self._failures) > 10_000:  # bounded: forget the oldest clients
            for key in list(self._failures)[:5_000]:
                del self._failures[key]
        return now

    def succeeded(self, client: str, attempt: float) -> None:
        """A right password: that attempt is not a failure."""
        stamps = self._failures.get(client)
        if stamps and attempt in stamps:
            stamps.remove(attempt)

    def open_session(self, user: str) -> tuple[str, Session]:
        self._expire()
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + self.session_ttl_s)
        self.sessions[sid] = session
        return sid, session

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self.sessions.get(sid)
        if s is None or s.expires < time.time():
            self.sessions.pop(sid, None)
            return None
        return s

    def close_session(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)

    def _expire(self) -> None:
        now = time.time()
        for sid in [k for k, s in self.sessions.items() if s.expires < now]:
            del self.sessions[sid]
