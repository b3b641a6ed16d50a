# Long-term credential checks of TURN requests (RFC 8489 §9.2.4, RFC 8656 §5).
#
# Rules, in order:
# - Open mode (a lab only, ``TurnSettings.open``): every request is accepted, unsigned.
# - No MESSAGE-INTEGRITY(-SHA256): 401 with REALM, NONCE and PASSWORD-ALGORITHMS.
# - Integrity but no USERNAME, REALM or NONCE: 400 (USERHASH alone is not supported: 400).
# - A nonce that is not ours: 401; an expired one: 438 with a fresh one.
# - Another realm: 401. PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS (or the reverse),
#   a list unlike ours, or an algorithm we did not offer: 400. Neither: MD5.
# - Unknown user or a wrong integrity value: 401. ``PENDING`` key: wait for a Lookup.
#   With several keys (TURN REST secrets being rotated) any of them may sign.
# - Responses to an authenticated request carry integrity with the same key, in the
#   same form (MESSAGE-INTEGRITY-SHA256 when the request used it).
# Nothing here keeps state: a flood of unauthenticated requests costs one HMAC each.
"""Authenticator: the verdict on a request's credentials."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rtc64.stun.attributes import (
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    NONCE,
    PASSWORD_ALGORITHM,
    PASSWORD_ALGORITHMS,
    REALM,
    USERNAME,
    Field,
)
from rtc64.stun.message import Message, check_integrity
from rtc64.turn.events import ClientFlow
from rtc64.turn.protocols import MD5, Credentials
from rtc64.turn.settings import TurnSettings


class Authenticated:
    """The request is someone's: sign the answer with ``key`` (None in open mode).

    Like ``Rejected`` a plain immutable class, not a frozen dataclass: one per request,
    constructed natively in the mypyc build (a dataclass's ``__init__`` is Python)."""

    __slots__ = ("key", "sha256", "username")

    def __init__(self, username: str, key: bytes | None, sha256: bool) -> None:
        self.username: Final = username
        self.key: Final = key
        self.sha256: Final = sha256

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Authenticated):
            return NotImplemented
        return (self.username, self.key, self.sha256) == (other.username, other.key, other.sha256)

    def __hash__(self) -> int:
        return hash((self.username, self.key, self.sha256))

    def __repr__(self) -> str:
        return f"Authenticated(username={self.username!r}, key=..., sha256={self.sha256!r})"


class Rejected:
    """Answer ``code`` unsigned, with ``fields`` (REALM/NONCE/... for 401 and 438)."""

    __slots__ = ("code", "fields", "reason")

    def __init__(
        self, code: int, reason: str, fields: tuple[Field | tuple[int, bytes], ...] = ()
    ) -> None:
        self.code: Final = code
        self.reason: Final = reason
        self.fields: Final = fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rejected):
            return NotImplemented
        return (self.code, self.reason, self.fields) == (other.code, other.reason, other.fields)

    def __hash__(self) -> int:
        return hash((self.code, self.reason, self.fields))

    def __repr__(self) -> str:
        return f"Rejected(code={self.code!r}, reason={self.reason!r}, fields={self.fields!r})"


@dataclass(frozen=True, slots=True)
class Wait:
    """The user is being fetched: emit a Lookup and drop the request."""

    username: str


Verdict = Authenticated | Rejected | Wait

_MI: Final = MESSAGE_INTEGRITY.type
_MI256: Final = MESSAGE_INTEGRITY_SHA256.type
_USER: Final = USERNAME.type
_REALM: Final = REALM.type
_NONCE: Final = NONCE.type
_ALGORITHM: Final = PASSWORD_ALGORITHM.type
_ALGORITHMS: Final = PASSWORD_ALGORITHMS.type

OPEN = Authenticated("", None, False)


class Authenticator:
    """Checks requests against ``credentials`` for ``settings.realm``."""

    __slots__ = ("_algorithms", "_challenge", "_credentials", "_default", "_many", "_settings")

    def __init__(self, settings: TurnSettings, credentials: Credentials) -> None:
        self._settings = settings
        self._credentials = credentials
        self._algorithms = tuple((a, b"") for a in settings.password_algorithms)
        self._challenge = (  # encoded once: every new client gets a 401 first
            REALM(settings.realm).pack(b""),
            PASSWORD_ALGORITHMS(self._algorithms).pack(b""),
        )
        self._default = MD5 if MD5 in settings.password_algorithms else None
        """The algorithm of a request with neither PASSWORD-ALGORITHM nor -ALGORITHMS."""
        many = getattr(credentials, "keys", None)
        self._many: Callable[[str, str, int], object] | None = many if callable(many) else None

    def challenge(self, code: int, reason: str, client: ClientFlow, now: float) -> Rejected:
        """A 401 or 438 with what the client needs to try again."""
        nonce = self._credentials.nonce(client, now)
        realm, algorithms = self._challenge
        return Rejected(code, reason, (realm, NONCE(nonce).pack(b""), algorithms))

    def check(self, msg: Message, client: ClientFlow, now: float) -> Verdict:
        """The verdict on ``msg`` (see the module rules); raises ``StunError`` only for a
        malformed credential attribute (answer 400)."""
        if self._settings.open:
            return OPEN
        # one pass, no dict: the first value of each type, as get()
        raw_username: bytes | None = None
        raw_realm: bytes | None = None
        raw_nonce: bytes | None = None
        has_mi = has_mi256 = algorithms = False
        for t, v in msg.attributes:
            if t == _USER:
                if raw_username is None:
                    raw_username = v
            elif t == _REALM:
                if raw_realm is None:
                    raw_realm = v
            elif t == _NONCE:
                if raw_nonce is None:
                    raw_nonce = v
            elif t == _MI:
                has_mi = True
            elif t == _MI256:
                has_mi256 = True
            elif t in (_ALGORITHM, _ALGORITHMS):
                algorithms = True
        if has_mi256:
            sha256 = True
        elif has_mi:
            sha256 = False
        else:
            return self.challenge(401, "Unauthenticated", client, now)
        tid = msg.transaction_id
        username = None if raw_username is None else USERNAME.decode(raw_username, tid)
        realm = None if raw_realm is None else REALM.decode(raw_realm, tid)
        nonce = None if raw_nonce is None else NONCE.decode(raw_nonce, tid)
        if username is None or realm is None or nonce is None:
            return Rejected(400, "USERNAME, REALM and NONCE are required")
        fresh = self._credentials.nonce_ok(nonce, client, now)
        if fresh == "stale":
            return self.challenge(438, "Stale Nonce", client, now)
        if not fresh:
            return self.challenge(401, "Unauthenticated", client, now)
        if realm != self._settings.realm:
            return self.challenge(401, "Unauthenticated", client, now)
        algorithm = self._algorithm(msg) if algorithms else self._default
        if algorithm is None:
            return Rejected(400, "PASSWORD-ALGORITHM does not match PASSWORD-ALGORITHMS")
        found = self._keys(username, realm, algorithm)
        if found is None:
            return Wait(username)
        for key in found:
            if check_integrity(msg, key):
                return Authenticated(username, key, sha256)
        return self.challenge(401, "Unauthenticated", client, now)

    def _keys(self, username: str, realm: str, algorithm: int) -> tuple[bytes, ...] | None:
        """Every key the user may have signed with (several TURN REST secrets during a
        rotation: ``credentials.keys`` when it exists), None while the user is fetched.
        Any answer that is not a key, a tuple of keys or None means "pending", so a
        ``Pending`` of another module is understood too."""
        many = self._many
        found: object = (
            many(username, realm, algorithm)
            if many is not None
            else self._credentials.key(username, realm, algorithm)
        )
        if found is None:
            return ()
        if isinstance(found, bytes):
            return (found,)
        if isinstance(found, tuple):
            return tuple(k for k in found if isinstance(k, bytes))
        return None

    def _algorithm(self, msg: Message) -> int | None:
        chosen = msg.get(PASSWORD_ALGORITHM)
        offered = msg.get(PASSWORD_ALGORITHMS)
        if chosen is None and offered is None:
            return MD5 if MD5 in self._settings.password_algorithms else None
        if chosen is None or offered is None or offered != self._algorithms:
            return None
        if (chosen[0], b"") not in self._algorithms:
            return None
        return chosen[0]
