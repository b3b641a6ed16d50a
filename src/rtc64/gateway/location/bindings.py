# Location-service data: one registered contact of an address-of-record (RFC 3261 §10).
#
# Rules:
# - A Binding is a frozen, slotted value; wire values (Contact URI, Call-ID, Path, instance,
#   User-Agent) stay bytes, exactly as registered. Addresses are ``ipaddress`` objects and keep
#   everything: IPv4-mapped IPv6 stays IPv6, a zone id (``fe80::1%eth0``) stays attached.
# - ``expires_at`` is absolute wall-clock seconds (``time.time()`` scale) so every gateway
#   sharing a store agrees on it; a binding is live while ``now < expires_at``.
# - The AOR key is canonical, built from the parsed URI (sip/uri.py): ``sip:user@host`` with
#   the host lower-case (IP hosts in their one formatted form), user exact after
#   %-unescaping, URI parameters and port removed (RFC 3261 §10.3 step 5). Every alias of
#   the gateway (its addresses and host names) keys as the one local domain
#   (``Identity.aor_keys``); keys stored by older versions under an alias stay readable
#   (the proxy falls back to the key as written) and move on the phone's next REGISTER.
# - The dict form (``to_dict``/``from_dict``) is what both store backends write: JSON-able,
#   compact (absent values are omitted), and exact: bytes map 1:1 to latin-1 code points,
#   floats round-trip through ``repr``.
# - RFC 5626 flows: a binding with ``instance`` and ``reg_id`` is one flow of a UA instance
#   (transport, received address and port, listener); ``registered_at`` (wall-clock seconds
#   of its last REGISTER) picks the most recent flow of an instance first. Stored data
#   without it (older versions) reads as None and sorts last.
# - The row form (``to_row``/``from_row``) is what long-lived in-memory tables hold (the
#   store's cache, the keepalive schedule, the registration log): a plain tuple of numbers,
#   strings and bytes (the address packed into an int), which the garbage collector stops
#   tracking after its first pass, so 100,000 bindings add nothing to a full collection's
#   walk (a Binding and its address object are two tracked objects each).
# RFC 3261 §10.3, RFC 3327 (Path), RFC 5626 (+sip.instance, reg-id).

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import format_host
from rtc64.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

IPAddress = IPv4Address | IPv6Address
BindingRow = tuple[
    str, bytes, float, bytes, int, str, str, float | None, int | str | None, int | None,
    tuple[bytes, ...], bytes | None, int | None, bytes, float | None,
]  # fmt: skip
"""A Binding as a plain tuple (``Binding.to_row``): its fields in order, the address packed."""
ROW_EXPIRES_AT: Final = 2
_V6_FLAG = 1 << 128
_V6_MASK = _V6_FLAG - 1

TRANSPORTS = frozenset({"udp", "tcp", "tls", "ws", "wss"})
MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: CSeq sequence numbers are below 2**31
MAX_REG_ID = 2**31 - 1  # RFC 5626 §4.2: reg-id is 1..2**31-1


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _unlatin1(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"binding field {what}: expected a string, got {type(text).__name__}")
    return text.encode("latin-1")


def aor_key(uri: SipUri, *, host: str | None = None) -> str:
    """The location-service key of a SIP URI: ``sip:user@host`` (RFC 3261 §10.3 step 5).

    Built from the parsed URI: parameters, headers, password and port dropped, the user
    part unescaped, the host in its one formatted form (lower-case name without a trailing
    dot; ``[2001:db8::1]``). ``sips:`` AORs share the ``sip:`` key (as Kamailio's usrloc
    does); the sip layer decides whether a target must be reached over TLS. ``host``
    replaces the URI's host: the local domain an alias of the gateway stands for
    (``Identity.aor_keys``). Raises ``RemoteProtocolError`` (400) for a user part that is
    not UTF-8.
    """
    if host is None:
        host = format_host(uri.host.rstrip(".") if isinstance(uri.host, str) else uri.host)
    user_bytes = uri.unescaped_user
    if user_bytes is None:
        return f"sip:{host}"
    try:
        user = user_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("Bad Request: address-of-record user is not UTF-8") from None
    return f"sip:{user}@{host}"


def canonical_aor(uri: bytes | str | Uri) -> str:
    """``aor_key`` of a URI given as text or parsed; ``RemoteProtocolError`` (400) for
    one that is not a SIP/SIPS URI with a valid host."""
    if not isinstance(uri, SipUri | TelUri | AbsoluteUri):
        raw = uri.encode("utf-8") if isinstance(uri, str) else uri
        uri = parse_uri(raw.strip(), "address-of-record")
    if not isinstance(uri, SipUri):
        raise RemoteProtocolError("Bad Request: address-of-record is not a SIP URI")
    return aor_key(uri)


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact registered for an address-of-record, with what the registrar saw."""

    aor: str
    contact: bytes
    expires_at: float
    call_id: bytes
    cseq: int
    transport: str
    listener: str
    q: float | None = None
    received_ip: IPAddress | None = None
    received_port: int | None = None
    path: tuple[bytes, ...] = ()
    instance: bytes | None = None
    reg_id: int | None = None
    user_agent: bytes = b""
    registered_at: float | None = None
    _row: BindingRow | None = field(default=None, init=False, compare=False, repr=False)
    """``to_row`` made once: the store and the keepalive schedule share one tuple."""
    _json: str | None = field(default=None, init=False, compare=False, repr=False)
    """``to_json`` made once, or the text this binding was read from (``from_json``)."""

    def __post_init__(self) -> None:
        if not self.aor or not self.contact:
            raise ValueError("binding needs an aor and a contact")
        if not math.isfinite(self.expires_at):
            raise ValueError(f"binding expires_at must be finite, got {self.expires_at!r}")
        if self.q is not None and not 0.0 <= self.q <= 1.0:
            raise ValueError(f"binding q must be within 0..1, got {self.q!r}")
        if not 0 <= self.cseq <= MAX_CSEQ:
            raise ValueError(f"binding cseq out of range: {self.cseq}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"binding transport must be one of {sorted(TRANSPORTS)}")
        if self.received_port is not None and not 0 < self.received_port <= 65535:
            raise ValueError(f"binding received_port out of range: {self.received_port}")
        if self.reg_id is not None and not 1 <= self.reg_id <= MAX_REG_ID:
            raise ValueError(f"binding reg_id out of range: {self.reg_id}")
        if not isinstance(self.path, tuple):
            raise ValueError("binding path must be a tuple of bytes")
        if self.registered_at is not None and not math.isfinite(self.registered_at):
            raise ValueError(f"binding registered_at must be finite, got {self.registered_at!r}")

    def is_live(self, now: float) -> bool:
        """True while the binding has not expired at ``now``."""
        return now < self.expires_at

    def remaining(self, now: float) -> int:
        """Whole seconds left at ``now`` (rounded, never negative): the Contact ``expires``."""
        return max(0, round(self.expires_at - now))

    @property
    def effective_q(self) -> float:
        """The q-value used for ordering: an absent q counts as 1.0 (highest)."""
        return 1.0 if self.q is None else self.q

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form; ``from_dict`` restores an equal Binding."""
        out: dict[str, Any] = {
            "aor": self.aor,
            "contact": _latin1(self.contact),
            "expires_at": self.expires_at,
            "call_id": _latin1(self.call_id),
            "cseq": self.cseq,
            "transport": self.transport,
            "listener": self.listener,
        }
        if self.q is not None:
            out["q"] = self.q
        if self.received_ip is not None:
            out["ip"] = str(self.received_ip)
        if self.received_port is not None:
            out["port"] = self.received_port
        if self.path:
            out["path"] = [_latin1(p) for p in self.path]
        if self.instance is not None:
            out["instance"] = _latin1(self.instance)
        if self.reg_id is not None:
            out["reg_id"] = self.reg_id
        if self.user_agent:
            out["ua"] = _latin1(self.user_agent)
        if self.registered_at is not None:
            out["at"] = self.registered_at
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binding:
        """Rebuild a Binding from ``to_dict`` output; ``ValueError`` if it is malformed."""
        try:
            ip = data.get("ip")
            q = data.get("q")
            instance = data.get("instance")
            at = data.get("at")
            return cls(
                aor=_str(data["aor"], "aor"),
                contact=_unlatin1(data["contact"], "contact"),
                expires_at=_float(data["expires_at"], "expires_at"),
                call_id=_unlatin1(data["call_id"], "call_id"),
                cseq=_int(data["cseq"], "cseq"),
                transport=_str(data["transport"], "transport"),
                listener=_str(data["listener"], "listener"),
                q=None if q is None else _float(q, "q"),
                received_ip=None if ip is None else ip_address(_str(ip, "ip")),
                received_port=_opt_int(data.get("port"), "port"),
                path=tuple(_unlatin1(p, "path") for p in _list(data.get("path", []), "path")),
                instance=None if instance is None else _unlatin1(instance, "instance"),
                reg_id=_opt_int(data.get("reg_id"), "reg_id"),
                user_agent=_unlatin1(data.get("ua", ""), "ua"),
                registered_at=None if at is None else _float(at, "at"),
            )
        except KeyError as exc:
            raise ValueError(f"binding field {exc.args[0]} missing") from None

    def to_row(self) -> BindingRow:
        """The binding as a plain tuple of atoms (see the module rules); ``from_row``
        restores an equal Binding. Made once per Binding (tables holding the same binding
        share the tuple)."""
        row = self._row
        if row is None:
            row = (
                self.aor, self.contact, self.expires_at, self.call_id, self.cseq,
                self.transport, self.listener, self.q, pack_ip(self.received_ip),
                self.received_port, self.path, self.instance, self.reg_id, self.user_agent,
                self.registered_at,
            )  # fmt: skip
            object.__setattr__(self, "_row", row)
        return row

    @classmethod
    def from_row(cls, row: BindingRow) -> Binding:
        """Inverse of ``to_row`` (the new Binding keeps ``row`` as its row)."""
        binding = cls(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
            unpack_ip(row[8]), row[9], row[10], row[11], row[12], row[13], row[14],
        )  # fmt: skip
        object.__setattr__(binding, "_row", row)
        return binding

    def to_json(self) -> str:
        """``to_dict`` as compact ASCII JSON (the text ``json.dumps(self.to_dict(),
        separators=(",", ":"))`` writes), made once; a binding read by ``from_json``
        gives back the text it was read from."""
        text = self._json
        if text is None:
            text = _encode(self)
            object.__setattr__(self, "_json", text)
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> Binding:
        """Inverse of ``to_json``; ``ValueError`` if malformed."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("binding JSON must be an object")
        binding = cls.from_dict(data)
        if isinstance(text, str):
            object.__setattr__(binding, "_json", text)
        return binding


_quote = encode_basestring_ascii


def _number(value: float) -> str:
    """A number as ``json.dumps`` writes it (an int given for a float stays an int)."""
    return float.__repr__(value) if isinstance(value, float) else int.__repr__(int(value))


def _encode(b: Binding) -> str:
    """``Binding.to_json`` written field by field: the same text as ``json.dumps`` of
    ``to_dict`` (keys in that order, absent values left out, floats by ``repr``), without
    building the dict or an encoder per call."""
    parts = [
        '{"aor":', _quote(b.aor),
        ',"contact":', _quote(b.contact.decode("latin-1")),
        ',"expires_at":', _number(b.expires_at),
        ',"call_id":', _quote(b.call_id.decode("latin-1")),
        ',"cseq":', str(b.cseq),
        ',"transport":', _quote(b.transport),
        ',"listener":', _quote(b.listener),
    ]  # fmt: skip
    if b.q is not None:
        parts += (',"q":', _number(b.q))
    if b.received_ip is not None:
        parts += (',"ip":', _quote(str(b.received_ip)))
    if b.received_port is not None:
        parts += (',"port":', str(b.received_port))
    if b.path:
        parts += (',"path":[', ",".join(_quote(p.decode("latin-1")) for p in b.path), "]")
    if b.instance is not None:
        parts += (',"instance":', _quote(b.instance.decode("latin-1")))
    if b.reg_id is not None:
        parts += (',"reg_id":', str(b.reg_id))
    if b.user_agent:
        parts += (',"ua":', _quote(b.user_agent.decode("latin-1")))
    if b.registered_at is not None:
        parts += (',"at":', _number(b.registered_at))
    parts.append("}")
    return "".join(parts)


def pack_ip(ip: IPAddress | None) -> int | str | None:
    """An address as an atom: IPv4 its int, IPv6 its int with bit 128 set, an IPv6
    address with a zone id its text (rare; kept exactly)."""
    if ip is None:
        return None
    if isinstance(ip, IPv4Address):
        return int(ip)
    if ip.scope_id is not None:
        return str(ip)
    return int(ip) | _V6_FLAG


def unpack_ip(packed: int | str | None) -> IPAddress | None:
    """Inverse of ``pack_ip``."""
    if packed is None:
        return None
    if isinstance(packed, str):
        return ip_address(packed)
    if packed & _V6_FLAG:
        return IPv6Address(packed & _V6_MASK)
    return IPv4Address(packed)


def row_target(row: BindingRow) -> tuple[str, str, int | str | None, int | None, bool]:
    """What decides where a row's keepalives go: transport, listener, packed received
    address and port, and whether it came through another proxy (Path)."""
    return row[5], row[6], row[8], row[9], bool(row[10])


DECODED_KEPT = 16384
"""Bindings a ``DecodedBindings`` keeps (~1 KB each with their text)."""


class DecodedBindings:
    """Bindings decoded from their stored text (``to_json``), by that text: a store
    that reads the file or Redis on every lookup (shared mode) decodes a text once.
    Decoding is a function of the text and a Binding is immutable, so a cached one is
    the one a fresh decode would give; what a process writes is put in as written (its
    next read of those rows decodes nothing). Bounded: when full, the oldest half
    (in insertion order: texts replaced by later writes first) is dropped."""

    __slots__ = ("_kept", "_limit", "hits", "misses")

    def __init__(self, limit: int = DECODED_KEPT) -> None:
        if limit < 2:
            raise ValueError("DecodedBindings needs a limit of at least 2")
        self._kept: dict[str, Binding] = {}
        self._limit = limit
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._kept)

    def decode(self, text: str) -> Binding:
        """The Binding stored as ``text``; ``ValueError`` if malformed (not kept)."""
        found = self._kept.get(text)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        binding = Binding.from_json(text)
        self._keep(text, binding)
        return binding

    def put(self, binding: Binding) -> None:
        """Remember ``binding`` under the text it is written as."""
        self._keep(binding.to_json(), binding)

    def _keep(self, text: str, binding: Binding) -> None:
        kept = self._kept
        if len(kept) >= self._limit:
            for old in list(itertools.islice(kept, self._limit // 2)):
                del kept[old]
        kept[text] = binding


def bindings_to_json(bindings: tuple[Binding, ...] | list[Binding]) -> str:
    """One AOR's bindings as a JSON array (the Redis value form)."""
    return json.dumps([b.to_dict() for b in bindings], separators=(",", ":"))


def bindings_from_json(text: str | bytes) -> list[Binding]:
    """Inverse of ``bindings_to_json``; ``ValueError`` if malformed."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("bindings JSON must be an array")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("each binding must be a JSON object")
        out.append(Binding.from_dict(item))
    return out


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"binding field {what}: expected a string")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"binding field {what}: expected an integer")
    return value


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"binding field {what}: expected a number")
    return float(value)


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"binding field {what}: expected a list")
    return value
