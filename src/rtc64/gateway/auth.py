"""Who may do what: trusted networks, digest authentication, failed-auth blocking.

Rules (RFC 3261 §22.1-22.4, §16.3 step 5; RFC 8760 algorithms; RFC 7616 stale nonces):

- Sources inside a trusted network need no credentials.
- Everyone else authenticates: the registrar answers 401 with WWW-Authenticate, the
  proxy 407 with Proxy-Authenticate (SHA-256 offered before MD5). Nonces are stateless
  (HMAC over a timestamp) and bound to the realm; an old nonce with the right password
  gets ``stale=true``.
- Users come from the configuration and from the store (``rtc64 user add``); an unknown
  user costs the same work as a wrong password and answers the same. A user stored
  under another realm is unknown here, and the log says so with the fix.
- Every wrong password counts against the source (/64 for IPv6, /32 for IPv4) and
  against (user, source); an unknown user name only against the source. Past
  ``max_failures`` in the window that key is blocked for ``block_seconds``: 403, logged
  and counted, the password never checked meanwhile. A user is never blocked from every
  source (a guesser, possibly spoofing UDP sources, must not lock the owner out).
- The verdict names the authenticated user and the extra AORs it may register.
- A challenge offering SHA-256 that the client never answers is explained in the log
  (``unanswered``): some clients fail on any algorithm but MD5.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from rtc64.gateway.location.store import UserStore
from rtc64.gateway.location.users import UserRecord
from rtc64.gateway.ratelimit import AuthFailureTracker, BlockEvent
from rtc64.gateway.unanswered import UnansweredChallenges
from rtc64.net.address import IPAddress, unmap
from rtc64.sip import digest
from rtc64.sip.digest import Algorithm, NonceCounter, NonceFactory, Verdict
from rtc64.sip.message import Request

_DUMMY_HA1 = {Algorithm.MD5: "0" * 32, Algorithm.SHA_256: "0" * 64}


@dataclass(frozen=True, slots=True)
class AuthResult:
    """``user`` when authenticated (or trusted: user None, ok True); else the answer."""

    ok: bool
    user: str | None = None
    aors: tuple[str, ...] = ()
    status: int = 0
    reason: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ()


TRUSTED = AuthResult(ok=True)
TRUST_CACHE = 65_536
"""Source addresses whose trust ``Authenticator.is_trusted`` remembers at most."""


class Authenticator:
    """Decides whether a request may proceed, and builds the challenge when not."""

    def __init__(
        self,
        *,
        realm: str,
        users: Iterable[tuple[str, str]],
        store: UserStore | None,
        trusted: Iterable[IPv4Network | IPv6Network],
        nonce_lifetime: float,
        max_failures: int,
        block_seconds: float,
        log: logging.Logger,
        secret: bytes | None = None,
        algorithms: Iterable[Algorithm] = digest.DEFAULT_ALGORITHMS,
        worker: int | None = None,
        started: float = float("-inf"),
    ) -> None:
        """``worker``: this SIP worker's index, written in its nonces (the worker link
        brings a request back to the worker whose counter owns its nonce); ``started``:
        nonces issued before it count as stale (their earlier counts are not known)."""
        self.realm = realm
        self.algorithms = tuple(algorithms)
        self._users: Mapping[str, UserRecord] = {
            name: UserRecord.from_password(name, realm, password) for name, password in users
        }
        self._store = store
        self._trusted = tuple(trusted)
        self._trust: dict[tuple[type, int], bool] = {}  # see ``is_trusted``
        self._lifetime = nonce_lifetime
        self._nonces = NonceFactory(secret or secrets.token_bytes(32), origin=worker)
        self._counter = NonceCounter(nonce_lifetime, since=started)
        self._log = log
        self.tracker = AuthFailureTracker(
            max_failures, window=block_seconds, block_seconds=block_seconds, on_block=self._blocked
        )
        self.challenges_sent = 0
        self.successes = 0
        self.unanswered = UnansweredChallenges(log)
        self._watch = any(a.hash_name != "md5" for a in self.algorithms)

    def reconfigure(
        self, users: Iterable[tuple[str, str]], trusted: Iterable[IPv4Network | IPv6Network]
    ) -> None:
        """New configured users and trusted networks (SIGHUP); nonces and blocks stay."""
        self._users = {name: UserRecord.from_password(name, self.realm, pw) for name, pw in users}
        self._trusted = tuple(trusted)
        self._trust = {}

    def sweep(self, now: float) -> None:
        """Housekeeping (every second or so): report challenges left unanswered."""
        if self._watch:
            self.unanswered.sweep(now)

    def is_trusted(self, source: IPAddress) -> bool:
        """Whether ``source`` (an IPv4-mapped IPv6 address as its IPv4) is inside a
        trusted network. Asked several times per message: the answer is remembered per
        address, keyed by type and integer (``ipaddress`` hashes and compares in Python),
        at most ``TRUST_CACHE`` addresses (then forgotten at once), until ``reconfigure``."""
        key = (type(source), int(source))
        known = self._trust.get(key)
        if known is None:
            address = unmap(source)
            known = any(address in net for net in self._trusted)
            if len(self._trust) >= TRUST_CACHE:
                self._trust.clear()  # spoofed sources cannot grow it: bounded, refilled
            self._trust[key] = known
        return known

    def _blocked(self, event: BlockEvent) -> None:
        self._log.warning("auth: %s", event)

    async def _user(self, name: str) -> tuple[UserRecord | None, str]:
        """The user's record for our realm, or None and why (for the log)."""
        record = self._users.get(name)
        if record is None and self._store is not None:
            record = await self._store.get_user(name)
        if record is None:
            return None, "unknown user"
        if record.realm != self.realm:
            self._log.warning(
                "auth: user %r exists in the store under realm %r, but this gateway's realm "
                "is %r: add it again with 'rtc64 user add %s --realm %s' (or give 'user add' "
                "the same --config/--domain as 'serve')",
                name,
                record.realm,
                self.realm,
                name,
                self.realm,
            )
            return None, f"user stored under realm {record.realm!r}"
        return record, ""

    async def check(
        self, req: Request, source: IPAddress, now: float, *, proxy: bool
    ) -> AuthResult:
        """Authenticate ``req`` from ``source``; ``proxy`` picks 407 over 401."""
        early = self.precheck(req, source, now, proxy=proxy)
        if early is not None:
            return early
        creds = self._credentials(req, b"proxy-authorization" if proxy else b"authorization")
        if creds is None:
            return self._without_credentials(req, source, now, proxy)
        if self._watch:
            self.unanswered.answered(source, req.call_id)
        user_key = (creds.username, source)
        blocked = self.tracker.check(source, creds.username, now)
        if blocked is not None:
            return self._forbidden(blocked)
        record, why = await self._user(creds.username)
        algorithm = creds.algorithm
        base = Algorithm.SHA_256 if algorithm.hash_name == "sha256" else Algorithm.MD5
        ha1 = record.ha1(base) if record is not None else _DUMMY_HA1[base]
        verdict = digest.authenticate(
            creds,
            req.method,
            ha1,
            realm=self.realm,
            username=creds.username,
            request_uri=bytes(req.uri),
            nonces=self._nonces,
            now=now,
            lifetime=self._lifetime,
            counter=self._counter,
            algorithms=self.algorithms,
        )
        if verdict is Verdict.OK and record is not None:
            self.tracker.record_success(source, now)
            self.tracker.record_success(user_key, now)
            self.successes += 1
            return AuthResult(ok=True, user=creds.username, aors=record.aors)
        if verdict is Verdict.STALE:
            return self._challenge(proxy, now, stale=True)
        if verdict is Verdict.BAD_NONCE:
            return self._challenge(proxy, now, stale=False)
        self.tracker.record_failure(source, now)
        if record is not None:
            # An unknown name blocks only its source: guessing names must not create blocks
            # for users that may exist later, nor grow the table per name tried.
            self.tracker.record_failure(user_key, now)
        self._log.info(
            "auth: failed for user %r from %s (%s, uri %r)",
            creds.username,
            source,
            why or "wrong response",
            creds.uri,
        )
        return self._challenge(proxy, now, stale=False)

    def precheck(
        self, req: Request, source: IPAddress, now: float, *, proxy: bool
    ) -> AuthResult | None:
        """What ``check`` answers without looking at credentials or the user store: trusted,
        403 for a blocked source, or the challenge for a request with no credentials
        header at all; None when the credentials decide. Never awaits, so a stateless
        answer can be built from it (``Routing.challenge``)."""
        if self.is_trusted(source):
            return TRUSTED
        self.sweep(now)
        blocked = self.tracker.is_blocked(source, now)
        if blocked is not None:
            return self._forbidden(blocked)
        if req.has(b"proxy-authorization" if proxy else b"authorization"):
            return None
        return self._without_credentials(req, source, now, proxy)

    def _without_credentials(
        self, req: Request, source: IPAddress, now: float, proxy: bool
    ) -> AuthResult:
        if self._watch:
            self.unanswered.without_credentials(source, req.call_id, now)
            user_agent = req.get(b"user-agent") or b""
            self.unanswered.challenged(source, req.call_id, req.method, user_agent, now)
        return self._challenge(proxy, now, stale=False)

    def _credentials(self, req: Request, header: bytes) -> digest.Credentials | None:
        """The credentials for our realm, if the request carries any."""
        for value in req.get_all(header):
            creds = digest.parse_credentials(value)  # RemoteProtocolError: answered 400
            if creds.realm == self.realm:
                return creds
        return None

    def _challenge(self, proxy: bool, now: float, *, stale: bool) -> AuthResult:
        self.challenges_sent += 1
        name = b"Proxy-Authenticate" if proxy else b"WWW-Authenticate"
        values = digest.challenges(
            self.realm, self._nonces.issue(now), algorithms=self.algorithms, stale=stale
        )
        status = 407 if proxy else 401
        reason = "Proxy Authentication Required" if proxy else "Unauthorized"
        return AuthResult(
            ok=False, status=status, reason=reason, headers=tuple((name, v) for v in values)
        )

    @staticmethod
    def _forbidden(seconds: float) -> AuthResult:
        return AuthResult(
            ok=False,
            status=403,
            reason=f"Forbidden: too many failed authentications, retry in {int(seconds) + 1} s",
            headers=((b"Retry-After", b"%d" % (int(seconds) + 1)),),
        )
