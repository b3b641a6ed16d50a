"""Digest authentication for SIP, sans-I/O: parse, challenge, compute, verify.

Rules (RFC 3261 §22.4 and §25.1 grammar, RFC 7616 §3.4, RFC 8760, RFC 2617 §3.2.2,
RFC 2069 for clients that send no ``qop``):

- The caller hands in header *values* (bytes or str); only those are decoded (UTF-8,
  strictly), never a whole message. Bad peer input raises ``RemoteProtocolError`` (400)
  naming the problem, and nothing else.
- Parameter names are case-insensitive, duplicates and missing required parameters are
  errors, values may be tokens or quoted-strings (clients quote ``qop`` and ``algorithm``
  in practice). Unknown auth-params are kept, untouched.
- Algorithms: MD5, MD5-sess, SHA-256, SHA-256-sess (RFC 7616 §3.4.2); no ``algorithm``
  means MD5. Challenges are one per algorithm, SHA-256 first (RFC 8760 §2.4). Only
  ``qop=auth`` is offered; ``auth-int`` never verifies.
- ``ha1()`` is what a user store keeps: H(username:realm:password) for the algorithm's hash
  (also for the -sess variants, whose session key is derived per nonce/cnonce).
- Nonces are stateless (RFC 7616 §3.3 suggests time-stamp + H(time-stamp:secret)):
  base64url(time ms | 8 random bytes | HMAC-SHA-256(secret, ...)[:16]). Any gateway
  sharing the secret verifies them; pass a wall-clock ``now`` when several gateways share it.
- ``NonceCounter`` refuses a nonce-count that is not above the highest seen for that
  nonce (RFC 7616 §3.4.5 replay detection); bounded, evicts the oldest entries. Started
  with ``since`` it refuses counts for nonces issued before then (stale: as Kamailio's
  auth module does after a restart, the table of earlier counts being gone).
- SIP workers: a factory made with ``origin`` k writes k as the first random byte, so
  ``nonce_origin`` tells (without the secret) which worker's counter owns a nonce.
- Responses, MACs and secrets are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rtc64.errors import LocalProtocolError, RemoteProtocolError

# --- algorithms ---------------------------------------------------------------------------


class Algorithm(enum.Enum):
    """A digest algorithm token (RFC 7616 §3.4.2)."""

    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    MD5 = "MD5"
    MD5_SESS = "MD5-sess"

    @property
    def hash_name(self) -> str:
        return "sha256" if self in (Algorithm.SHA_256, Algorithm.SHA_256_SESS) else "md5"

    @property
    def is_session(self) -> bool:
        return self in (Algorithm.SHA_256_SESS, Algorithm.MD5_SESS)

    @property
    def hex_length(self) -> int:
        """Length of a response in lower-case hex digits."""
        return 64 if self.hash_name == "sha256" else 32

    @classmethod
    def parse(cls, token: str) -> Algorithm:
        """The algorithm named by ``token`` (case-insensitive), else ``RemoteProtocolError``."""
        found = _ALGORITHMS.get(token.lower())
        if found is None:
            raise _bad(f"unsupported digest algorithm {token!r}")
        return found


_ALGORITHMS = {a.value.lower(): a for a in Algorithm}
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = (Algorithm.SHA_256, Algorithm.MD5)
"""What a server offers by default: SHA-256 then MD5 (RFC 8760 §2.4)."""


def _h(algorithm: Algorithm, data: bytes) -> str:
    # MD5 is the protocol's own (RFC 7616 keeps it for compatibility), not our choice.
    return hashlib.new(algorithm.hash_name, data, usedforsecurity=False).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: Algorithm = Algorithm.MD5) -> str:
    """H(username:realm:password), the value a user store keeps (RFC 7616 §3.4.2)."""
    return _h(algorithm, f"{username}:{realm}:{password}".encode())


def compute_response(
    ha1: str,
    *,
    algorithm: Algorithm,
    method: bytes,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2069 form when ``qop`` is None)."""
    key = ha1
    if algorithm.is_session:
        key = _h(algorithm, f"{ha1}:{nonce}:{cnonce or ''}".encode())
    ha2 = _h(algorithm, method + b":" + uri.encode())
    if qop is None:
        return _h(algorithm, f"{key}:{nonce}:{ha2}".encode())
    return _h(algorithm, f"{key}:{nonce}:{nc or ''}:{cnonce or ''}:{qop}:{ha2}".encode())


# --- header value grammar -------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e])*)"')
_UNQUOTE_RE = re.compile(r"\\(.)", re.DOTALL)
_WS_RE = re.compile(r"[ \t\r\n]*")
_SEP_RE = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")
_EQ_RE = re.compile(r"[ \t\r\n]*=[ \t\r\n]*")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")
_QDTEXT_RE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")

Param = tuple[str, str]


def _skip_ws(text: str, pos: int) -> int:
    m = _WS_RE.match(text, pos)
    return pos if m is None else m.end()


def _bad(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Bad Request: {reason}", 400)


# One match per parameter: name, '=', quoted-string (group 2) or token (group 3), then a
# comma (group 4) or the end. A value that does not fit goes to ``_split_slow``, which
# walks the same grammar step by step to say what is wrong.
_SCHEME_RE = re.compile(r"[ \t\r\n]*[Dd][Ii][Gg][Ee][Ss][Tt][ \t\r\n]+")
_PARAM_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t\r\n]*=[ \t\r\n]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e])*)"|([A-Za-z0-9\-.!%*_+`\'~]+))'
    r"[ \t\r\n]*(?:(,)[ \t\r\n]*|\Z)"
)


def _decode(value: bytes | str, what: str) -> str:
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        text.encode("utf-8")  # a str may hold lone surrogates
    except UnicodeError:
        raise _bad(f"{what} is not UTF-8") from None
    return text


def _split(value: bytes | str, what: str) -> list[Param]:
    """Split ``Digest name=value, ...`` into (lower-case name, unquoted value) pairs: one
    regular-expression match per parameter; anything it does not take is diagnosed by
    ``_split_slow`` (same result for every input, the error named)."""
    text = _decode(value, what)
    m = _SCHEME_RE.match(text)
    if m is None:
        return _split_slow(text, what)
    pos, end = m.end(), len(text)
    match = _PARAM_RE.match
    params: list[Param] = []
    while True:
        m = match(text, pos)
        if m is None:
            return _split_slow(text, what)
        name, quoted, token, comma = m.groups()
        if quoted is None:
            params.append((name.lower(), token))
        elif "\\" in quoted:
            params.append((name.lower(), _UNQUOTE_RE.sub(r"\1", quoted)))
        else:
            params.append((name.lower(), quoted))
        pos = m.end()
        if comma is None:
            return params
        if pos == end:
            return _split_slow(text, what)  # a trailing comma


def _split_slow(value: bytes | str, what: str) -> list[Param]:
    """``_split`` step by step: the parameters, or the error naming what is wrong."""
    text = _decode(value, what)
    pos = _skip_ws(text, 0)
    m = _TOKEN_RE.match(text, pos)
    if m is None:
        raise _bad(f"{what} has no authentication scheme")
    scheme, pos = m.group(), m.end()
    if scheme.lower() != "digest":
        raise _bad(f"unsupported authentication scheme {scheme!r}")
    ws = _skip_ws(text, pos)
    if ws == pos and pos < len(text):
        raise _bad(f"{what}: bad character after scheme {scheme!r}")
    pos = ws
    if pos >= len(text):
        raise _bad(f"{what} has no parameters")
    params: list[Param] = []
    while True:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise _bad(f"{what}: expected a parameter name at offset {pos}")
        name, pos = m.group().lower(), m.end()
        m = _EQ_RE.match(text, pos)
        if m is None:
            raise _bad(f"{what}: parameter {name!r} has no value")
        pos = m.end()
        if text.startswith('"', pos):
            m = _QUOTED_RE.match(text, pos)
            if m is None:
                raise _bad(f"{what}: bad or unterminated quoted-string in {name!r}")
            params.append((name, _UNQUOTE_RE.sub(r"\1", m.group(1))))
        else:
            m = _TOKEN_RE.match(text, pos)
            if m is None:
                raise _bad(f"{what}: parameter {name!r} has an empty or bad value")
            params.append((name, m.group()))
        pos = m.end()
        m = _SEP_RE.match(text, pos)
        if m is None:
            if _skip_ws(text, pos) == len(text):
                return params
            raise _bad(f"{what}: expected ',' after parameter {name!r}")
        pos = m.end()


def _table(params: list[Param], what: str, required: Iterable[str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for name, value in params:
        if name in table:
            raise _bad(f"{what}: duplicate parameter {name!r}")
        table[name] = value
    for name in required:
        if name not in table:
            raise _bad(f"{what}: missing parameter {name!r}")
    return table


def _quote(value: str) -> str:
    """A quoted-string; refuses control characters (we never write a header break)."""
    if _QDTEXT_RE.fullmatch(value) is None:
        raise LocalProtocolError(f"control character in digest parameter {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- credentials (Authorization / Proxy-Authorization) -------------------------------------

_CRED_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_CRED_KNOWN = frozenset((*_CRED_REQUIRED, "algorithm", "cnonce", "opaque", "qop", "nc"))


@dataclass(frozen=True, slots=True, init=False)
class Credentials:
    """Digest credentials from an ``Authorization`` or ``Proxy-Authorization`` value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    """Lower-case hex."""
    algorithm: Algorithm = Algorithm.MD5
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    """Nonce-count as sent (8 hex digits): the response is computed over this text."""
    params: tuple[Param, ...] = ()
    """Other auth-params, lower-case names, in order."""

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        username: str,
        realm: str,
        nonce: str,
        uri: str,
        response: str,
        algorithm: Algorithm = Algorithm.MD5,
        cnonce: str | None = None,
        opaque: str | None = None,
        qop: str | None = None,
        nc: str | None = None,
        params: tuple[Param, ...] = (),
    ) -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "realm", realm)
        object.__setattr__(self, "nonce", nonce)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "cnonce", cnonce)
        object.__setattr__(self, "opaque", opaque)
        object.__setattr__(self, "qop", qop)
        object.__setattr__(self, "nc", nc)
        object.__setattr__(self, "params", params)

    @property
    def nonce_count(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)


def parse_credentials(value: bytes | str) -> Credentials:
    """Parse ``Digest username="..", realm="..", ...``; ``RemoteProtocolError`` if bad."""
    what = "credentials"
    params = _split(value, what)
    table = _table(params, what, _CRED_REQUIRED)
    alg = table.get("algorithm")
    algorithm = Algorithm.MD5 if alg is None else Algorithm.parse(alg)
    response = table["response"]
    if len(response) != algorithm.hex_length or _HEX_RE.fullmatch(response) is None:
        raise _bad(f"{what}: response is not {algorithm.hex_length} hex digits")
    qop, nc, cnonce = table.get("qop"), table.get("nc"), table.get("cnonce")
    if qop is not None:
        if _TOKEN_RE.fullmatch(qop) is None:
            raise _bad(f"{what}: bad qop value")
        if nc is None or cnonce is None:
            raise _bad(f"{what}: qop needs both nc and cnonce")
    elif nc is not None:
        raise _bad(f"{what}: nc without qop")
    if nc is not None and _NC_RE.fullmatch(nc) is None:
        raise _bad(f"{what}: nc is not 8 hex digits")
    if algorithm.is_session and cnonce is None:
        raise _bad(f"{what}: {algorithm.value} needs a cnonce")
    return Credentials(
        username=table["username"],
        realm=table["realm"],
        nonce=table["nonce"],
        uri=table["uri"],
        response=response.lower(),
        algorithm=algorithm,
        cnonce=cnonce,
        opaque=table.get("opaque"),
        qop=qop,
        nc=nc,
        params=tuple(p for p in params if p[0] not in _CRED_KNOWN),
    )


def format_credentials(credentials: Credentials) -> bytes:
    """The ``Authorization`` value for ``credentials`` (what a client sends)."""
    c = credentials
    parts = [
        f"username={_quote(c.username)}",
        f"realm={_quote(c.realm)}",
        f"nonce={_quote(c.nonce)}",
        f"uri={_quote(c.uri)}",
        f"response={_quote(c.response)}",
        f"algorithm={c.algorithm.value}",
    ]
    if c.cnonce is not None:
        parts.append(f"cnonce={_quote(c.cnonce)}")
    if c.opaque is not None:
        parts.append(f"opaque={_quote(c.opaque)}")
    if c.qop is not None:
        parts.append(f"qop={c.qop}")
    if c.nc is not None:
        parts.append(f"nc={c.nc}")
    parts.extend(f"{n}={_quote(v)}" for n, v in c.params)
    return ("Digest " + ", ".join(parts)).encode()


# --- challenges (WWW-Authenticate / Proxy-Authenticate) -------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class Challenge:
    """One digest challenge (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    opaque: str | None = None
    qop: tuple[str, ...] = ("auth",)
    """Offered qop options; empty for an RFC 2069 challenge."""
    stale: bool = False
    params: tuple[Param, ...] = ()

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        realm: str,
        nonce: str,
        algorithm: Algorithm = Algorithm.MD5,
        opaque: str | None = None,
        qop: tuple[str, ...] = ("auth",),
        stale: bool = False,
        params: tuple[Param, ...] = (),
    ) -> None:
        object.__setattr__(self, "realm", realm)
        object.__setattr__(self, "nonce", nonce)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "opaque", opaque)
        object.__setattr__(self, "qop", qop)
        object.__setattr__(self, "stale", stale)
        object.__setattr__(self, "params", params)


_CHAL_KNOWN = frozenset(("realm", "nonce", "algorithm", "opaque", "qop", "stale"))


def format_challenge(challenge: Challenge) -> bytes:
    """The ``WWW-Authenticate``/``Proxy-Authenticate`` value for one challenge."""
    c = challenge
    parts = [f"realm={_quote(c.realm)}", f"nonce={_quote(c.nonce)}"]
    if c.opaque is not None:
        parts.append(f"opaque={_quote(c.opaque)}")
    parts.append(f"algorithm={c.algorithm.value}")
    if c.qop:
        parts.append(f"qop={_quote(','.join(c.qop))}")
    if c.stale:
        parts.append("stale=true")
    parts.extend(f"{n}={_quote(v)}" for n, v in c.params)
    return ("Digest " + ", ".join(parts)).encode()


def challenges(
    realm: str,
    nonce: str,
    *,
    algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS,
    opaque: str | None = None,
    stale: bool = False,
) -> list[bytes]:
    """One challenge value per algorithm, in the order given (the server's preference,
    RFC 8760 §2.4; the default puts SHA-256 first). Duplicates are dropped."""
    ordered = list(dict.fromkeys(algorithms))
    if not ordered:
        raise LocalProtocolError("no digest algorithm to offer")
    return [format_challenge(Challenge(realm, nonce, a, opaque, ("auth",), stale)) for a in ordered]


def parse_challenge(value: bytes | str) -> Challenge:
    """Parse one ``Digest realm="..", nonce="..", ...`` challenge (what a client reads)."""
    params = _split(value, "challenge")
    table = _table(params, "challenge", ("realm", "nonce"))
    alg, qop = table.get("algorithm"), table.get("qop")
    return Challenge(
        realm=table["realm"],
        nonce=table["nonce"],
        algorithm=Algorithm.MD5 if alg is None else Algorithm.parse(alg),
        opaque=table.get("opaque"),
        qop=() if qop is None else tuple(q.strip() for q in qop.split(",") if q.strip()),
        stale=table.get("stale", "").lower() == "true",
        params=tuple(p for p in params if p[0] not in _CHAL_KNOWN),
    )


def respond(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: bytes,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> Credentials:
    """Client side: credentials answering ``challenge`` (qop=auth if offered, else RFC 2069)."""
    alg = challenge.algorithm
    if challenge.qop and "auth" not in challenge.qop:
        raise LocalProtocolError(f"challenge offers only qop {challenge.qop!r}")
    qop = "auth" if challenge.qop else None
    if cnonce is None and (qop is not None or alg.is_session):
        cnonce = secrets.token_hex(8)
    nc_text = f"{nc:08x}" if qop is not None else None
    key = ha1(username, challenge.realm, password, alg)
    resp = compute_response(
        key, algorithm=alg, method=method, uri=uri, nonce=challenge.nonce,
        qop=qop, nc=nc_text, cnonce=cnonce,
    )  # fmt: skip
    return Credentials(
        username, challenge.realm, challenge.nonce, uri, resp, alg, cnonce,
        challenge.opaque, qop, nc_text,
    )  # fmt: skip


# --- verification ----------------------------------------------------------------------------


def verify(
    credentials: Credentials,
    method: bytes,
    ha1: str,
    *,
    realm: str,
    username: str,
    request_uri: bytes,
    algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS,
    opaque: str | None = None,
    require_qop: bool = False,
) -> bool:
    """True when ``credentials`` prove knowledge of the password behind ``ha1``.

    Also checks the realm, username and algorithm are the expected ones, ``qop`` is auth
    (or absent, RFC 2069, unless ``require_qop``), ``opaque`` matches if given, and the
    ``uri`` parameter equals the Request-URI octet for octet (RFC 7616 §3.4.6). The nonce is
    not checked here: see ``NonceFactory.check`` and ``authenticate``.
    """
    c = credentials
    if c.realm != realm or c.username != username or c.algorithm not in set(algorithms):
        return False
    if c.qop not in (None, "auth") or (require_qop and c.qop is None):
        return False
    if opaque is not None and c.opaque != opaque:
        return False
    if c.uri.encode() != request_uri:
        return False
    expected = compute_response(
        ha1, algorithm=c.algorithm, method=method, uri=c.uri, nonce=c.nonce,
        qop=c.qop, nc=c.nc, cnonce=c.cnonce,
    )  # fmt: skip
    return hmac.compare_digest(expected.encode(), c.response.encode())


# --- stateless nonces ------------------------------------------------------------------------


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"
    """Authentic but expired (or from the future): challenge again with stale=true."""
    INVALID = "invalid"
    """Not made with our secret, or garbled: challenge again, without stale."""


_NONCE_MAC = 16
_NONCE_BYTES = 8 + 8 + _NONCE_MAC
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_NONCE_LABEL = b"rtc64 digest nonce\x00"


class NonceFactory:
    """Issues and checks stateless nonces (time stamp + random + HMAC, no server state).

    ``previous`` secrets still verify (key rotation across a cluster). ``bind`` ties a
    nonce to extra context (a realm, a listener); it must be the same at issue and check.
    """

    __slots__ = ("_entropy", "_keys", "_origin", "max_skew")

    def __init__(
        self,
        secret: bytes,
        *,
        previous: Sequence[bytes] = (),
        max_skew: float = 2.0,
        entropy: Callable[[int], bytes] = secrets.token_bytes,
        origin: int | None = None,
    ) -> None:
        for key in (secret, *previous):
            if len(key) < 16:
                raise LocalProtocolError("nonce secret must be at least 16 bytes")
        if origin is not None and not 0 <= origin <= 255:
            raise LocalProtocolError("nonce origin must be within 0..255")
        self._origin = b"" if origin is None else bytes((origin,))
        self._keys = (secret, *previous)
        self._entropy = entropy
        self.max_skew = max_skew
        """How far in the future (seconds) an issue time may lie: clocks of peers differ."""

    def _mac(self, key: bytes, body: bytes, bind: bytes) -> bytes:
        return hmac.digest(key, _NONCE_LABEL + body + bind, "sha256")[:_NONCE_MAC]

    def issue(self, now: float, *, bind: bytes = b"") -> str:
        """A fresh nonce stamped with ``now`` (seconds, ms precision, not negative)."""
        if now < 0:
            raise LocalProtocolError("nonce time must not be negative")
        origin = self._origin
        body = struct.pack(">Q", int(now * 1000)) + origin + self._entropy(8 - len(origin))
        raw = body + self._mac(self._keys[0], body, bind)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def issued_at(self, nonce: str, *, bind: bytes = b"") -> float | None:
        """The issue time of an authentic nonce, else None."""
        if _NONCE_RE.fullmatch(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce + "=")
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != nonce.encode():
            return None  # non-canonical spelling of the last character
        body, mac = raw[:16], raw[16:]
        if not any(hmac.compare_digest(mac, self._mac(k, body, bind)) for k in self._keys):
            return None
        return int.from_bytes(body[:8], "big") / 1000

    def check(self, nonce: str, now: float, lifetime: float, *, bind: bytes = b"") -> NonceState:
        """VALID if authentic and at most ``lifetime`` seconds old; STALE if authentic only."""
        return self.state(self.issued_at(nonce, bind=bind), now, lifetime)

    def state(self, issued: float | None, now: float, lifetime: float) -> NonceState:
        """The state of a nonce issued at ``issued`` (None: not authentic)."""
        if issued is None:
            return NonceState.INVALID
        if -self.max_skew <= now - issued <= lifetime:
            return NonceState.VALID
        return NonceState.STALE


def nonce_origin(nonce: str) -> int | None:
    """The origin byte of a nonce in our format (not checked: a hint for routing), or
    None when it is not one."""
    if _NONCE_RE.fullmatch(nonce) is None:
        return None
    return base64.urlsafe_b64decode(nonce + "=")[8]


class NonceCounter:
    """Highest nonce-count seen per nonce, to refuse replays (RFC 7616 §3.4.5).

    A count must rise strictly, so a request reordered in flight is refused too (the client
    gets stale=true and retries with a fresh nonce). Entries live ``lifetime`` seconds after
    the nonce's issue time; past ``max_entries`` the oldest go, and any unknown nonce issued
    no later than an evicted one is refused, so eviction never reopens a replay.
    Call ``accept`` only after the response has verified.
    """

    __slots__ = ("_entries", "evictions", "lifetime", "max_entries", "watermark")

    def __init__(
        self, lifetime: float, max_entries: int = 65536, *, since: float = float("-inf")
    ) -> None:
        if max_entries < 1:
            raise LocalProtocolError("max_entries must be at least 1")
        self.lifetime = lifetime
        self.max_entries = max_entries
        self.watermark = since
        self.evictions = 0
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def accept(self, nonce: str, nc: int, issued: float, now: float) -> bool:
        """Record ``nc`` for ``nonce`` (issued at ``issued``); False if it is a replay."""
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first[1] + self.lifetime >= now:
                break
            entries.popitem(last=False)
        found = entries.get(nonce)
        if found is None:
            if issued <= self.watermark:
                return False
        elif nc <= found[0]:
            return False
        entries[nonce] = (nc, issued)  # an update keeps its place: order is first use
        while len(entries) > self.max_entries:
            _, (_, old) = entries.popitem(last=False)
            self.watermark = max(self.watermark, old)
            self.evictions += 1
        return True


# --- all together ---------------------------------------------------------------------------


class Verdict(enum.Enum):
    """What a server does with a request's credentials."""

    OK = "ok"
    STALE = "stale"
    """Right password, old nonce or reused nc: challenge again with stale=true."""
    BAD_NONCE = "bad-nonce"
    """Not our nonce: challenge again; not a password failure."""
    FAILED = "failed"
    """Wrong password, realm, user, algorithm or uri: challenge again and count a failure."""


def authenticate(
    credentials: Credentials,
    method: bytes,
    ha1: str,
    *,
    realm: str,
    username: str,
    request_uri: bytes,
    nonces: NonceFactory,
    now: float,
    lifetime: float,
    counter: NonceCounter | None = None,
    algorithms: Iterable[Algorithm] = DEFAULT_ALGORITHMS,
    opaque: str | None = None,
    bind: bytes = b"",
) -> Verdict:
    """Check nonce, response and nonce-count in the right order (stale only with a good
    response, RFC 7616 §3.3). For an unknown user pass a dummy ``ha1``: same work, FAILED.
    """
    issued = nonces.issued_at(credentials.nonce, bind=bind)
    if issued is None:
        return Verdict.BAD_NONCE
    good = verify(
        credentials, method, ha1, realm=realm, username=username, request_uri=request_uri,
        algorithms=algorithms, opaque=opaque,
    )  # fmt: skip
    if not good:
        return Verdict.FAILED
    if nonces.state(issued, now, lifetime) is not NonceState.VALID:
        return Verdict.STALE
    nc = credentials.nonce_count
    if (
        counter is not None
        and nc is not None
        and not counter.accept(credentials.nonce, nc, issued, now)
    ):
        return Verdict.STALE
    return Verdict.OK
