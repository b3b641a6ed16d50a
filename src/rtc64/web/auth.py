# Who may use the console and the API.
#
# Rules:
# - Credentials: an admin account (``rtc64 admin set-password``: scrypt hash in
#   ``web-admin.json`` of the data directory, never the password), the API token
#   (``web.token``, full access as ``Authorization: Bearer``), the TURN token
#   (``web.turn_token``: /api/turn-credentials and nothing else).
# - Without any credential the console is open, and only on a loopback address
#   (``check_listen``); it still checks the Host header (no DNS rebinding) and CSRF.
# - A login makes a server-side session: a random id in an HttpOnly, SameSite=Strict
#   cookie (Secure over HTTPS), a random CSRF token the page sends back as
#   ``X-CSRF-Token`` on every state-changing request (OWASP synchronizer token). Bearer
#   requests carry no cookie and need no CSRF token.
# - Secrets are compared with ``hmac.compare_digest``; failed logins are slowed per source.
"""Admin password file, sessions, CSRF, tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from enum import Enum
from ipaddress import ip_address
from pathlib import Path

from rtc64.errors import ConfigError
from rtc64.net.address import IPAddress

ADMIN_FILE = "web-admin.json"
SESSION_COOKIE = "rtc64_session"
CSRF_HEADER = "X-CSRF-Token"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_SESSIONS = 1024
MIN_PASSWORD = 8
LOGIN_FAILURES = 5  # per source within LOGIN_WINDOW, then refused until the window passes
LOGIN_WINDOW = 60.0


class Access(Enum):
    """What a request may do."""

    NONE = "none"
    TURN = "turn"  # /api/turn-credentials only
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Admin:
    """The stored admin account: its name and scrypt hash."""

    user: str
    salt: bytes
    digest: bytes

    def check(self, user: str, password: str) -> bool:
        digest = _scrypt(password, self.salt)
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(digest, self.digest) and same_user


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )


def hash_admin(user: str, password: str) -> Admin:
    """A new admin record (fresh salt)."""
    if not user or any(c.isspace() or c == ":" for c in user):
        raise ConfigError("--user", user, "a user name without spaces or ':'")
    if len(password) < MIN_PASSWORD:
        raise ConfigError("password", "***", f"at least {MIN_PASSWORD} characters")
    salt = os.urandom(16)
    return Admin(user, salt, _scrypt(password, salt))


def save_admin(data_dir: Path, admin: Admin) -> Path:
    """Write the admin record (mode 0600, replaced atomically)."""
    path = data_dir / ADMIN_FILE
    body = {
        "user": admin.user,
        "scheme": f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}",
        "salt": base64.b64encode(admin.salt).decode(),
        "hash": base64.b64encode(admin.digest).decode(),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(body, fh)
    tmp.replace(path)
    return path


def load_admin(data_dir: Path) -> Admin | None:
    """The admin record, or None when none was set; ``ConfigError`` naming the file when
    it cannot be read."""
    path = data_dir / ADMIN_FILE
    try:
        body = json.loads(path.read_text())
        if body.get("scheme") != f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}":
            raise ValueError("unknown scheme")
        return Admin(
            str(body["user"]), base64.b64decode(body["salt"]), base64.b64decode(body["hash"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        expected = f"an admin file written by rtc64 admin set-password ({exc})"
        raise ConfigError("general.data_dir", str(path), expected) from None


def check_listen(address: IPAddress, *, credentials: bool) -> None:
    """Refuse a non-loopback console without any credential configured."""
    if not credentials and not address.is_loopback:
        raise ConfigError(
            "web.listen",
            str(address),
            "a loopback address, unless rtc64 admin set-password was run or web.token is set",
        )


@dataclass(slots=True)
class Session:
    csrf: str
    expires: float


class Guard:
    """Decides the access of a request from its credentials; holds the sessions."""

    def __init__(
        self,
        *,
        admin: Admin | None,
        token: str,
        turn_token: str,
        lifetime: float,
    ) -> None:
        self.admin = admin
        self.token = token
        self.turn_token = turn_token
        self.lifetime = lifetime
        self.sessions: dict[str, Session] = {}
        self.open_csrf = secrets.token_urlsafe(32)
        """The CSRF token of an open (credential-less, loopback) console."""
        self._failures: dict[IPAddress, list[float]] = {}

    @property
    def open(self) -> bool:
        """True when no credential is configured (loopback only)."""
        return self.admin is None and not self.token

    def bearer(self, header: str | None) -> Access:
        """The access an ``Authorization`` header grants."""
        if header is None or not header.startswith("Bearer "):
            return Access.NONE
        given = header[7:].strip().encode()
        if self.token and hmac.compare_digest(given, self.token.encode()):
            return Access.FULL
        if self.turn_token and hmac.compare_digest(given, self.turn_token.encode()):
            return Access.TURN
        return Access.NONE

    def session(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        session = self.sessions.get(sid)
        if session is None:
            return None
        if session.expires <= now:
            del self.sessions[sid]
            return None
        return session

    def throttled(self, source: IPAddress, now: float) -> bool:
        times = [t for t in self._failures.get(source, ()) if now - t < LOGIN_WINDOW]
        self._failures[source] = times
        if not times:
            del self._failures[source]
        return len(times) >= LOGIN_FAILURES

    def login(self, user: str, password: str, source: IPAddress, now: float) -> str | None:
        """A new session id when the admin's credentials are right."""
        if self.admin is None or not self.admin.check(user, password):
            if len(self._failures) < 65536:
                self._failures.setdefault(source, []).append(now)
            return None
        self._failures.pop(source, None)
        for sid in [s for s, v in self.sessions.items() if v.expires <= now]:
            del self.sessions[sid]
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(secrets.token_urlsafe(32), now + self.lifetime)
        return sid

    def logout(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def loopback_host(host: str | None) -> bool:
    """True when a Host header names a loopback address or localhost (an open console
    answers only those: a rebound DNS name must not reach it)."""
    if not host:
        return False
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False
