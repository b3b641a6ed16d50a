"""The proxy's routing decisions, pure: a request in, a decision value out, no I/O.

Rules (RFC 3261 §16.3-§16.5, §16.12, §10 via ``register``; RFC 3327 Path, RFC 5658):

- Every request is validated (§16.3: Max-Forwards 0 → 483 except OPTIONS, a loop through
  our own Via → 482, Proxy-Require → 420 listing the options), its Route set preprocessed
  (§16.4: strict-router fix-up, our own Route entries popped), then routed:
  * in-dialog (To tag) requests follow the Route set or the Request-URI (or the flow
    token of our entry facing the other party, RFC 5626 §5.3: WS clients and TCP/TLS
    clients behind NAT are reached over their own connection, 430 when it is gone);
    one that did not come through our Route, or whose Route entries lack this call's
    token, is refused; the routing step then admits it (``Admit``: from an untrusted
    source it must belong to a live dialog we record-routed, ``dialogs``);
  * REGISTER for a local domain goes to the registrar (``Register``); with an upstream
    core it is forwarded there with a Path entry naming the phone's flow;
  * a request for the gateway itself is answered here before any authentication: no
    user part and one of our addresses or host names, or an OPTIONS ping to a served
    domain (RFC 3261 §11.2: 200 with Allow, Accept, Supported);
  * with an upstream core, initial requests from untrusted sources go to the core (it
    authenticates); every other initial request is authenticated first
    (``Authenticate``), then routed: a preloaded Route, our Path entry (``received=``)
    leading to its flow (430 when that connection is gone, RFC 5626 §5.3), the location
    service for a local domain (``Lookup`` under the AOR's keys, every alias of the
    gateway being one local domain: fork to every binding, else upstream, else 404),
    foreign hosts and IP literals directly (upstream mode: to the core).
- RFC 5626 §7 (bindings to targets): per UA instance one flow at a time, the most
  recently registered whose connection is still open (failover to the next reg-id);
  an AOR whose only bindings are dead flows answers 430 Flow Failed. RFC 5627: a GRUU
  Request-URI (``gr``: public, or a temporary one of ours) reaches only that instance's
  bindings (a temporary one: registered with the Call-ID it was issued for; 480 when
  none is live).
- Decisions: ``Reply``, ``Forward`` (targets, Record-Route or not, Path or not),
  ``Register``, ``Admit``, ``Authenticate`` and ``Lookup`` (the routing step does the
  check or look-up and asks again). ACKs for 2xx follow their Route set statelessly
  (``ack``, then ``in_dialog``).
- The router reads no clock and does no I/O; whether a connection is open is a question
  it asks (``connected``), as the transport layer keeps that table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.identity import Identity
from rtc64.gateway.location import gruu
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.register import SUPPORTED
from rtc64.gateway.location.registrar import instance_key, is_flow
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.branches import received_uri
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip import headers as sh
from rtc64.sip.message import Request
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.uri import SipUri, Uri, parse_uri

ALLOW = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, " + (
    b"SUBSCRIBE, NOTIFY, REFER"
)
Headers = tuple[tuple[bytes, bytes], ...]
CAPABILITIES: Headers = (
    (b"Allow", ALLOW),
    (b"Accept", b"application/sdp"),
    (b"Supported", b", ".join(sorted(SUPPORTED))),
)
"""What an OPTIONS to the gateway itself is answered with (RFC 3261 §11.2)."""


def addressed_to_gateway(identity: Identity, method: bytes, uri: SipUri) -> bool:
    """A request for the gateway itself, answered by it before any authentication: a
    Request-URI without user part naming one of our addresses or host names, or, for
    OPTIONS (a ping, as Kamailio's options module answers it), a served domain."""
    if uri.user is not None:
        return False
    return identity.is_us(uri) or (method == b"OPTIONS" and identity.is_local_uri(uri))


@dataclass(frozen=True, slots=True, init=False)
class Target:
    """One branch: the next hop's URI, a new Request-URI (None: keep it), the Route set
    left after ours, Route values to put in front (a binding's Path), whether the
    hop is a registered UA's own flow (its source address, not its Contact), and
    whether it has no pinhole to keep (``own_port``: not a registered contact nor a
    party's recorded flow, so a SIP worker sends from its private port)."""

    hop: SipUri
    uri: SipUri | None = None
    routes: tuple[NameAddr, ...] = ()
    extra: tuple[bytes, ...] = ()
    flow: bool = False
    own_port: bool = False

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        hop: SipUri,
        uri: SipUri | None = None,
        routes: tuple[NameAddr, ...] = (),
        extra: tuple[bytes, ...] = (),
        flow: bool = False,
        own_port: bool = False,
    ) -> None:
        object.__setattr__(self, "hop", hop)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "flow", flow)
        object.__setattr__(self, "own_port", own_port)


@dataclass(frozen=True, slots=True, init=False)
class Reply:
    """Answer the request ourselves."""

    status: int
    reason: str | None = None
    headers: Headers = ()

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, status: int, reason: str | None = None, headers: Headers = ()) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "headers", headers)


@dataclass(frozen=True, slots=True, init=False)
class Forward:
    """Proxy the request to ``targets`` in parallel (one branch each)."""

    targets: tuple[Target, ...]
    record_route: bool = True
    path: bool = False  # add a Path entry naming the phone's flow (REGISTER upstream)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self, targets: tuple[Target, ...], record_route: bool = True, path: bool = False
    ) -> None:
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "record_route", record_route)
        object.__setattr__(self, "path", path)


@dataclass(frozen=True, slots=True, init=False)
class Register:
    """A REGISTER for a local domain: authenticate (401), then the registrar."""

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self) -> None:
        pass


@dataclass(frozen=True, slots=True, init=False)
class Admit:
    """An in-dialog request with our signed Route entries: admit it (live dialog, trusted
    source or credentials), then ``Router.in_dialog``."""

    uri: Uri  # the Request-URI after Route processing
    routes: tuple[NameAddr, ...]  # the Route entries after ours
    popped: tuple[SipUri, ...]  # our entries
    restored: SipUri | None
    issued: int  # the oldest issue time of our tokens in it

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        uri: Uri,
        routes: tuple[NameAddr, ...],
        popped: tuple[SipUri, ...],
        restored: SipUri | None,
        issued: int,
    ) -> None:
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "popped", popped)
        object.__setattr__(self, "restored", restored)
        object.__setattr__(self, "issued", issued)


@dataclass(frozen=True, slots=True, init=False)
class Authenticate:
    """An initial request to authenticate (407) before ``Router.after_auth``."""

    uri: SipUri
    routes: tuple[NameAddr, ...]
    popped: tuple[SipUri, ...]
    restored: SipUri | None  # the Request-URI a strict router hid in Route

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        uri: SipUri,
        routes: tuple[NameAddr, ...],
        popped: tuple[SipUri, ...],
        restored: SipUri | None,
    ) -> None:
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "popped", popped)
        object.__setattr__(self, "restored", restored)


@dataclass(frozen=True, slots=True, init=False)
class Lookup:
    """Look the AOR up in the location service, then ``Router.bound``."""

    keys: tuple[str, str]  # the AOR's location keys: canonical, as written
    request: Authenticate
    instance: bytes | None = None  # a GRUU's instance URN: only its bindings
    call_tag: bytes | None = None  # a temporary GRUU's: only bindings of that Call-ID

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        keys: tuple[str, str],
        request: Authenticate,
        instance: bytes | None = None,
        call_tag: bytes | None = None,
    ) -> None:
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "instance", instance)
        object.__setattr__(self, "call_tag", call_tag)


Decision = Reply | Forward | Register | Admit | Authenticate | Lookup
Connected = Callable[[Transport, IPAddress, int], bool]


class Router:
    """Routing decisions from our identity, the call tokens' secret and the upstream core."""

    def __init__(
        self,
        identity: Identity,
        *,
        secret: bytes,
        upstream: SipUri | None,
        connected: Connected,
    ) -> None:
        self.identity = identity
        self.secret = secret
        self.upstream = upstream
        self.connected = connected

    # -- entry points ---------------------------------------------------------------------

    def route(self, req: Request, *, trusted: bool) -> Decision:
        """The first decision for a new request from a source (``trusted`` or not)."""
        try:
            return self._route(req, trusted)
        except RemoteProtocolError as exc:
            return Reply(exc.status, exc.reason)

    def after_auth(self, auth: Authenticate) -> Decision:
        """The decision for an initial request once it is authenticated."""
        try:
            return self._after_auth(auth)
        except RemoteProtocolError as exc:
            return Reply(exc.status, exc.reason)

    def bound(self, lookup: Lookup, bindings: Sequence[Binding]) -> Decision:
        """The decision once the location service answered ``lookup``."""
        try:
            if lookup.instance is not None:
                wanted = lookup.instance.lower()
                bindings = [b for b in bindings if instance_key(b.instance) == wanted]
                if lookup.call_tag is not None:
                    tag = lookup.call_tag
                    bindings = [b for b in bindings if gruu.call_tag(b.call_id) == tag]
                if not bindings:
                    return Reply(480, "Temporarily Unavailable: that device is not registered")
            chosen, dead = self.live_flows(bindings)
            if chosen:
                targets = tuple(self._binding_target(b) for b in chosen)
            elif dead:
                return Reply(430, "Flow Failed: no registered flow is open")
            elif self.upstream is not None:
                targets = (Target(self.upstream, own_port=True),)
            else:
                return Reply(404, "Not Found: no registered contact")
        except RemoteProtocolError as exc:
            return Reply(exc.status, exc.reason)
        return Forward(self._restore(targets, lookup.request.restored))

    def in_dialog(self, admit: Admit, flow: Flow, *, own_port: bool = False) -> Decision:
        """The decision for an admitted in-dialog request that came on ``flow``;
        ``own_port``: the party it goes to was first reached from a SIP worker's private
        port (``DialogTracker.toward_own_port``), unless it goes to a recorded flow."""
        try:
            hop_uri, pinhole = self._next_hop(list(admit.routes), admit.uri, admit.popped, flow)
        except RemoteProtocolError as exc:
            return Reply(exc.status, exc.reason)
        mine = own_port and not pinhole
        target = Target(hop_uri, admit.restored, admit.routes, own_port=mine)
        return Forward((target,), record_route=False)

    def ack(self, req: Request) -> Admit | str:
        """An ACK for a 2xx (§16.11, stateless): to admit like any in-dialog request, or
        the reason to drop it."""
        routes = list(sh.routes(req))
        return self._signed(req, req.uri, routes, self.pop_ours(routes), None)

    def _signed(
        self,
        req: Request,
        uri: Uri,
        routes: list[NameAddr],
        popped: list[SipUri],
        restored: SipUri | None,
    ) -> Admit | str:
        """``Admit`` when every Route entry of ours carries this call's token, else why
        the request is refused."""
        if not popped:
            return "Forbidden: in-dialog request not routed via this proxy"
        issued = hops.tokens_issued(self.secret, req, popped)
        if issued is None:
            return "Forbidden: Route not recorded by this proxy for this call"
        return Admit(uri, tuple(routes), tuple(popped), restored, issued)

    # -- the steps ------------------------------------------------------------------------

    def _route(self, req: Request, trusted: bool) -> Decision:
        if req.max_forwards == 0 and req.method != b"OPTIONS":
            return Reply(483, "Too Many Hops")
        ours = [
            i for i, v in enumerate(req.vias) if hops.is_our_via(v, self.identity.is_our_sent_by)
        ]
        if ours and hops.is_loop(req, ours, list(req.values(b"via"))):
            return Reply(482, "Loop Detected")
        unknown = sh.tokens(req, b"proxy-require")
        if unknown:
            # §16.3 step 5, §8.2.2.3: the 420 lists the unsupported options.
            return Reply(420, None, ((b"Unsupported", b", ".join(unknown)),))
        uri = req.uri
        routes = list(sh.routes(req))
        restored: SipUri | None = None
        ours_in_uri: SipUri | None = None
        if isinstance(uri, SipUri) and self.identity.is_us(uri) and routes:
            last = routes[-1].uri
            if isinstance(last, SipUri):
                # §16.4: the previous hop was a strict router: our Record-Route entry is the
                # Request-URI and the real one is the last Route; restore it.
                ours_in_uri, restored, uri = uri, last, last
                routes.pop()
        popped = self.pop_ours(routes)
        if ours_in_uri is not None:
            popped.insert(0, ours_in_uri)
        if req.to.tag is not None:
            signed = self._signed(req, uri, routes, popped, restored)
            return Reply(403, signed) if isinstance(signed, str) else signed
        if not isinstance(uri, SipUri):
            return Reply(416, "Unsupported URI Scheme")
        if req.method == b"REGISTER":
            if self.upstream is not None:
                return Forward((Target(self.upstream, own_port=True),), path=True)
            if not self.identity.is_local_uri(uri):
                return Reply(403, "Forbidden: not a domain served here")
            return Register()
        if addressed_to_gateway(self.identity, req.method, uri):
            if req.method == b"OPTIONS":
                return Reply(200, None, CAPABILITIES)
            return Reply(404, "Not Found: no user part in the Request-URI")
        if self.upstream is not None and not trusted:
            return Forward((Target(self.upstream, None, tuple(routes), own_port=True),))
        return Authenticate(uri, tuple(routes), tuple(popped), restored)

    def _after_auth(self, auth: Authenticate) -> Decision:
        routes, uri = auth.routes, auth.uri
        # An initial request with a preloaded Route to us is authenticated like any other
        # (a forged Route must not make us an open relay); our Path entry leads to its flow.
        flow_uri = None if routes else next(filter(None, map(received_uri, auth.popped)), None)
        if flow_uri is not None:
            return Forward((Target(self._open_flow(flow_uri)),))
        if routes:
            first = routes[0].uri
            if not isinstance(first, SipUri):
                raise RemoteProtocolError("Unsupported URI Scheme in Route", 416)
            target = Target(first, None, routes, own_port=True)
            return Forward(self._restore((target,), auth.restored))
        if self.identity.is_local_uri(uri):
            named = gruu.gruu_instance(self.secret, uri)
            if named is not None:
                aor = named.aor
                keys = (aor, aor) if aor is not None else self.identity.aor_keys(uri)
                return Lookup(keys, auth, instance=named.instance, call_tag=named.call_tag)
            return Lookup(self.identity.aor_keys(uri), auth)
        target = Target(self.upstream if self.upstream is not None else uri, own_port=True)
        return Forward(self._restore((target,), auth.restored))

    @staticmethod
    def _restore(targets: tuple[Target, ...], restored: SipUri | None) -> tuple[Target, ...]:
        if restored is None:
            return targets
        return tuple(t if t.uri is not None else replace(t, uri=restored) for t in targets)

    def live_flows(self, bindings: Sequence[Binding]) -> tuple[list[Binding], int]:
        """The bindings to fork to (RFC 5626 §7): every non-flow binding, and per UA
        instance its most recently registered flow whose connection is open; with the
        number of flows skipped because their connection is gone."""
        chosen: list[Binding] = []
        best: dict[bytes | None, Binding] = {}
        dead = 0
        newest_first = sorted(
            (b for b in bindings if is_flow(b)),
            key=lambda b: -(b.registered_at if b.registered_at is not None else -1e18),
        )
        for b in newest_first:
            key = instance_key(b.instance)
            if key in best:
                continue
            if self._flow_open(b):
                best[key] = b
            else:
                dead += 1
        for b in bindings:
            if not is_flow(b) or best.get(instance_key(b.instance)) is b:
                chosen.append(b)
        return chosen, dead

    def _flow_open(self, binding: Binding) -> bool:
        """Whether a flow binding's connection is still open (UDP flows always are; a
        flow registered through another edge proxy is that proxy's to judge)."""
        if binding.path or binding.received_ip is None or binding.received_port is None:
            return True
        transport = Transport(binding.transport)
        return self.connected(transport, binding.received_ip, binding.received_port)

    def _binding_target(self, binding: Binding) -> Target:
        contact = parse_uri(binding.contact, "Contact")
        if not isinstance(contact, SipUri):
            raise RemoteProtocolError("Unsupported URI Scheme in Contact", 416)
        if binding.path:
            first = parse_name_addr(binding.path[0], "Path").uri
            assert isinstance(first, SipUri)
            return Target(first, contact, (), binding.path)
        if binding.received_ip is not None and binding.received_port is not None:
            transport = Transport(binding.transport)
            hop_uri = SipUri(
                host=binding.received_ip,
                port=binding.received_port,
                params=((b"transport", transport.value.encode()),),
            )
            return Target(hop_uri, contact, flow=True)
        return Target(contact, contact)

    def _open_flow(self, flow_uri: SipUri) -> SipUri:
        """A Path entry's recorded flow, or 430 when it was a connection now closed
        (RFC 5626 §5.3: never a new connection toward a phone's flow)."""
        kind = flow_uri.param(b"transport")
        host, port = flow_uri.host, flow_uri.port
        if kind and not isinstance(host, str) and port is not None:
            try:
                transport = Transport(kind.decode("ascii", "replace").lower())
            except ValueError:
                return flow_uri
            if transport.reliable and not self.connected(transport, host, port):
                raise RemoteProtocolError("Flow Failed: the phone's connection is closed", 430)
        return flow_uri

    # -- Route sets -----------------------------------------------------------------------

    def pop_ours(self, routes: list[NameAddr]) -> list[SipUri]:
        """Pop the consecutive Route entries that name us (§16.4); return them."""
        popped: list[SipUri] = []
        while routes:
            top = routes[0].uri
            if not isinstance(top, SipUri) or not self.identity.is_us(top):
                break
            popped.append(top)
            routes.pop(0)
        return popped

    def _next_hop(
        self, routes: list[NameAddr], uri: object, popped: Sequence[SipUri], flow: Flow
    ) -> tuple[SipUri, bool]:
        """The next hop's URI: our Path entry's flow, the flow token of our entry facing
        the other party, the next Route, or the Request-URI; and whether it is a
        party's recorded flow (a pinhole)."""
        for p in popped:
            flow_uri = received_uri(p)
            if flow_uri is not None and not routes:
                return self._open_flow(flow_uri), True
        if not routes:
            ob = isinstance(uri, SipUri) and uri.has_param(b"ob")
            toward = hops.flow_toward(list(popped), flow, self.connected, outbound=ob)
            if toward is not None:
                return toward, True
        if routes:
            first = routes[0].uri
            if not isinstance(first, SipUri):
                raise RemoteProtocolError("Unsupported URI Scheme in Route", 416)
            return first, False
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError("Unsupported URI Scheme", 416)
        return uri, False
