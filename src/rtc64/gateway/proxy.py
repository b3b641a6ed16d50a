"""The stateful proxy: the transaction user between the transports and the transaction layer.

Rules (RFC 3261 §16, §10 via ``register``, §9 CANCEL; RFC 3581, RFC 3327, RFC 5658):

- Every request is validated (§16.3: Max-Forwards → 483, Proxy-Require → 420, loops
  → 482), its Route set preprocessed (§16.4: strict-router fix-up, our own Route entries
  popped), then routed:
  * in-dialog (To tag) requests follow the Route set or the Request-URI; one that did
    not come through our Route is refused (no relaying through forged in-dialog
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
- Above ``max_transactions`` in flight new requests get 503 with Retry-After; a source
  over the request rate limit is dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.gateway import hops
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.bindings import Binding, canonical_aor
from rtc64.gateway.forking import Branch, BranchState, ResponseContext, best_response
from rtc64.gateway.hops import Hop
from rtc64.gateway.identity import Identity, Listener, uri_transport
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.gateway.register import handle_register
from rtc64.gateway.registrar import RegistrarPolicy
from rtc64.gateway.stats import ProxyStats
from rtc64.gateway.store import LocationStore
from rtc64.io.flow import Flow
from rtc64.io.resolver import Resolver
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import Transport
from rtc64.sip import headers as sh
from rtc64.sip.edit import Edit
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.reject import reject_bytes
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.transaction_base import (
    AckReceived,
    ClientTimeout,
    Event,
    NewRequest,
    ResponseReceived,
    Send,
    StrayResponse,
    Terminated,
    TransportFailed,
)
from rtc64.sip.transaction_client import ClientTransaction, make_cancel
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri, format_uri, parse_uri

DIALOG_FORMING = frozenset((b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY"))
ALLOW = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, " + (
    b"SUBSCRIBE, NOTIFY, REFER"
)


class Sender(Protocol):
    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
    ) -> bool: ...


Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(slots=True)
class _Pending:
    """A proxied request: its server transaction and response context."""

    server: ServerTransaction
    request: Request
    ctx: ResponseContext


class Proxy:
    """Routes requests and responses; owns no sockets and no clock."""

    def __init__(
        self,
        *,
        identity: Identity,
        layer: TransactionLayer,
        sender: Sender,
        store: LocationStore,
        auth: Authenticator,
        resolver: Resolver,
        policy: RegistrarPolicy,
        upstream: SipUri | None,
        max_transactions: int,
        limiter: TokenBucket,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawn,
        log: logging.Logger,
        on_events: Callable[[], None] = lambda: None,
    ) -> None:
        self.identity = identity
        self.layer = layer
        self.sender = sender
        self.store = store
        self.auth = auth
        self.resolver = resolver
        self.policy = policy
        self.upstream = upstream
        self.max_transactions = max_transactions
        self.limiter = limiter
        self.clock = clock
        self.wall = wall
        self.spawn = spawn
        self.log = log
        self.stats = ProxyStats()
        self._on_events = on_events
        self._pending: dict[ServerTransaction, _Pending] = {}
        self._branches: dict[ClientTransaction, tuple[_Pending, Branch]] = {}

    # -- entry points ------------------------------------------------------------------

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
        self.stats.errors_sent += 1
        self.sender.send(reply, flow.transport, flow.remote[0], flow.remote[1], flow=flow)

    def on_timer(self) -> None:
        """The transaction layer's deadline passed."""
        self.dispatch(self.layer.handle_timer(self.clock()))

    # -- transaction events ------------------------------------------------------------

    def dispatch(self, events: list[Event]) -> None:
        """Act on what the transaction layer says."""
        for ev in events:
            if isinstance(ev, Send):
                self._send(ev.data, ev.dest)
            elif isinstance(ev, NewRequest):
                self._new_request(ev.txn)
            elif isinstance(ev, ResponseReceived):
                self._branch_response(ev.txn, ev.response)
            elif isinstance(ev, AckReceived):
                self.spawn(self._forward_in_dialog(ev.request, _flow_of(ev.dest), ack=True))
            elif isinstance(ev, StrayResponse):
                self._forward_stray(ev.response)
            elif isinstance(ev, ClientTimeout):
                self._branch_failed(ev.txn, 408, b"Request Timeout")
            elif isinstance(ev, TransportFailed):
                if isinstance(ev.txn, ClientTransaction):
                    self._branch_failed(ev.txn, 503, b"Service Unavailable")
            elif isinstance(ev, Terminated):
                self._terminated(ev.txn)
        self._on_events()

    def _send(self, data: bytes, dest: object) -> None:
        assert isinstance(dest, Hop)
        self.stats.messages_out += 1
        if not self.sender.send(
            data, dest.transport, dest.ip, dest.port, flow=dest.flow, server_name=dest.server_name
        ):
            self.stats.send_failures += 1

    def _terminated(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ServerTransaction):
            self._pending.pop(txn, None)
        else:
            self._branches.pop(txn, None)

    # -- requests ----------------------------------------------------------------------

    def _on_request(self, req: Request, flow: Flow) -> None:
        now = self.clock()
        self.stats.requests_in += 1
        if not self.limiter.allow(flow.remote[0], now):
            self.stats.rate_limited += 1
            return
        hop = hops.response_hop(req, flow)
        if req.method != b"ACK" and len(self.layer) >= self.max_transactions:
            self.stats.overloaded += 1
            resp = make_response(req, 503, headers=[(b"Retry-After", b"5")])
            self._send(serialize(resp), hop)
            return
        self.dispatch(self.layer.receive_request(req, hop, hop.reliable, now))

    def _new_request(self, server: ServerTransaction) -> None:
        req = server.request
        if req.method == b"CANCEL":
            self._cancel(server)
            return
        if req.method == b"INVITE":
            self.respond(server, make_response(req, 100))
        self.spawn(self._route(server))

    def respond(self, server: ServerTransaction, resp: Response | bytes, status: int = 0) -> None:
        """Send a response on a server transaction (ours, or forwarded bytes)."""
        if isinstance(resp, Response):
            status, data = resp.status, serialize(resp)
            if resp.status >= 300:
                self.stats.errors_sent += 1
        else:
            data = resp
        try:
            events = self.layer.send_response(server, data, self.clock())
        except LocalProtocolError as exc:
            # e.g. a late provisional after the final: nothing to send (RFC 3261 §16.7).
            self.log.debug("response %d not sent: %s", status, exc.reason)
            return
        self.dispatch(events)

    def reply(
        self,
        server: ServerTransaction,
        status: int,
        reason: str | bytes | None = None,
        headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = (),
    ) -> None:
        """Answer the request of ``server`` ourselves."""
        text = reason.encode("utf-8", "replace") if isinstance(reason, str) else reason
        self.respond(server, make_response(server.request, status, text, headers=headers))

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
        flow = _flow_of(server.dest)
        self._validate(req)
        unknown = sh.tokens(req, b"proxy-require")
        if unknown:
            # §16.3 step 5, §8.2.2.3: the 420 lists the unsupported options.
            self.reply(server, 420, None, [(b"Unsupported", b", ".join(unknown))])
            return
        uri = req.uri
        routes = list(sh.routes(req))
        if isinstance(uri, SipUri) and self.identity.is_us(uri) and routes:
            # §16.4: the previous hop was a strict router; restore the Request-URI.
            last = routes.pop()
            uri = last.uri
        popped = self._pop_ours(routes)
        if req.to.tag is not None:
            if not popped:
                self.reply(server, 403, "Forbidden: in-dialog request not routed via this proxy")
                return
            hop_uri, rewrite = self._next_from_routes(routes, uri, popped)
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
        if self.identity.is_us(uri) and uri.user is None:
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
        flow_uri = None if routes else next(filter(None, map(_received_uri, popped)), None)
        if flow_uri is not None:
            await self._forward(server, flow, [(flow_uri, None, routes, ())])
            return
        targets = await self._targets(req, uri, routes)
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

    def _via_is_ours(self, via: Any) -> bool:
        branch = via.branch or b""
        return branch.startswith(hops.BRANCH_PREFIX) and self.identity.is_our_host(via.host)

    def _pop_ours(self, routes: list[NameAddr]) -> list[SipUri]:
        popped: list[SipUri] = []
        while routes:
            top = routes[0].uri
            if not isinstance(top, SipUri) or not self.identity.is_us(top):
                break
            popped.append(top)
            routes.pop(0)
        return popped

    def _next_from_routes(
        self, routes: list[NameAddr], uri: object, popped: list[SipUri]
    ) -> tuple[SipUri, SipUri | None]:
        """Next hop URI and (for a strict-router fix-up) the Request-URI to write."""
        for p in popped:
            flow_uri = _received_uri(p)
            if flow_uri is not None and not routes:
                return flow_uri, None
        if routes:
            first = routes[0].uri
            if not isinstance(first, SipUri):
                raise RemoteProtocolError("Unsupported URI Scheme in Route", 416)
            return first, None
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError("Unsupported URI Scheme", 416)
        return uri, None

    def _answer_self(self, server: ServerTransaction) -> None:
        req = server.request
        if req.method == b"OPTIONS":
            self.reply(server, 200, None, [(b"Allow", ALLOW), (b"Accept", b"application/sdp")])
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
        listener = self._listener_of(flow)
        name = listener.name() if listener else f"{flow.transport.value}:?"
        resp = await handle_register(
            req, flow, listener=name, store=self.store, policy=self.policy, now=self.wall()
        )
        self.stats.registrations += resp.status == 200
        self.respond(server, resp)

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
            bindings = await self.store.lookup(canonical_aor(format_uri(uri)), self.wall())
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

    # -- forwarding --------------------------------------------------------------------

    def _listener_of(self, flow: Flow) -> Listener | None:
        ip, port = flow.local
        for lst in self.identity.listeners:
            if lst.transport is not flow.transport or lst.port != port:
                continue
            if lst.spec.address == ip or (lst.wildcard and family_of(ip) == lst.family):
                return lst
        return None

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

    async def _resolve(self, uri: SipUri) -> list[Hop]:
        transport = uri_transport(uri)
        port = uri.port if uri.port is not None else transport.default_port
        maddr = uri.param(b"maddr")
        host_text = maddr.decode("ascii", "replace") if maddr else None
        if host_text is None and not isinstance(uri.host, str):
            return [Hop(transport, uri.host, port)]
        name = host_text or str(uri.host)
        addresses = await self.resolver.addresses(name)
        return [Hop(transport, a, port, server_name=name) for a in addresses]

    async def _forward(
        self,
        server: ServerTransaction,
        flow: Flow,
        targets: list[tuple[SipUri, SipUri | None, list[NameAddr], tuple[bytes, ...]]],
        *,
        record_route: bool = True,
        path: Callable[[Listener, IPAddress], bytes] | None = None,
    ) -> None:
        req = server.request
        pending = self._pending.get(server)
        if pending is None:
            pending = _Pending(server, req, ResponseContext(req.method))
            self._pending[server] = pending
        in_listener = self._listener_of(flow)
        stamped = hops.stamp_top_via(req, flow)
        # The loop hash covers the Via that will sit below ours, as we write it (§16.3 step 4).
        top_via = stamped if stamped is not None else req.values(b"via")[0]
        rr = record_route and req.method in DIALOG_FORMING
        for hop_uri, new_uri, routes, extra_routes in targets:
            branch = Branch(len(pending.ctx.branches), target=str(hop_uri.host))
            pending.ctx.branches.append(branch)
            try:
                hop = await self._pick_hop(hop_uri)
            except RemoteProtocolError as exc:
                self._complete(pending, branch, exc.status, None, exc.reason.encode())
                continue
            out = self.identity.listener_for(hop.transport, hop.ip)
            if out is None:
                reason = f"Service Unavailable: no {hop.transport.value} listener for {hop.ip}"
                self._complete(pending, branch, 503, None, reason.encode())
                continue
            via = hops.via_value(
                hop.transport, self.identity.hostport_of(out, hop.ip), hops.new_branch(req, top_via)
            )
            edit = Edit(req)
            if new_uri is not None:
                edit.set_request_uri(new_uri)
            if len(routes) != len(sh.routes(req)) or extra_routes:
                edit.remove_headers(b"route")
                for value in (*extra_routes, *(bytes(r) for r in routes)):
                    edit.add_header(b"Route", value)
            edit.decrement_max_forwards()
            if rr and in_listener is not None:
                self._record_route(edit, in_listener, flow, out, hop)
            if path is not None:
                edit.add_header(b"Path", path(out, hop.ip))
                if b"path" not in (t.lower() for t in sh.tokens(req, b"supported")):
                    edit.add_header(b"Supported", b"path")
            if stamped is not None:
                edit.remove_top_via()
                edit.prepend_via(via)
                edit.prepend_via(stamped)
            else:
                edit.prepend_via(via)
            data = edit.to_bytes()
            forwarded = parse_datagram(data)
            assert isinstance(forwarded, Request)
            client, events = self.layer.start_client(
                forwarded, hop, hop.reliable, self.clock(), data=data
            )
            branch.txn = client
            self._branches[client] = (pending, branch)
            self.stats.forwarded += 1
            self.dispatch(events)
        self._maybe_finish(pending)

    async def _pick_hop(self, uri: SipUri) -> Hop:
        candidates = await self._resolve(uri)
        for hop in candidates:
            if self.identity.listener_for(hop.transport, hop.ip) is not None:
                return hop
        families = "/".join(sorted({f"IPv{h.ip.version}" for h in candidates}))
        raise RemoteProtocolError(
            f"Service Unavailable: no listener of the target's family ({families})", 503
        )

    def _record_route(
        self, edit: Edit, in_l: Listener, flow: Flow, out_l: Listener, hop: Hop
    ) -> None:
        out_hp = self.identity.hostport_of(out_l, hop.ip)
        in_hp = self.identity.hostport_of(in_l, flow.remote[0])
        if in_l is out_l and out_hp == in_hp:
            edit.add_record_route(hops.route_uri(out_l.transport, out_hp, r2=False))
            return
        # Two entries (RFC 5658): the top one faces the callee, the next the caller.
        both = (
            hops.route_uri(out_l.transport, out_hp, r2=True)
            + b", "
            + hops.route_uri(in_l.transport, in_hp, r2=True)
        )
        edit.add_record_route(both)

    async def _forward_in_dialog(self, req: Request, flow: Flow, *, ack: bool) -> None:
        """Stateless forwarding of an ACK for a 2xx along its Route set (§16.11)."""
        try:
            routes = list(sh.routes(req))
            popped = self._pop_ours(routes)
            if not popped:
                self.stats.dropped += 1
                return
            hop_uri, _ = self._next_from_routes(routes, req.uri, popped)
            hop = await self._pick_hop(hop_uri)
            out = self.identity.listener_for(hop.transport, hop.ip)
            assert out is not None
            stamped = hops.stamp_top_via(req, flow)
            via = hops.via_value(
                hop.transport,
                self.identity.hostport_of(out, hop.ip),
                hops.new_branch(req, stamped if stamped is not None else req.values(b"via")[0]),
            )
            edit = Edit(req)
            edit.remove_headers(b"route")
            for r in routes:
                edit.add_header(b"Route", bytes(r))
            edit.decrement_max_forwards()
            if stamped is not None:
                edit.remove_top_via()
                edit.prepend_via(via)
                edit.prepend_via(stamped)
            else:
                edit.prepend_via(via)
            self._send(edit.to_bytes(), hop)
            self.stats.forwarded += 1
        except RemoteProtocolError as exc:
            self.stats.dropped += 1
            self.log.debug("ACK not forwarded: %s", exc.reason)

    def _forward_stray(self, resp: Response) -> None:
        """A response for no transaction of ours: forward it if its top Via is ours."""
        if len(resp.vias) < 2 or not self._via_is_ours(resp.via):
            self.stats.dropped += 1
            return
        nxt = resp.vias[1]
        try:
            transport = Transport(nxt.transport.decode("ascii").lower())
        except ValueError:
            self.stats.dropped += 1
            return
        ip = nxt.received or (nxt.host if not isinstance(nxt.host, str) else None)
        if ip is None:
            self.stats.dropped += 1
            return
        port = nxt.rport or nxt.port or transport.default_port
        self._send(Edit(resp).remove_top_via().to_bytes(), Hop(transport, ip, port))

    # -- responses, CANCEL -------------------------------------------------------------

    def _branch_response(self, client: ClientTransaction, resp: Response) -> None:
        entry = self._branches.get(client)
        if entry is None:
            return
        pending, branch = entry
        status = resp.status
        if status < 200:
            if status == 100:
                return
            branch.state = BranchState.PROCEEDING
            if branch.cancel_wanted and not branch.cancelled:
                self._send_cancel(branch)
            if not pending.ctx.final_forwarded:
                self.respond(pending.server, Edit(resp).remove_top_via().to_bytes(), status)
            return
        self._complete(pending, branch, status, resp, resp.reason)

    def _branch_failed(self, client: ClientTransaction, status: int, reason: bytes) -> None:
        entry = self._branches.pop(client, None)
        if entry is not None:
            self._complete(entry[0], entry[1], status, None, reason)

    def _complete(
        self, pending: _Pending, branch: Branch, status: int, resp: Response | None, reason: bytes
    ) -> None:
        first_final = branch.state is not BranchState.COMPLETED
        branch.state = BranchState.COMPLETED
        branch.final_status = status
        branch.final = resp
        ctx = pending.ctx
        if 200 <= status < 300 and resp is not None:
            # Every 2xx goes upstream (forked INVITEs may get several, §16.7 step 5).
            ctx.final_forwarded = True
            self.respond(pending.server, Edit(resp).remove_top_via().to_bytes(), status)
            if first_final and ctx.method == b"INVITE":
                self._cancel_pending(ctx)
            return
        if not first_final:
            return
        branch.reason = reason
        if status >= 600 and ctx.method == b"INVITE":
            self._cancel_pending(ctx)
        self._maybe_finish(pending)

    def _maybe_finish(self, pending: _Pending) -> None:
        ctx = pending.ctx
        if ctx.final_forwarded or not ctx.branches or not ctx.all_completed():
            return
        ctx.final_forwarded = True
        status, data = best_response(ctx, pending.request)
        self.respond(pending.server, data, status)

    def _cancel(self, server: ServerTransaction) -> None:
        """CANCEL (§9.2, §16.10): 200 to the CANCEL, CANCEL every pending branch."""
        invite = self.layer.find_invite_for_cancel(server.request)
        if invite is None:
            self.reply(server, 481, "Call/Transaction Does Not Exist")
            return
        self.reply(server, 200)
        pending = self._pending.get(invite)
        if pending is None:
            return
        pending.ctx.cancelled = True
        self._cancel_pending(pending.ctx)

    def _cancel_pending(self, ctx: ResponseContext) -> None:
        for branch in ctx.pending():
            if branch.state is BranchState.PROCEEDING:
                self._send_cancel(branch)
            else:
                branch.cancel_wanted = True

    def _send_cancel(self, branch: Branch) -> None:
        branch.cancelled = True
        client = branch.txn
        if not isinstance(client, ClientTransaction):
            return
        hop = client.dest
        assert isinstance(hop, Hop)
        cancel = make_cancel(client.request)
        _, events = self.layer.start_client(cancel, hop, hop.reliable, self.clock())
        self.dispatch(events)


def _flow_of(dest: object) -> Flow:
    assert isinstance(dest, Hop) and dest.flow is not None
    return dest.flow


def _received_uri(route: SipUri) -> SipUri | None:
    """The flow a Path entry of ours recorded (``received=`` param), as a URI."""
    value = route.param(b"received")
    if not value:
        return None
    text = value.replace(b"%3B", b";").replace(b"%3b", b";").replace(b"%3D", b"=")
    uri = parse_uri(text.replace(b"%3d", b"="), "Path received")
    return uri if isinstance(uri, SipUri) else None
