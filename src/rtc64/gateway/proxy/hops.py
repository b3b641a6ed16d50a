"""Next hops: where a message goes, and the Via/Record-Route/Path values we write for it.

Rules (RFC 3261 §16.6 steps 4, 6-8, §16.12, §18.2.2; RFC 3581 rport; RFC 5658 double
Record-Route; RFC 3327 Path):

- A ``Hop`` is a transport, an address and a port, plus the flow to reuse (connections,
  the listener a phone registered through).
- Responses go back per §18.2.2 and RFC 3581: on a connection, the flow it came on; over
  UDP, the source address, and the ``rport`` port when the client asked for it, else
  the sent-by port.
- The top Via of a forwarded request gets ``received`` (when sent-by is not the source
  address) and the ``rport`` value filled in; ``received`` holds a bare IPv6 address
  (RFC 3261 grammar, RFC 5118 §4.5), sent-by a bracketed one.
- Our Via carries a branch ``z9hG4bK-r64-<loop hash>-<unique>``: the loop hash covers
  the fields §16.6 step 8 names, so a request that comes back unchanged is a loop (482),
  one that comes back changed is a spiral (§16.3 step 4).
- Record-Route and Path name a listener as ``<sip:HOST:PORT;transport=T;lr>``; when the
  flow changes family, transport or listener two entries are written, each reachable
  from its side (``r2=on``). Record-Route entries carry ``r64=<issued>.<mac>``: the
  issue time (wall-clock seconds, hex) and an HMAC under the gateway's secret over the
  Call-ID, the caller's From tag, that time and the entry's flow token. An entry facing a
  WS/WSS party, or a TCP/TLS party (UDP: a UA we talk to directly) whose remote target
  is not the address it uses (behind NAT or a stateful IPv6 firewall), also carries
  ``r64f=<transport>:<host:port>`` naming that party's flow (RFC 5626 flow token, RFC
  7118 §5): in-dialog requests toward it go over that connection, or over UDP to that
  address and port (the pinhole). Whether a signed entry is still good (a live dialog,
  or a bounded lifetime) is ``dialogs``' decision.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from rtc64.errors import RemoteProtocolError, Rtc64Error
from rtc64.net.address import (
    Host,
    IPAddress,
    format_hostport,
    format_sdp_address,
    parse_hostport,
    unmap,
)
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.grammar import Params, format_params, is_token, split_top
from rtc64.sip.headers import Header, build_index
from rtc64.sip.message import Request
from rtc64.sip.uri import SipUri, Uri
from rtc64.sip.via import MAGIC_COOKIE, Via, format_via, parse_via
from rtc64.stun.integrity import Mac, prepared_mac

BRANCH_PREFIX = MAGIC_COOKIE + b"-r64-"
_counter = itertools.count(1)


@dataclass(frozen=True, slots=True, init=False)
class Hop:
    """Where to send: transport, address, port, and the flow to reuse if any.
    ``own_port``: no pinhole to keep toward it (a trunk, a DNS or static route), so a SIP
    worker sends from its private port and the responses come back to it."""

    transport: Transport
    ip: IPAddress
    port: int
    flow: Flow | None = None
    server_name: str | None = None
    own_port: bool = False

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        transport: Transport,
        ip: IPAddress,
        port: int,
        flow: Flow | None = None,
        server_name: str | None = None,
        own_port: bool = False,
    ) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "flow", flow)
        object.__setattr__(self, "server_name", server_name)
        object.__setattr__(self, "own_port", own_port)

    @property
    def reliable(self) -> bool:
        # ``Transport.reliable`` spelt out: an interpreted enum property costs a Python
        # call from compiled code, several per message.
        return self.transport is not Transport.UDP

    @property
    def address(self) -> IPAddress:
        """The destination address (what happy-eyeballs races and caches look at)."""
        return self.ip

    def __str__(self) -> str:
        return f"{self.transport.value}:{format_hostport(self.ip, self.port)}"


def response_hop(req: Request, flow: Flow) -> Hop:
    """Where responses to ``req`` go (§18.2.2, RFC 3581 §4)."""
    if flow.transport is not Transport.UDP:  # reliable
        return Hop(flow.transport, flow.remote[0], flow.remote[1], flow)
    via = req.via
    sent_by_port = via.port if via.port is not None else 5060
    port = flow.remote[1] if via.has_rport else sent_by_port
    return Hop(flow.transport, flow.remote[0], port, flow)


def stamp_top_via(req: Request, flow: Flow) -> bytes | None:
    """The top Via with ``received``/``rport`` filled in, or None when nothing changes
    (written as ``format_via`` writes it, without building the Via)."""
    return stamp_via(req.via, flow)


def stamp_via(via: Via, flow: Flow) -> bytes | None:
    """``via`` (a request's top Via, received on ``flow``) with ``received``/``rport``
    filled in and written as ``format_via`` writes it, or None when nothing changes."""
    params = _stamped_params(via, flow)
    if params is None:
        return None
    hp = format_hostport(via.host, via.port).encode("ascii")
    return b"SIP/2.0/" + via.transport + b" " + hp + format_params(params)


def _stamped_params(via: Via, flow: Flow) -> Params | None:
    """The top Via's parameters with ``received``/``rport`` filled in (None: unchanged)."""
    source_ip, source_port = flow.remote
    params = via.params
    has_rport = via.has_rport
    changed = False
    if has_rport and via.rport is None:
        params = tuple(
            [(n, b"%d" % source_port if n.lower() == b"rport" else v) for n, v in params]
        )
        changed = True
    sent_by_is_source = not isinstance(via.host, str) and unmap(via.host) == unmap(source_ip)
    if not sent_by_is_source or has_rport:
        received = format_sdp_address(unmap(source_ip)).encode("ascii")
        kept = [(n, v) for n, v in params if n.lower() != b"received"]
        kept.append((b"received", received))
        params = tuple(kept)
        changed = True
    return params if changed else None


def _stamped_via(req: Request, flow: Flow) -> Via | None:
    via = req.via
    params = _stamped_params(via, flow)
    if params is None:
        return None
    return Via(via.transport, via.host, via.port, params)


def with_stamped_via(req: Request, flow: Flow) -> Request:
    """``req`` with its top Via value stamped (for responses we build ourselves)."""
    top = _stamped_via(req, flow)
    if top is None:
        return req
    stamped = format_via(top)
    i = req.index[b"via"][0]
    line = req.headers[i]
    rest = split_top(line.value, b",")[1:]
    value = b", ".join([stamped, *(r.strip() for r in rest)])
    headers = (*req.headers[:i], line._replace(value=value), *req.headers[i + 1 :])
    vias = (top, *req.vias[1:])  # the parsed Vias follow the lines
    return Request(
        req.method, req.uri, headers, req.body, vias, req.call_id, req.cseq, req.from_,
        req.to, req.max_forwards, req.index, None,
    )  # fmt: skip


def loop_hash(req: Request, top_via: bytes) -> bytes:
    """16 hex digits over the fields of RFC 3261 §16.6 step 8."""
    return loop_hash_of(
        (bytes(req.uri), req.from_.tag or b"", req.to.tag or b"", req.call_id,
         b"%d" % req.cseq.seq, top_via, b",".join(req.get_all(b"proxy-require")),
         b",".join(req.get_all(b"proxy-authorization")))
    )  # fmt: skip


def loop_hash_of(parts: tuple[bytes, ...]) -> bytes:
    """``loop_hash`` of its fields read already: Request-URI, From tag, To tag, Call-ID,
    CSeq number, the Via below ours, Proxy-Require and Proxy-Authorization values."""
    h = hashlib.blake2b(b"\x00".join(parts) + b"\x00", digest_size=8)  # each ends in NUL
    return h.hexdigest().encode("ascii")


def new_branch(req: Request, top_via: bytes) -> bytes:
    """A fresh branch carrying the loop hash of ``req``."""
    return branch_of(loop_hash(req, top_via))


def branch_of(hashed: bytes) -> bytes:
    """A fresh branch carrying the loop hash ``hashed``."""
    return BRANCH_PREFIX + hashed + b"-%x" % next(_counter)


def is_loop(req: Request, ours: list[int], via_values: list[bytes]) -> bool:
    """Whether one of our Vias (indices ``ours``) carries this request's loop hash.

    The hash was computed over the Via below ours when we first forwarded the request.
    """
    for i in ours:
        branch = req.vias[i].branch or b""
        if not branch.startswith(BRANCH_PREFIX) or i + 1 >= len(via_values):
            continue
        expected = loop_hash(req, via_values[i + 1])
        if branch[len(BRANCH_PREFIX) : len(BRANCH_PREFIX) + len(expected)] == expected:
            return True
    return False


def via_value(transport: Transport, hostport: str, branch: bytes, *, alias: bool = False) -> bytes:
    """Our Via: ``SIP/2.0/T host:port;branch=...;rport`` (``;alias``: RFC 5923, the
    server may reuse the connection for requests to us)."""
    return b"SIP/2.0/%s %s;branch=%s;rport%s" % (
        _VIA_TOKENS[transport],
        hostport.encode("ascii"),
        branch,
        b";alias" if alias else b"",
    )


_VIA_TOKENS = {t: t.via_token.encode("ascii") for t in Transport}
"""``Transport.via_token`` as bytes (enum properties are Python calls from compiled code)."""


def route_uri(transport: Transport, hostport: str, *, r2: bool, extra: bytes = b"") -> bytes:
    """``<sip:host:port;transport=t;lr[;r2=on]>`` naming one of our listeners."""
    params: list[tuple[bytes, bytes | None]] = []
    if transport is not Transport.UDP:
        params.append((b"transport", transport.value.encode("ascii")))
    params.append((b"lr", None))
    if r2:
        params.append((b"r2", b"on"))
    scheme = b"sips" if transport is Transport.TLS else b"sip"
    return b"<%s:%s%s%s>" % (scheme, hostport.encode("ascii"), format_params(params), extra)


TOKEN_PARAM = b"r64"
FLOW_PARAM = b"r64f"
INBOUND_ONLY = frozenset((Transport.WS, Transport.WSS))
"""Transports we never open a connection for: only the client's own connection reaches it."""


@dataclass(frozen=True, slots=True, init=False)
class FlowToken:
    """The connection of a party we record-routed: transport and its remote address."""

    transport: Transport
    ip: IPAddress
    port: int

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, transport: Transport, ip: IPAddress, port: int) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "port", port)

    @classmethod
    def of(cls, flow: Flow) -> FlowToken:
        return cls(flow.transport, unmap(flow.remote[0]), flow.remote[1])

    def encode(self) -> bytes:
        return f"{self.transport.value}:{format_hostport(self.ip, self.port)}".encode("ascii")

    @classmethod
    def decode(cls, value: bytes | None) -> FlowToken | None:
        """The token in a ``r64f`` value, or None when absent or malformed."""
        if not value:
            return None
        kind, _, hostport = value.partition(b":")
        try:
            transport = Transport(kind.decode("ascii").lower())
            parsed = parse_hostport(hostport)
        except (ValueError, UnicodeDecodeError, Rtc64Error):
            return None
        if isinstance(parsed.host, str) or parsed.port is None:
            return None
        return cls(transport, unmap(parsed.host), parsed.port)

    def matches(self, flow: Flow) -> bool:
        """Whether ``flow`` is this very connection's (the party's own requests)."""
        return flow.transport is self.transport and (unmap(flow.remote[0]), flow.remote[1]) == (
            self.ip,
            self.port,
        )

    def uri(self) -> SipUri:
        """A URI leading to the flow's remote address over its transport."""
        return SipUri(
            host=self.ip, port=self.port, params=((b"transport", self.transport.value.encode()),)
        )


def flow_token(
    transport: Transport, ip: IPAddress, port: int, target: Uri | None, *, direct: bool = True
) -> FlowToken | None:
    """The flow token for the Record-Route entry facing a party reached at ``ip:port``
    over ``transport`` whose remote target (Contact or Request-URI) is ``target``: always
    for WS/WSS (nothing else reaches the client), for TCP/TLS when the target is not that
    address (a client behind NAT: only its own connection reaches it), for UDP the same
    but only when ``direct`` (``ip:port`` is the UA itself, not a proxy in between)."""
    if transport is Transport.UDP and not direct:
        return None
    token = FlowToken(transport, unmap(ip), port)
    if transport in INBOUND_ONLY:
        return token
    if isinstance(target, SipUri) and not isinstance(target.host, str):
        same = unmap(target.host) == token.ip and (target.port or transport.default_port) == port
        if same:
            return None
    return token


_PREPARED: dict[bytes, Mac] = {}
"""HMAC-SHA-256 objects with a secret absorbed, by secret (one per gateway; tests use a
few): a copy costs less than half a one-shot ``hmac.digest`` (no key schedule)."""
_MAX_PREPARED = 64


def _mac(secret: bytes, call_id: bytes, tag: bytes, issued: int, flow: bytes) -> bytes:
    prepared = _PREPARED.get(secret)
    if prepared is None:
        if len(_PREPARED) >= _MAX_PREPARED:
            _PREPARED.clear()  # bounded: rebuilt on demand
        prepared = _PREPARED[secret] = prepared_mac(secret, "sha256")
    mac = prepared.copy()
    mac.update(b"\x00".join((call_id, tag, b"%x" % issued, flow)))
    return mac.digest()[:8].hex().encode("ascii")


def route_token(
    secret: bytes, call_id: bytes, tag: bytes, issued: int, flow: FlowToken | None = None
) -> bytes:
    """The ``r64`` value: ``<issued hex>.<16 hex digits of HMAC-SHA-256>`` binding the
    Call-ID, the caller's From tag, the issue time and the flow token (if any)."""
    flow_text = flow.encode() if flow is not None else b""
    return b"%x.%s" % (issued, _mac(secret, call_id, tag, issued, flow_text))


def token_params(
    secret: bytes, call_id: bytes, tag: bytes, issued: int, flow: FlowToken | None
) -> bytes:
    """The URI parameters we append to one Record-Route entry."""
    token = b";%s=%s" % (TOKEN_PARAM, route_token(secret, call_id, tag, issued, flow))
    if flow is not None:
        token += b";%s=%s" % (FLOW_PARAM, flow.encode())
    return token


def token_issued(secret: bytes, req: Request, route: SipUri) -> int | None:
    """The issue time of ``route``'s token when it was written by us for this call (its
    Call-ID and either tag of ``req``: in-dialog requests flow both ways), else None."""
    return token_issued_for(secret, req.call_id, (req.from_.tag, req.to.tag), route)


def token_issued_for(
    secret: bytes, call_id: bytes, tags: tuple[bytes | None, bytes | None], route: SipUri
) -> int | None:
    """``token_issued`` for a request read as its Call-ID and (From, To) tags."""
    return _issued(secret, call_id, tags, route.param(TOKEN_PARAM), route.param(FLOW_PARAM))


def _issued(
    secret: bytes,
    call_id: bytes,
    tags: tuple[bytes | None, bytes | None],
    value: bytes | None,
    flow_value: bytes | None,
) -> int | None:
    """The issue time in the ``r64`` value ``value`` (next to ``r64f`` ``flow_value``)
    when its MAC is right for ``call_id`` and one of ``tags``, else None."""
    if not value:
        return None
    issued_hex, dot, mac = value.partition(b".")
    if not dot or not 0 < len(issued_hex) <= 12:
        return None
    try:
        issued = int(issued_hex, 16)
    except ValueError:
        return None
    flow = flow_value or b""
    for tag in tags:
        if tag is not None and hmac.compare_digest(_mac(secret, call_id, tag, issued, flow), mac):
            return issued
    return None


def tokens_issued(secret: bytes, req: Request, ours: list[SipUri]) -> int | None:
    """The oldest issue time of the tokens in our Route entries ``ours``; None unless
    every one of them was written by us for this call."""
    return tokens_issued_for(secret, req.call_id, (req.from_.tag, req.to.tag), ours)


def tokens_issued_for(
    secret: bytes, call_id: bytes, tags: tuple[bytes | None, bytes | None], ours: list[SipUri]
) -> int | None:
    """``tokens_issued`` for a request read as its Call-ID and (From, To) tags."""
    oldest: int | None = None
    checked: dict[tuple[bytes | None, bytes | None], int] = {}
    for uri in ours:
        # Two entries of one Record-Route without flow tokens carry the same token:
        # verified once (the MAC covers exactly these two values for this request).
        key = (uri.param(TOKEN_PARAM), uri.param(FLOW_PARAM))
        issued = checked.get(key)
        if issued is None:
            issued = _issued(secret, call_id, tags, key[0], key[1])
            if issued is None:
                return None
            checked[key] = issued
        oldest = issued if oldest is None else min(oldest, issued)
    return oldest


def flow_toward(
    ours: list[SipUri],
    flow: Flow,
    has_connection: Callable[[Transport, IPAddress, int], bool],
    *,
    outbound: bool = False,
) -> SipUri | None:
    """Where the flow token of our entry facing the other party leads: WS/WSS must use
    it (``RemoteProtocolError`` 430 when the connection is gone), TCP/TLS use it while it
    is open, UDP always (the pinhole the party opened); None: route on the Request-URI as
    usual. ``outbound``: the Request-URI carries ``ob`` (an RFC 5626 UA, §5.3): its dead
    flow is 430 too, never a new connection to its Contact.

    The entry facing the sender is the first of two (RFC 5658: each side's route set
    starts with the entry facing it), whatever connection the request came over: a
    server peer may send its in-dialog requests over a connection of its own, not the
    one its token names. Of one entry, the token ``flow`` matches is the sender's."""
    for i, uri in enumerate(ours):
        if i == 0 and len(ours) > 1:
            continue
        token = FlowToken.decode(uri.param(FLOW_PARAM))
        if token is None or token.matches(flow):
            continue
        if has_connection(token.transport, token.ip, token.port):
            return token.uri()
        if token.transport in INBOUND_ONLY or outbound:
            raise RemoteProtocolError("Flow Failed: the client's connection is closed", 430)
    return None


def forwarded_view(
    req: Request, via: bytes, *, uri: Uri | None, routes: tuple[bytes, ...] | None
) -> Request:
    """The model of the request we forward, built from the received one without parsing
    the spliced bytes again: our Via on top, the Request-URI and Route set as sent. It is
    what the client transaction needs (§17.1.3 key, ACK and CANCEL headers)."""
    headers = [Header(b"Via", via)]
    headers += [h for h in req.headers if routes is None or h.key != b"route"]
    if routes is not None:
        headers += [Header(b"Route", r) for r in routes]
    hs = tuple(headers)
    mf = req.max_forwards
    return Request(
        req.method,
        req.uri if uri is None else uri,
        hs,
        req.body,
        (own_via(via), *req.vias),
        req.call_id,
        req.cseq,
        req.from_,
        req.to,
        69 if mf is None else mf - 1,
        build_index(hs),
        None,
    )


_OWN_VIAS: dict[bytes, Via] = {}
"""Our Via values parsed, by the value with its branch cut out (one per listener and
transport toward each hop kind): only the branch changes from one request to the next."""
_MAX_OWN_VIAS = 1024
_BRANCH_AT = b";branch="


def own_via(value: bytes) -> Via:
    """``parse_via(value)`` for a Via we wrote (``via_value``: the branch first, a token
    of ours): parsed once per shape, the branch put in; anything else is parsed."""
    head, sep, tail = value.partition(_BRANCH_AT)
    branch, semi, rest = tail.partition(b";")
    if not sep or not branch.startswith(BRANCH_PREFIX) or not is_token(branch):
        return parse_via(value)
    shape = head + sep + semi + rest
    template = _OWN_VIAS.get(shape)
    if template is None:
        template = parse_via(head + sep + BRANCH_PREFIX + semi + rest)
        if len(_OWN_VIAS) >= _MAX_OWN_VIAS:
            _OWN_VIAS.clear()  # bounded: refilled on demand
        _OWN_VIAS[shape] = template
    params = template.params
    if not params or params[0][0] != b"branch":  # pragma: no cover - via_value's shape
        return parse_via(value)
    return Via(template.transport, template.host, template.port, ((b"branch", branch), *params[1:]))


def trying_bytes(req: Request, flow: Flow) -> bytes:
    """Our 100 Trying for ``req`` as bytes (§8.2.6: Via, From, To, Call-ID, CSeq copied;
    the top Via stamped per RFC 3581), without building a model first."""
    return trying_stamped(req, stamp_top_via(req, flow))


def trying_stamped(req: Request, stamped: bytes | None) -> bytes:
    """``trying_bytes`` with the top Via already stamped (``stamp_top_via``'s answer for
    the flow ``req`` came on): the forwarder stamps each INVITE once for both uses."""
    lines = [b"SIP/2.0 100 Trying"]
    first_via = True
    for h in req.headers:
        key = h.key
        if key == b"via":
            value = h.value
            if first_via and stamped is not None:
                rest = split_top(value, b",")[1:]
                value = b", ".join([stamped, *(r.strip() for r in rest)])
            first_via = False
            lines.append(h.name + b": " + value)
        elif key in _TRYING_COPY:
            lines.append(h.name + b": " + h.value)
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


_TRYING_COPY = frozenset((b"from", b"to", b"call-id", b"cseq"))


def is_our_via(via: Via, is_our_sent_by: Callable[[Host, int | None], bool]) -> bool:
    """Whether a Via was written by us (our branch prefix, one of our hosts and ports:
    another rtc64 on the same address, another port, is another element)."""
    branch = via.branch or b""
    return branch.startswith(BRANCH_PREFIX) and is_our_sent_by(via.host, via.port)
