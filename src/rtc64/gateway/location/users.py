# User records for digest authentication (RFC 3261 §22.4, RFC 7616 §3.4.2, RFC 8760).
#
# Rules:
# - A record never holds the password: only HA1 = H(username ":" realm ":" password) for
#   MD5 and SHA-256, lower-case hex, computed once from the password by ``from_password``
#   with ``rtc64.sip.digest.ha1`` (the one HA1 implementation).
# - HA1 is password-equivalent for that realm: stores keep it out of logs and ``repr``, and
#   callers compare digests with ``hmac.compare_digest``.
# - Names and realms are compared exactly (SIP user names are case-sensitive).
# - ``aors`` lists extra addresses-of-record the user may register (canonical
#   ``sip:user@host`` keys, ``bindings.canonical_aor``); ``sip:NAME@<served domain>`` is
#   always the user's own and needs no entry (RFC 3261 §10.3 step 6).

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rtc64.sip import digest
from rtc64.sip.digest import Algorithm

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user allowed to register and call: name, realm and the digest HA1 values."""

    name: str
    realm: str
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)
    aors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("user name must not be empty")
        if not _HEX32.fullmatch(self.ha1_md5):
            raise ValueError("ha1_md5 must be 32 lower-case hex digits")
        if not _HEX64.fullmatch(self.ha1_sha256):
            raise ValueError("ha1_sha256 must be 64 lower-case hex digits")
        if not all(isinstance(a, str) and a.startswith("sip:") for a in self.aors):
            raise ValueError("aors must be canonical sip: addresses-of-record")

    @classmethod
    def from_password(
        cls, name: str, realm: str, password: str, aors: Iterable[str] = ()
    ) -> UserRecord:
        """Compute both HA1 values from the password; the password is not kept."""
        return cls(
            name=name,
            realm=realm,
            ha1_md5=digest.ha1(name, realm, password, Algorithm.MD5),
            ha1_sha256=digest.ha1(name, realm, password, Algorithm.SHA_256),
            aors=tuple(dict.fromkeys(aors)),
        )

    def ha1(self, algorithm: Algorithm) -> str:
        """The HA1 to verify ``algorithm`` with (``-sess`` variants use the same HA1)."""
        return self.ha1_sha256 if algorithm.hash_name == "sha256" else self.ha1_md5

    def to_dict(self) -> dict[str, str]:
        """JSON-able form written by the store backends."""
        return {
            "name": self.name,
            "realm": self.realm,
            "ha1_md5": self.ha1_md5,
            "ha1_sha256": self.ha1_sha256,
            "aors": json.dumps(list(self.aors)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserRecord:
        """Inverse of ``to_dict``; ``ValueError`` if malformed."""
        try:
            values = {k: data[k] for k in ("name", "realm", "ha1_md5", "ha1_sha256")}
        except KeyError as exc:
            raise ValueError(f"user field {exc.args[0]} missing") from None
        if not all(isinstance(v, str) for v in values.values()):
            raise ValueError("user fields must be strings")
        return cls(**values, aors=aors_from_json(data.get("aors", "[]")))


def aors_from_json(raw: object) -> tuple[str, ...]:
    """The stored ``aors`` value (a JSON array of strings); ``ValueError`` if malformed."""
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except json.JSONDecodeError:
        raise ValueError("aors is not a JSON array") from None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ValueError("aors must be a JSON array of strings")
    return tuple(value)
