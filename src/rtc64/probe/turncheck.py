"""TURN/STUN probe logic without I/O: URIs, requests, reading answers, verdicts.

Rules (RFC 7064/7065 URIs, RFC 8489 §6 and §9.2, RFC 8656 §7 and §19, RFC 6156,
draft-uberti-behave-turn-rest §2 for REST credentials):

- ``turn:host[:port][?transport=udp|tcp]``, ``turns:`` (TLS, default 5349), ``stun:``
  (Binding only, UDP and TCP), ``stuns:``; without ``?transport`` a ``turn:`` URI is probed
  over UDP and TCP.
- An Allocate without credentials that gets 401 with REALM and NONCE proves a TURN
  server answers over that family; 440 (Address Family not Supported) or an
  ADDRESS-ERROR-CODE is the family finding even before authentication.
- Allocate with REQUESTED-ADDRESS-FAMILY 4/6 gives the relay family verdicts (the check's
  ``family`` is the relay family); ADDITIONAL-ADDRESS-FAMILY IPv6 asks for both at once.
- Answer times are graded like testRTC's TURN connectivity test: under 2 s good, 2-4 s
  warn, over 4 s bad (``turn.slow``).
- REST credentials: username ``EXPIRY:USER``, password base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family, IPAddress, parse_hostport
from rtc64.probe.verdict import Aspect, Check, Status, Template
from rtc64.stun import channeldata
from rtc64.stun.attributes import (
    ADDITIONAL_ADDRESS_FAMILY,
    ADDRESS_ERROR_CODE,
    LIFETIME,
    NONCE,
    REALM,
    REQUESTED_ADDRESS_FAMILY,
    REQUESTED_TRANSPORT,
    SOFTWARE,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    XOR_RELAYED_ADDRESS,
)
from rtc64.stun.integrity import long_term_key
from rtc64.stun.message import Class, Message, Method, build, decode, encode
from rtc64.stun.reader import StunError

MEDIA = Aspect.MEDIA
GOOD_SECONDS, BAD_SECONDS = 2.0, 4.0
UDP = 17
SOFTWARE_NAME = "rtc64-probe"
DEFAULT_PORTS = {"turn": 3478, "stun": 3478, "turns": 5349, "stuns": 5349}


class TargetError(ValueError):
    """The TURN/STUN URI is not usable."""


@dataclass(frozen=True, slots=True)
class TurnUri:
    scheme: str
    host: str
    port: int
    transports: tuple[str, ...]
    explicit_port: bool

    @property
    def turn(self) -> bool:
        return self.scheme in ("turn", "turns")


def parse_turn_uri(text: str) -> TurnUri:
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise TargetError(f"{text!r}: expected turn:, turns:, stun: or stuns:HOST[:PORT]")
    rest, _, query = rest.partition("?")
    rest = rest.removeprefix("//")
    try:
        hp = parse_hostport(rest)
    except RemoteProtocolError:
        raise TargetError(f"{text!r}: expected HOST[:PORT] after {scheme}:") from None
    asked = parse_qs(query).get("transport", [])
    secure = scheme.endswith("s")
    if asked:
        t = asked[0].lower()
        if t not in ("udp", "tcp"):
            raise TargetError(f"{text!r}: transport must be udp or tcp")
        transports: tuple[str, ...] = ("tls",) if secure else (t,)
    else:
        transports = ("tls",) if secure else ("udp", "tcp")
    host = hp.host if isinstance(hp.host, str) else str(hp.host)
    return TurnUri(scheme, host, hp.port or DEFAULT_PORTS[scheme], transports, hp.port is not None)


def stream_frame_length(buffer: bytes) -> int | None:
    try:
        return channeldata.frame_length(buffer)
    except StunError as exc:
        raise ValueError(str(exc)) from None


def tid() -> bytes:
    return secrets.token_bytes(12)


def binding_request() -> bytes:
    return encode(
        build(Method.BINDING, Class.REQUEST, tid(), SOFTWARE(SOFTWARE_NAME)), fingerprint=True
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    @classmethod
    def rest(cls, secret: str, user: str, now: float, ttl: int = 3600) -> Credentials:
        """TURN REST API credentials valid ``ttl`` seconds from ``now``."""
        name = f"{int(now) + ttl}:{user}"
        mac = hmac.new(secret.encode(), name.encode(), hashlib.sha1).digest()
        return cls(name, base64.b64encode(mac).decode())


@dataclass(frozen=True, slots=True)
class Auth:
    credentials: Credentials
    realm: str
    nonce: str

    @property
    def key(self) -> bytes:
        return long_term_key(self.credentials.username, self.realm, self.credentials.password)

    def fields(self) -> tuple[object, ...]:
        return (USERNAME(self.credentials.username), REALM(self.realm), NONCE(self.nonce))


def allocate_request(
    family: int | None = None, additional: bool = False, auth: Auth | None = None
) -> bytes:
    fields: list[object] = [REQUESTED_TRANSPORT(UDP), LIFETIME(120)]
    if family is not None:
        fields.append(REQUESTED_ADDRESS_FAMILY(Family.INET6 if family == 6 else Family.INET))
    if additional:
        fields.append(ADDITIONAL_ADDRESS_FAMILY(Family.INET6))
    return _signed(Method.ALLOCATE, fields, auth)


def refresh_zero(auth: Auth) -> bytes:
    return _signed(Method.REFRESH, [LIFETIME(0)], auth)


def _signed(method: int, fields: list[object], auth: Auth | None) -> bytes:
    fields = [*fields, SOFTWARE(SOFTWARE_NAME)]
    if auth is not None:
        fields += list(auth.fields())
    msg = build(method, Class.REQUEST, tid(), *fields)  # type: ignore[arg-type]
    return encode(msg, key=auth.key if auth else None, fingerprint=True)


def signed(method: int, fields: Sequence[object], auth: Auth) -> bytes:
    return _signed(method, list(fields), auth)


@dataclass(frozen=True, slots=True)
class StunAnswer:
    """What an answer says: success with addresses, or an error code with REALM/NONCE."""

    success: bool
    code: int = 0
    reason: str = ""
    realm: str = ""
    nonce: str = ""
    mapped: tuple[IPAddress, int] | None = None
    relayed: tuple[tuple[IPAddress, int], ...] = ()
    address_error: tuple[int, int, str] | None = None
    software: str = ""
    bad: str = ""
    lifetime: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def evidence(self) -> dict[str, object]:
        out: dict[str, object] = {"success": self.success}
        if self.code:
            out["error"] = f"{self.code} {self.reason}"
        if self.realm:
            out["realm"] = self.realm
        if self.mapped:
            out["mapped"] = f"{self.mapped[0]} port {self.mapped[1]}"
        if self.relayed:
            out["relayed"] = [f"{a} port {p}" for a, p in self.relayed]
        if self.address_error:
            fam, code, text = self.address_error
            out["address_error"] = f"IPv{fam}: {code} {text}"
        if self.software:
            out["software"] = self.software
        if self.bad:
            out["bad"] = self.bad
        return out


def read_answer(data: bytes) -> StunAnswer:
    """Read a STUN answer; a malformed one is ``bad`` (never raises)."""
    try:
        msg = decode(data)
        return _read(msg)
    except StunError as exc:
        return StunAnswer(False, bad=str(exc)[:200])


def _read(msg: Message) -> StunAnswer:
    software = msg.get(SOFTWARE) or ""
    relayed = tuple(msg.get_all(XOR_RELAYED_ADDRESS))
    address_error = None
    aec = msg.get(ADDRESS_ERROR_CODE)
    if aec is not None:
        address_error = (6 if aec[0] is Family.INET6 else 4, aec[1], aec[2])
    if msg.cls is Class.SUCCESS:
        return StunAnswer(
            True,
            mapped=msg.get(XOR_MAPPED_ADDRESS),
            relayed=relayed,
            address_error=address_error,
            software=software[:80],
            lifetime=msg.get(LIFETIME),
        )
    if msg.cls is Class.ERROR:
        code, reason = msg.error() or (0, "")
        return StunAnswer(
            False,
            code,
            reason[:120],
            msg.get(REALM) or "",
            msg.get(NONCE) or "",
            address_error=address_error,
            software=software[:80],
        )
    return StunAnswer(False, bad="neither a success nor an error response")


def grade(seconds: float) -> Status:
    """testRTC's TURN grading: under 2 s good, over 4 s bad."""
    if seconds < GOOD_SECONDS:
        return Status.PASS
    return Status.WARN if seconds <= BAD_SECONDS else Status.FAIL


def _timed(status: Status, seconds: float, reason: str) -> tuple[Status, str]:
    if status is not Status.PASS:
        return status, reason
    graded = grade(seconds)
    return (graded, "turn.slow") if graded is not Status.PASS else (status, reason)


def binding_check(
    transport: str,
    family: int,
    answer: StunAnswer | None,
    seconds: float,
    error: str = "",
    *,
    via: str = "",
) -> Check:
    where = f"STUN Binding over {transport.upper()}/IPv{family}{via}"
    group = f"turn.binding.{transport}"
    evidence = {"seconds": round(seconds, 3), **(answer.evidence() if answer else {})}
    make = Template("turn.binding", MEDIA, family, group, evidence, reach=True)
    if answer is None:
        return make(Status.FAIL, error or "net.timeout", f"{where}: no answer")
    if answer.bad or not answer.success or answer.mapped is None:
        text = answer.bad or (f"{answer.code} {answer.reason}" if answer.code else "no address")
        return make(Status.FAIL, "stun.bad-response", f"{where}: {text}")
    status, reason = _timed(Status.PASS, seconds, "stun.mapped")
    return make(status, reason, f"{where}: mapped {answer.mapped[0]} in {seconds:.2f} s")


def reachability_check(
    transport: str, family: int, answer: StunAnswer | None, seconds: float, error: str = ""
) -> Check:
    """Allocate without a family and without credentials (what a browser sends first)."""
    where = f"TURN Allocate over {transport.upper()}/IPv{family}"
    evidence = {"seconds": round(seconds, 3), **(answer.evidence() if answer else {})}
    make = Template("turn.allocate", MEDIA, family, f"turn.allocate.{transport}", evidence, True)
    if answer is None:
        return make(Status.FAIL, error or "net.timeout", f"{where}: no answer")
    if answer.bad:
        return make(Status.FAIL, "stun.bad-response", f"{where}: {answer.bad}")
    if answer.code == 401 and answer.realm and answer.nonce:
        status, reason = _timed(Status.PASS, seconds, "turn.auth-required")
        return make(
            status,
            reason,
            f"{where}: TURN answers (401, realm {answer.realm!r}) in {seconds:.2f} s",
        )
    if answer.success:
        fams = ", ".join(f"IPv{a.version}" for a, _ in answer.relayed) or "no"
        return make(
            Status.WARN,
            "turn.allocated",
            f"{where}: allocated without credentials ({fams} relay): an open relay",
        )
    return make(Status.FAIL, "turn.rejected", f"{where}: {answer.code} {answer.reason}")


def relay_check(
    transport: str,
    relay_family: int,
    answer: StunAnswer | None,
    seconds: float,
    error: str = "",
    *,
    authenticated: bool,
) -> Check:
    """Allocate with REQUESTED-ADDRESS-FAMILY ``relay_family``."""
    where = f"TURN relay IPv{relay_family} (REQUESTED-ADDRESS-FAMILY, over {transport.upper()})"
    evidence = {"seconds": round(seconds, 3), **(answer.evidence() if answer else {})}
    make = Template("turn.relay", MEDIA, relay_family, f"turn.relay.{transport}", evidence)
    if answer is None:
        return make(Status.FAIL, error or "net.timeout", f"{where}: no answer")
    family_refused = answer.code == 440 or (
        answer.address_error is not None and answer.address_error[0] == relay_family
    )
    if family_refused:
        reason = "turn.relay-no-ipv6" if relay_family == 6 else "turn.relay-no-ipv4"
        return make(
            Status.FAIL, reason, f"{where}: refused ({answer.code} {answer.reason})".rstrip()
        )
    if answer.success:
        got = [a for a, _ in answer.relayed if a.version == relay_family]
        if not got:
            reason = "turn.relay-no-ipv6" if relay_family == 6 else "turn.relay-no-ipv4"
            return make(
                Status.FAIL, reason, f"{where}: the relayed address is not IPv{relay_family}"
            )
        return make(Status.PASS, "turn.allocated", f"{where}: relayed at {got[0]}")
    if answer.code == 401 and not authenticated:
        return make(Status.SKIPPED, "turn.no-credentials", f"{where}: needs credentials")
    if answer.code in (401, 403, 437, 441) and authenticated:
        return make(Status.FAIL, "turn.auth-failed", f"{where}: {answer.code} {answer.reason}")
    return make(
        Status.FAIL, "turn.rejected", f"{where}: {answer.code} {answer.reason or answer.bad}"
    )


def dual_check(
    transport: str,
    answer: StunAnswer | None,
    seconds: float,
    error: str = "",
    *,
    authenticated: bool,
) -> Check:
    """Allocate with ADDITIONAL-ADDRESS-FAMILY IPv6 (both relays in one allocation)."""
    where = f"TURN dual allocation (ADDITIONAL-ADDRESS-FAMILY, over {transport.upper()})"
    evidence = {"seconds": round(seconds, 3), **(answer.evidence() if answer else {})}
    make = Template("turn.dual", MEDIA, None, f"turn.dual.{transport}", evidence)
    if answer is None:
        return make(Status.FAIL, error or "net.timeout", f"{where}: no answer")
    if answer.success:
        families = sorted({a.version for a, _ in answer.relayed})
        if families == [4, 6]:
            return make(Status.PASS, "turn.allocated", f"{where}: relayed on IPv4 and IPv6")
        return make(
            Status.WARN,
            "turn.no-dual-allocation",
            f"{where}: only IPv{families[0] if families else '?'} relayed",
        )
    if answer.code == 401 and not authenticated:
        return make(Status.SKIPPED, "turn.no-credentials", f"{where}: needs credentials")
    return make(
        Status.WARN, "turn.no-dual-allocation", f"{where}: {answer.code} {answer.reason}".rstrip()
    )


def default_relay_check(transport: str, family: int, answer: StunAnswer) -> Check:
    """What a browser's Allocate (no REQUESTED-ADDRESS-FAMILY) gets over ``family``."""
    where = f"browser-style Allocate over {transport.upper()}/IPv{family}"
    make = Template("turn.default-relay", MEDIA, family, f"turn.default-relay.{transport}",
                    answer.evidence())  # fmt: skip
    if not answer.success:
        return make(Status.INFO, "turn.rejected", f"{where}: {answer.code} {answer.reason}")
    relayed = ", ".join(f"IPv{a.version} {a}" for a, _ in answer.relayed) or "no address"
    return make(Status.INFO, "turn.allocated", f"{where}: relayed on {relayed}")
