"""TURN credentials: long-term keys from the user store, TURN REST secrets, stateless nonces.

Rules (RFC 8489 §9.2 long-term credentials, §9.2.2 keys, §9.2.4 nonces, §18.1 the nonce
cookie; draft-uberti-behave-turn-rest-00 §2.2; coturn ``use-auth-secret``):

- The long-term key is H(username ":" realm ":" password), MD5 or SHA-256 (PASSWORD-ALGORITHM
  0x0001 / 0x0002): exactly the HA1 the SIP user store keeps, as bytes. The realm is the
  gateway's digest realm; a request naming another realm gets no key.
- User look-ups are asynchronous: ``key()`` answers from a small cache (positive and
  negative entries, bounded, LRU) or returns ``PENDING``; the service then awaits
  ``fetch(username)`` and feeds the datagram again. At most ``max_pending`` names are
  looked up at once; past that ``key()`` answers None (a 401), so a spray of unknown names
  cannot queue unbounded store queries.
- TURN REST: username ``EXPIRY[:USER]`` (also ``USER:EXPIRY``, as coturn reads it), password
  base64(HMAC-SHA1(secret, username)), the key then as above with that password. Several
  secrets are accepted at once (rotation): ``keys()`` returns one key per secret and the
  core tries each. An expiry before now (unix time) gets no key. When REST secrets are
  configured, a username of that form never reaches the user store.
- Nonces are stateless: "obMatJos2" + the base64 of the 24 security-feature bits (bit 0:
  PASSWORD-ALGORITHMS) + issue time + HMAC-SHA256 over both and the client's source prefix
  (/64 for IPv6, /32 for IPv4, IPv4-mapped counts as IPv4) under a per-process random key.
  ``nonce_ok``: True, ``STALE`` (genuine but older than ``nonce_lifetime``: answer 438) or
  False (forged, from another source prefix, or from the future). The (nonce, source
  address) pairs issued here or whose MAC was verified are remembered (at most
  ``VERIFIED_NONCES``, the table cleared when full) so a client's next requests skip the
  MAC; the issue time is checked on every request, so state changes nothing but the cost
  (a flood of 401s from many sources only empties the table: MACs are computed again).
- Secrets and keys compare with ``hmac.compare_digest``; keys never appear in ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final, Literal, Protocol

from rtc64.net.address import IPAddress, unmap
from rtc64.stun.integrity import prepared_mac
from rtc64.turn.protocols import MD5, PENDING, SHA256, Pending

ALGORITHM_MD5: Final = MD5
ALGORITHM_SHA256: Final = SHA256
"""PASSWORD-ALGORITHM values (RFC 8489 §18.5), as ``turn.protocols`` numbers them."""

NONCE_COOKIE: Final = "obMatJos2"
"""RFC 8489 §9.2: a nonce starting with it carries the security feature bits."""
FEATURE_PASSWORD_ALGORITHMS: Final = 1 << 23
FEATURE_USERNAME_ANONYMITY: Final = 1 << 22
"""Security feature bits (RFC 8489 §18.1), bit 0 being the most significant of 24."""

STALE: Final = "stale"
NonceCheck = bool | Literal["stale"]

_TS_DIGITS: Final = 8  # hex digits of the issue time
_MAC_BYTES: Final = 12
_MAC_CHARS: Final = 16  # base64 of 12 bytes, no padding
_MAX_EXPIRY_DIGITS: Final = 12
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
VERIFIED_NONCES = 8192
"""(nonce, source) pairs remembered as genuine (bounded: cleared when full)."""


class UserRecord(Protocol):
    """What a stored user offers (``gateway.location.users.UserRecord``): HA1 in hex."""

    @property
    def name(self) -> str: ...
    @property
    def realm(self) -> str: ...
    @property
    def ha1_md5(self) -> str: ...
    @property
    def ha1_sha256(self) -> str: ...


class UserSource(Protocol):
    """What the credentials need from the gateway's user store."""

    def get_user(self, name: str) -> Awaitable[UserRecord | None]: ...


class _Client(Protocol):
    @property
    def remote(self) -> tuple[IPAddress, int]: ...


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """How the TURN service authenticates. ``secrets`` are TURN REST shared secrets."""

    realm: str
    long_term: bool = True
    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    nonce_lifetime: float = 600.0
    features: int = FEATURE_PASSWORD_ALGORITHMS
    cache_ttl: float = 60.0
    negative_ttl: float = 10.0
    error_ttl: float = 2.0
    max_cache: int = 10_000
    max_pending: int = 64

    @property
    def enabled(self) -> bool:
        """True when at least one authentication method is on."""
        return self.long_term or bool(self.secrets)


@dataclass(frozen=True, slots=True)
class RestCredentials:
    """TURN REST credentials as an application server hands them to a browser."""

    username: str
    password: str = field(repr=False)
    ttl: int


def rest_password(secret: bytes | str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): the TURN REST password (coturn's default)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, username.encode(), hashlib.sha1).digest()).decode()


def rest_credentials(secret: bytes | str, user: str, ttl: int, now: float) -> RestCredentials:
    """Credentials for ``user`` valid ``ttl`` seconds after unix time ``now``."""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive seconds, not {ttl}")
    if ":" in user:
        raise ValueError(f"user {user!r} must not contain ':' (the REST separator)")
    expiry = int(now) + ttl
    username = f"{expiry}:{user}" if user else str(expiry)
    return RestCredentials(username, rest_password(secret, username), ttl)


def rest_expiry(username: str) -> int | None:
    """The expiry of a TURN REST username, or None if it has none (coturn's reading)."""
    head, sep, tail = username.partition(":")
    candidate = head if not sep or head.isdecimal() else tail
    if not candidate.isascii() or not candidate.isdecimal():
        return None
    if len(candidate) > _MAX_EXPIRY_DIGITS:
        return None
    return int(candidate)


def long_term_key(username: str, realm: str, password: str, algorithm: int) -> bytes:
    """H(username:realm:password) for PASSWORD-ALGORITHM ``algorithm`` (RFC 8489 §9.2.2)."""
    text = f"{username}:{realm}:{password}".encode()
    if algorithm == ALGORITHM_SHA256:
        return hashlib.sha256(text).digest()
    return hashlib.md5(text).digest()  # noqa: S324 - the protocol's own key


def _source_prefix(address: IPAddress) -> bytes:
    """The bytes a nonce is bound to: /64 of IPv6, the whole IPv4 address."""
    address = unmap(address)
    if isinstance(address, IPv6Address):
        return b"\x06" + address.packed[:8]
    return b"\x04" + address.packed


class Credentials:
    """The ``credentials`` object the TURN core asks (docs/turn.md)."""

    __slots__ = (
        "_cache",
        "_inflight",
        "_mac",
        "_mac_key",
        "_prefix",
        "_prefix_bytes",
        "_rest_cache",
        "_verified",
        "clock",
        "last_error",
        "lookups",
        "lookups_refused",
        "rest_expired",
        "settings",
        "store",
        "store_errors",
        "wall",
    )

    def __init__(
        self,
        settings: CredentialSettings,
        store: UserSource | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        nonce_key: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.wall = wall
        self._mac_key = nonce_key if nonce_key is not None else os.urandom(32)
        self._mac = prepared_mac(self._mac_key, "sha256")
        """The nonce MAC with the key absorbed: each nonce copies it (cheaper than anew)."""
        features = settings.features.to_bytes(3, "big")
        self._prefix = NONCE_COOKIE + base64.b64encode(features).decode()
        self._prefix_bytes = self._prefix.encode()
        self._rest_cache: dict[tuple[str, int], tuple[bytes, ...]] = {}
        self._verified: dict[tuple[str, IPAddress], int] = {}
        """Issue time of each (nonce, source address) whose MAC was checked."""
        """REST keys by (username, algorithm): two HMACs and a hash each, per request."""
        self._cache: OrderedDict[str, tuple[float, UserRecord | None]] = OrderedDict()
        self._inflight: dict[str, float] = {}
        self.lookups = 0
        """Store look-ups done (counter)."""
        self.lookups_refused = 0
        """Names answered None because ``max_pending`` look-ups were under way."""
        self.store_errors = 0
        self.last_error = ""
        self.rest_expired = 0
        """REST usernames refused because their expiry had passed."""

    # --- keys ---------------------------------------------------------------------------

    def key(self, username: str, realm: str, algorithm: int) -> bytes | Pending | None:
        """The one key for ``username`` (the first REST secret's, if several)."""
        found = self.keys(username, realm, algorithm)
        if isinstance(found, Pending):
            return found
        return found[0] if found else None

    def keys(self, username: str, realm: str, algorithm: int) -> tuple[bytes, ...] | Pending:
        """Every key ``username`` may have used (one per REST secret), () if none."""
        settings = self.settings
        if realm != settings.realm or not username:
            return ()
        if settings.secrets:
            expiry = rest_expiry(username)
            if expiry is not None:
                return self._rest_keys(username, expiry, algorithm)
        if not settings.long_term or self.store is None:
            return ()
        now = self.clock()
        cached = self._cache.get(username)
        if cached is not None:
            until, record = cached
            if now < until:
                self._cache.move_to_end(username)
                return () if record is None else (self._record_key(record, algorithm),)
            del self._cache[username]
        inflight = self._inflight
        if username not in inflight:
            self._forget_stuck(now)
            if len(inflight) >= settings.max_pending:
                self.lookups_refused += 1
                return ()
            inflight[username] = now
        return PENDING

    def _rest_keys(self, username: str, expiry: int, algorithm: int) -> tuple[bytes, ...]:
        if expiry < self.wall():
            self.rest_expired += 1
            return ()
        cache = self._rest_cache
        found = cache.get((username, algorithm))
        if found is None:
            realm = self.settings.realm
            found = tuple(
                long_term_key(username, realm, rest_password(secret, username), algorithm)
                for secret in self.settings.secrets
            )
            if len(cache) >= self.settings.max_cache:
                cache.clear()  # bounded; the keys are recomputed on demand
            cache[(username, algorithm)] = found
        return found

    @staticmethod
    def _record_key(record: UserRecord, algorithm: int) -> bytes:
        hexed = record.ha1_sha256 if algorithm == ALGORITHM_SHA256 else record.ha1_md5
        return bytes.fromhex(hexed)

    def _forget_stuck(self, now: float) -> None:
        """Drop look-ups nobody finished (the service lost the Lookup) after 30 s."""
        inflight = self._inflight
        for name in [n for n, started in inflight.items() if now - started > 30.0]:
            del inflight[name]

    async def fetch(self, username: str) -> bool:
        """Load ``username`` from the store into the cache; True if the user exists.

        Never raises: a store failure is counted (``store_errors``, ``last_error``) and
        cached as "unknown" for ``error_ttl`` seconds, so the re-fed request gets a 401
        instead of another look-up."""
        settings = self.settings
        store = self.store
        if store is None:
            return False
        self.lookups += 1
        try:
            record = await store.get_user(username)
        except Exception as exc:
            self.store_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._remember(username, None, settings.error_ttl)
            return False
        finally:
            self._inflight.pop(username, None)
        if record is not None and (record.realm != settings.realm or record.name != username):
            record = None
        ttl = settings.cache_ttl if record is not None else settings.negative_ttl
        self._remember(username, record, ttl)
        return record is not None

    def _remember(self, username: str, record: UserRecord | None, ttl: float) -> None:
        cache = self._cache
        cache[username] = (self.clock() + ttl, record)
        cache.move_to_end(username)
        while len(cache) > self.settings.max_cache:
            cache.popitem(last=False)

    def forget(self, username: str | None = None) -> None:
        """Drop one cached user (after ``rtc64 user add``), or all of them."""
        if username is None:
            self._cache.clear()
        else:
            self._cache.pop(username, None)

    def __len__(self) -> int:
        return len(self._cache)

    # --- nonces -------------------------------------------------------------------------

    def nonce(self, client: _Client, now: float) -> str:
        """A fresh nonce bound to ``client``'s source prefix and ``now``, remembered as
        verified for that source address (its next request skips the MAC)."""
        issued = int(now) & 0xFFFFFFFF
        stamp = f"{issued:08x}"
        source = client.remote[0]
        nonce = self._prefix + stamp + self._nonce_mac(stamp, source)
        verified = self._verified
        if len(verified) >= VERIFIED_NONCES:
            verified.clear()
        verified[(nonce, source)] = issued
        return nonce

    def nonce_ok(self, nonce: str | bytes, client: _Client, now: float) -> NonceCheck:
        """True, ``STALE`` (ours but expired: 438) or False (not ours / another source)."""
        if isinstance(nonce, bytes):
            try:
                nonce = nonce.decode("ascii")
            except UnicodeDecodeError:
                return False
        source = client.remote[0]
        verified = self._verified
        issued = verified.get((nonce, source), -1)
        if issued < 0:
            prefix = self._prefix
            if len(nonce) != len(prefix) + _TS_DIGITS + _MAC_CHARS or not nonce.startswith(prefix):
                return False
            stamp = nonce[len(prefix) : len(prefix) + _TS_DIGITS]
            mac = nonce[len(prefix) + _TS_DIGITS :]
            try:
                issued = int(stamp, 16)
            except ValueError:
                return False
            if not hmac.compare_digest(mac, self._nonce_mac(stamp, source)):
                return False
            if len(verified) >= VERIFIED_NONCES:
                verified.clear()
            verified[(nonce, source)] = issued
        age = (int(now) & 0xFFFFFFFF) - issued
        if age < 0:
            return False
        return True if age <= self.settings.nonce_lifetime else STALE

    def _nonce_mac(self, stamp: str, source: IPAddress) -> str:
        data = self._prefix_bytes + stamp.encode() + _source_prefix(source)
        mac = self._mac.copy()
        mac.update(data)
        digest = mac.digest()[:_MAC_BYTES]  # base64url as ``base64.urlsafe_b64encode``
        return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode()


def turn_uris(
    listeners: Iterable[tuple[str, IPAddress, int]],
    external: Iterable[IPAddress] = (),
    host: Iterable[IPAddress] = (),
) -> list[str]:
    """RFC 7065 URIs for ``(transport, address, port)`` listeners: ``turn:`` for udp and
    tcp, ``turns:`` for tls. A family's external address (1:1 NAT) replaces its listen
    address; a wildcard listener stands for the host's addresses of its family (routable
    ones; loopback only when nothing else exists; never link-local)."""
    outside = {a.version: a for a in external}
    mine = sorted(set(host), key=lambda a: (a.version, int(a)))
    uris: list[str] = []
    for transport, address, port in listeners:
        if address.version in outside:
            hosts: list[IPAddress] = [outside[address.version]]
        elif address.is_unspecified:
            same = [a for a in mine if a.version == address.version and not a.is_link_local]
            hosts = [a for a in same if not a.is_loopback] or same
        else:
            hosts = [address]
        scheme = "turns" if transport == "tls" else "turn"
        wire = "udp" if transport == "udp" else "tcp"
        for ip in hosts:
            shown = f"[{ip}]" if ip.version == 6 else str(ip)
            uri = f"{scheme}:{shown}:{port}?transport={wire}"
            if uri not in uris:
                uris.append(uri)
    return uris


def secrets_from(values: Iterable[str]) -> tuple[bytes, ...]:
    """Configured secret strings as bytes (empty ones dropped)."""
    return tuple(v.encode() for v in values if v)
