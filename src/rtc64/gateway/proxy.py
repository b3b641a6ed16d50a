"""The stateful proxy: the transaction user between the transports and the transaction layer.

Rules (RFC 3261 §16, §10 via ``register``, §9 CANCEL; RFC 3581, RFC 3327, RFC 5658):

- Every request is validated (§16.3: Max-Forwards → 483, Proxy-Require → 420, loops
  → 482), its Route set preprocessed (§16.4: strict-router fix-up, our own Route entries
  popped), then routed:
  * in-dialog (To tag) requests follow the Route set or the Request-URI (or the flow
    token of our entry facing the other party); one that did not come through our
    signed Route, or (from an untrusted source) that does not belong to a live dialog
    we record-routed, is refused (``dialogs``: no relaying through in-dialog
    requests); initial requests with our entries preloaded in Route are authenticated
    and routed like the others, our Path entry (``received=``) leading to its flow;
  * REGISTER for a local domain goes to the registrar; with an upstream core it is
    forwarded there with a Path entry naming the phone's flow;
  * other requests for a local domain fork in parallel to every registered contact;
    with no binding they go upstream, else 404; requests for foreign hosts or IP literals
    go there (upstream mode: to the core).
- Outside trusted networks REGISTER answers 401 and other initial requests 407 until
  the digest credentials are right (the upstream core authenticates in upstream mode).
- Record-Route for dialog-forming requests, doubled when the flow changes family,
  transport or listener (``hops.route_uri``). Responses per ``forking``.
- New requests get 503 with Retry-After when ``admission`` sheds them (receive backlog
  or loop lag over target, or ``max_transactions`` in flight); calls in progress never
  are. New dialogs and registrations from a source over the request rate limit are
  dropped and counted, the start of each throttle episode logged once; trusted networks
  and the upstream core are not limited, nor in-dialog requests.
- A REGISTER authenticated as one user is accepted only for that user's AORs
  (``register.aor_refusal``), else 403, counted.
- Responses we build ourselves carry ``received``/``rport`` in the top Via (RFC 3581 §4).
"""

from __future__ import annotations

from collections.abc import Callable

from rtc64.errors import RemoteProtocolError
from rtc64.gateway import hops
from rtc64.gateway.branches import flow_of, received_uri
from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.register import SUPPORTED, aor_refusal, find_bindings, handle_register
from rtc64.gateway.racing import RacingCore
from rtc64.gateway.ratelimit import Admission
from rtc64.net.address import IPAddress, unmap
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip import headers as sh
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.reject import reject_bytes
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri, parse_uri

ALLOW = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, " + (
    b"SUBSCRIBE, NOTIFY, REFER"
)

CAPABILITIES = (
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


class Proxy(RacingCore):
    """Routes requests and responses; owns no sockets and no clock."""

    def on_message(self, msg: Request | Response, flow: Flow) -> None:
        """A parsed message arrived on ``flow``."""
        if isinstance(msg, Request):
            self._on_request(msg, flow)
        else:
            self.stats.responses_in += 1
            self.dispatch(self.layer.receive_response(msg, self.clock()))

    def on_bad_datagram(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        """An unparseable message: answer requests whose headers allow it, drop the rest."""
        self.stats.bad_messages += 1
        reply = reject_bytes(data, error.status, error.reason) if data else None
        if reply is None:
            self.log.debug("dropped malformed message from %s: %s", flow, error.reason)
            return
        hop = hops.Hop(flow.transport, flow.remote[0], flow.remote[1], flow)
        if self.response_loops(reply, hop):
            return
        self.stats.errors_sent += 1
        self.sender.send(reply, flow.transport, flow.remote[0], flow.remote[1], flow=flow)

    def _on_request(self, req: Request, flow: Flow) -> None:
        now = self.clock()
        self.stats.requests_in += 1
        if self.limiter.rate and self._throttled(req, flow.remote[0], now):
            return
        hop = hops.response_hop(req, flow)
        initial = req.to.tag is None and req.method not in (b"ACK", b"CANCEL")
        busy = self.admission.shed(initial, self.in_flight, now)
        # Shed new work only: in-dialog requests and responses finish the calls we carry,
        # and a retransmission of a request we are handling is absorbed as usual.
        if busy and req.method != b"ACK" and self.layer.find_server(req) is None:
            self.stats.overloaded += 1
            stamped = hops.with_stamped_via(req, flow)
            resp = make_response(stamped, 503, headers=[(b"Retry-After", b"5")])
            self._send(serialize(resp), hop)
            return
        self.dispatch(self.layer.receive_request(req, hop, hop.reliable, now))

    def _throttled(self, req: Request, source: IPAddress, now: float) -> bool:
        """Whether to drop ``req``: a new dialog or registration from a source over the
        request rate. Trusted networks and the upstream core are never limited."""
        if req.to.tag is not None or req.method in (b"ACK", b"CANCEL"):
            return False
        if self.auth.is_trusted(source) or self._is_core(source):
            return False
        admission = self.limiter.admit(source, now)
        if admission is Admission.ADMITTED:
            return False
        self.stats.rate_limited += 1
        if admission is Admission.THROTTLE_STARTED:
            self.stats.throttled_sources += 1
            skipped = self.limiter.log_slot(now)
            if skipped is not None:
                self.log.warning(
                    "rate limit: source %s throttled above %g new requests/s "
                    "(sip.request_rate); its new requests are dropped until it slows down%s",
                    self.limiter.key(source),
                    self.limiter.rate,
                    f" ({skipped} more sources throttled since the last line)" if skipped else "",
                )
        return True

    def _is_core(self, source: IPAddress) -> bool:
        """``source`` is the upstream core's address (an IP-literal ``sip.upstream``; a
        core named by DNS must be listed in ``sip.trusted_networks``, as upstream mode
        needs anyway)."""
        core = self.upstream.host if self.upstream is not None else None
        return core is not None and not isinstance(core, str) and unmap(core) == unmap(source)

    def _new_request(self, server: ServerTransaction) -> None:
        req = server.request
        if req.method == b"CANCEL":
            self._cancel(server)
            return
        if req.method == b"INVITE":
            self.respond(server, hops.trying_bytes(req, flow_of(server.dest)), 100)
        self.spawn(self._route(server))

    async def _route(self, server: ServerTransaction) -> None:
        try:
            await self._route_checked(server)
        except RemoteProtocolError as exc:
            if not server.terminated:
                self.reply(server, exc.status, exc.reason)
        except Exception:
            self.log.exception("proxy: error routing %s", server.request.method.decode())
            if not server.terminated:
                self.reply(server, 500, "Server Internal Error")

    async def _route_checked(self, server: ServerTransaction) -> None:
        req = server.request
        flow = flow_of(server.dest)
        self._validate(req)
        unknown = sh.tokens(req, b"proxy-require")
        if unknown:
            # §16.3 step 5, §8.2.2.3: the 420 lists the unsupported options.
            self.reply(server, 420, None, [(b"Unsupported", b", ".join(unknown))])
            return
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
        popped = self._pop_ours(routes)
        if ours_in_uri is not None:
            popped.insert(0, ours_in_uri)
        if req.to.tag is not None:
            why = await self.admit_in_dialog(req, flow, popped, routes, uri)
            if why is not None:
                self.reply(server, 403, why)
                return
            self.in_dialog(req)
            hop_uri, rewrite = self._next_from_routes(routes, uri, popped, flow)
            rewrite = rewrite or restored
            # An initial request routed to us (e.g. by a core via our Path entry) must keep
            # us in the dialog: the phone behind us cannot reach the other family itself.
            initial = req.to.tag is None
            await self._forward(
                server, flow, [(hop_uri, rewrite, routes, ())], record_route=initial
            )
            return
        if not isinstance(uri, SipUri):
            self.reply(server, 416, "Unsupported URI Scheme")
            return
        if req.method == b"REGISTER":
            await self._register(server, flow, uri)
            return
        if addressed_to_gateway(self.identity, req.method, uri):
            self._answer_self(server)
            return
        source = flow.remote[0]
        if self.upstream is not None and not self.auth.is_trusted(source):
            await self._forward(server, flow, [(self.upstream, None, routes, ())])
            return
        verdict = await self.auth.check(req, source, self.wall(), proxy=True)
        if not verdict.ok:
            self.stats.auth_challenges += 1
            self.reply(server, verdict.status, verdict.reason, verdict.headers)
            return
        # An initial request with a preloaded Route to us is authenticated like any other
        # (a forged Route must not make us an open relay); our Path entry leads to its flow.
        flow_uri = None if routes else next(filter(None, map(received_uri, popped)), None)
        if flow_uri is not None:
            await self._forward(server, flow, [(flow_uri, None, routes, ())])
            return
        targets = await self._targets(req, uri, routes)
        if restored is not None:
            targets = [(h, n or restored, r, e) for h, n, r, e in targets]
        if not targets:
            self.reply(server, 404, "Not Found: no registered contact")
            return
        await self._forward(server, flow, targets)

    def _validate(self, req: Request) -> None:
        if req.max_forwards == 0 and req.method != b"OPTIONS":
            raise RemoteProtocolError("Too Many Hops", 483)
        ours = [i for i, v in enumerate(req.vias) if self._via_is_ours(v)]
        if ours and hops.is_loop(req, ours, list(req.values(b"via"))):
            raise RemoteProtocolError("Loop Detected", 482)

    def _answer_self(self, server: ServerTransaction) -> None:
        req = server.request
        if req.method == b"OPTIONS":
            self.reply(server, 200, None, CAPABILITIES)
        else:
            self.reply(server, 404, "Not Found: no user part in the Request-URI")

    async def _register(self, server: ServerTransaction, flow: Flow, uri: SipUri) -> None:
        req = server.request
        if self.upstream is not None:
            path = self._path_for(flow)
            await self._forward(server, flow, [(self.upstream, None, [], ())], path=path)
            return
        if not self.identity.is_local_uri(uri):
            self.reply(server, 403, "Forbidden: not a domain served here")
            return
        verdict = await self.auth.check(req, flow.remote[0], self.wall(), proxy=False)
        if not verdict.ok:
            self.stats.auth_challenges += 1
            self.reply(server, verdict.status, verdict.reason, verdict.headers)
            return
        refusal = aor_refusal(req, verdict.user, verdict.aors, self.identity.is_local_uri)
        if refusal is not None:
            self._refuse_register(server, flow, refusal)
            return
        listener = self._listener_of(flow)
        name = listener.name() if listener else f"{flow.transport.value}:?"
        resp = await handle_register(
            hops.with_stamped_via(req, flow),  # RFC 3581 §4: the 200 carries rport/received
            flow,
            listener=name,
            store=self.store,
            policy=self.policy,
            now=self.wall(),
            keys=self.identity.aor_keys(req.to.uri),
        )
        self.stats.registrations += resp.status == 200
        self.respond(server, resp)

    def _refuse_register(self, server: ServerTransaction, flow: Flow, reason: str) -> None:
        """403 for a REGISTER whose AOR is not the authenticated user's (hijack attempt)."""
        self.stats.registrations_forbidden += 1
        self.log.warning("registrar: REGISTER from %s refused: %s", flow, reason)
        self.reply(server, 403, reason)

    async def _targets(
        self, req: Request, uri: SipUri, routes: list[NameAddr]
    ) -> list[tuple[SipUri, SipUri | None, list[NameAddr], tuple[bytes, ...]]]:
        """(next-hop URI, new Request-URI, remaining routes, extra Route values) per branch."""
        if routes:
            first = routes[0].uri
            if not isinstance(first, SipUri):
                raise RemoteProtocolError("Unsupported URI Scheme in Route", 416)
            return [(first, None, routes, ())]
        if self.identity.is_local_uri(uri):
            keys = self.identity.aor_keys(uri)
            bindings = await find_bindings(self.store, keys, self.wall())
            if bindings:
                return [self._binding_target(b) for b in bindings]
            if self.upstream is not None:
                return [(self.upstream, None, [], ())]
            return []
        if self.upstream is not None:
            return [(self.upstream, None, [], ())]
        return [(uri, None, [], ())]

    def _binding_target(
        self, binding: Binding
    ) -> tuple[SipUri, SipUri | None, list[NameAddr], tuple[bytes, ...]]:
        contact = parse_uri(binding.contact, "Contact")
        if not isinstance(contact, SipUri):
            raise RemoteProtocolError("Unsupported URI Scheme in Contact", 416)
        if binding.path:
            first = parse_name_addr(binding.path[0], "Path").uri
            assert isinstance(first, SipUri)
            return (first, contact, [], binding.path)
        if binding.received_ip is not None and binding.received_port is not None:
            transport = Transport(binding.transport)
            hop_uri = SipUri(
                host=binding.received_ip,
                port=binding.received_port,
                params=((b"transport", transport.value.encode()),),
            )
            return (hop_uri, contact, [], ())
        return (contact, contact, [], ())

    def _path_for(self, flow: Flow) -> Callable[[Listener, IPAddress], bytes]:
        """A Path value naming us toward the core, carrying the phone's flow (RFC 3327)."""
        host = flow.remote[0]
        text = f"[{host.compressed}]" if host.version == 6 else host.compressed
        received = f"sip:{text}:{flow.remote[1]}%3Btransport%3D{flow.transport.value}"

        def make(listener: Listener, toward: IPAddress) -> bytes:
            hostport = self.identity.hostport_of(listener, toward)
            return hops.route_uri(
                listener.transport, hostport, r2=False, extra=b";received=" + received.encode()
            )

        return make
