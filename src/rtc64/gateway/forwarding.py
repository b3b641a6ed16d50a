"""The proxy's transaction-user core: events, forwarding, responses, CANCEL.

Rules (RFC 3261 §16.6 forwarding, §16.7 responses, §16.10 CANCEL, §16.11 stateless ACK
forwarding; RFC 5658 double Record-Route; RFC 3581):

- ``dispatch`` acts on the transaction layer's events in order; the routing decisions
  (what the targets are) live in ``proxy.Proxy``, which extends this class.
- A request is forwarded by splicing its received bytes (``sip.edit``): Request-URI,
  Route set, Max-Forwards, Record-Route, our Via on top of the stamped previous one, and
  the SDP body rewritten by the media bridge when the call is relayed.
- Provisional responses (not 100) and every 2xx go upstream at once; the best final when
  every branch has completed (``forking``); a 2xx or 6xx cancels the pending branches.
- Timer C and the BYEs for calls whose media died are in ``calls.CallControl``, the
  happy-eyeballs races in ``racing.RacingCore``; ``proxy.Proxy`` extends both.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Network
from typing import Any

from rtc64.errors import LocalProtocolError, RemoteProtocolError, Rtc64Error
from rtc64.gateway import hops
from rtc64.gateway.admission import Admission
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.branches import Pending, Plan, Sender, Spawn, flow_of, ip_of, received_uri
from rtc64.gateway.dialogs import DialogTracker
from rtc64.gateway.forking import Branch, BranchState, ResponseContext, best_response
from rtc64.gateway.hops import Hop
from rtc64.gateway.identity import Identity, Listener, uri_transport
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.location.store import LocationStore
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.gateway.stats import ProxyStats
from rtc64.io.resolver import Resolver
from rtc64.net import rfc6052
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip import headers as sh
from rtc64.sip.edit import Edit
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.nameaddr import NameAddr
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
from rtc64.sip.uri import SipUri, Uri

DIALOG_FORMING = frozenset((b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY"))
TIMER_C = 180.0  # > 3 minutes per RFC 3261 §16.6 step 11; 180 s as Kamailio's fr_inv_timer


def transport_reason(detail: str) -> bytes:
    """The reason phrase of a 503 for a transport failure: printable, one line, bounded
    (the detail may quote a peer's certificate)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in detail).split())[:160]
    return ("Service Unavailable: " + text if text else "Service Unavailable").encode(
        "utf-8", "replace"
    )


class ProxyCore:
    """Shared state and the forwarding/response machinery of the proxy."""

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
        media: MediaBridge | None = None,
        secret: bytes = b"",
        timer_c: float = TIMER_C,
        admission: Admission | None = None,
        nat64: IPv6Network | None = None,
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
        self._pending: dict[ServerTransaction, Pending] = {}
        self._branches: dict[ClientTransaction, tuple[Pending, Branch]] = {}
        self.media = media
        self.secret = secret or secrets.token_bytes(32)
        self.timer_c = timer_c
        self.admission = admission or Admission(max_in_flight=max_transactions)
        self.nat64 = nat64
        self.in_flight = 0
        """Proxied requests still waiting for their final response (the overload measure;
        finished transactions lingering for retransmissions are cheap and not counted)."""
        self.dialogs = DialogTracker(identity.is_us, started=wall())

    def _new_request(self, server: ServerTransaction) -> None:
        """A new server transaction: decided by the routing layer (``proxy.Proxy``)."""
        raise NotImplementedError

    def dispatch(self, events: list[Event]) -> None:
        """Act on what the transaction layer says."""
        for ev in events:
            if isinstance(ev, Send):
                self._send(ev.data, ev.dest, ev.txn)
            elif isinstance(ev, NewRequest):
                self._new_request(ev.txn)
            elif isinstance(ev, ResponseReceived):
                self._branch_response(ev.txn, ev.response)
            elif isinstance(ev, AckReceived):
                self.spawn(self._forward_in_dialog(ev.request, flow_of(ev.dest), ack=True))
            elif isinstance(ev, StrayResponse):
                self._forward_stray(ev.response)
            elif isinstance(ev, ClientTimeout):
                self._branch_failed(ev.txn, 408, b"Request Timeout")
            elif isinstance(ev, TransportFailed):
                if isinstance(ev.txn, ClientTransaction):
                    self._branch_failed(ev.txn, 503, transport_reason(ev.reason))
            elif isinstance(ev, Terminated):
                self._terminated(ev.txn)
        self._on_events()

    def _send(self, data: bytes, dest: object, txn: object = None) -> None:
        assert isinstance(dest, Hop)
        if self.response_loops(data, dest):
            return
        self.stats.messages_out += 1
        if not self.sender.send(
            data,
            dest.transport,
            dest.ip,
            dest.port,
            flow=dest.flow,
            server_name=dest.server_name,
            handle=txn,
        ):
            self.stats.send_failures += 1

    def response_loops(self, data: bytes, dest: Hop) -> bool:
        """Loop guard: a response whose destination is one of our own sockets (a Via
        sent-by naming us without rport, a spoofed source) is dropped and counted."""
        if not data.startswith(b"SIP/2.0 ") or dest.reliable:
            return False
        if not self.identity.is_own_socket(dest.transport, dest.ip, dest.port):
            return False
        self.stats.response_loops += 1
        self.log.debug("response to our own socket %s dropped (loop)", dest)
        return True

    def transport_failed(self, handle: object, reason: str) -> None:
        """The transport could not send for ``handle`` (RFC 3261 §17.1.4, §16.7 step 5):
        its transaction ends at once, a branch tries its next address or gets 503."""
        if isinstance(handle, ClientTransaction | ServerTransaction):
            self.dispatch(self.layer.transport_error(handle, self.clock(), reason))

    def _terminated(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ServerTransaction):
            pending = self._pending.pop(txn, None)
            if pending is not None:
                self._finish(pending)
        else:
            self._branches.pop(txn, None)

    def _finish(self, pending: Pending) -> None:
        """The request got its final response upstream (or its transaction ended)."""
        if not pending.ctx.final_forwarded:
            pending.ctx.final_forwarded = True
            self.in_flight -= 1
            if pending.ctx.method != b"INVITE":
                # Retransmissions are absorbed by the transaction alone: forget it now
                # rather than when its Timer J ends (32 s of lingering state per request).
                self._pending.pop(pending.server, None)

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
        req = self.local_request(server)
        self.respond(server, make_response(req, status, text, headers=headers))

    @staticmethod
    def local_request(server: ServerTransaction) -> Request:
        """The request to build our own responses from: top Via stamped (RFC 3581 §4)."""
        dest = server.dest
        if isinstance(dest, Hop) and dest.flow is not None:
            return hops.with_stamped_via(server.request, dest.flow)
        return server.request

    def on_timer(self) -> None:
        """The transaction layer's deadline passed."""
        self.dispatch(self.layer.handle_timer(self.clock()))

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
        self, routes: list[NameAddr], uri: object, popped: list[SipUri], flow: Flow
    ) -> tuple[SipUri, SipUri | None]:
        """Next hop URI and (for a strict-router fix-up) the Request-URI to write."""
        for p in popped:
            flow_uri = received_uri(p)
            if flow_uri is not None and not routes:
                return flow_uri, None
        if not routes:
            toward = hops.flow_toward(popped, flow, self.sender.has_connection)
            if toward is not None:
                return toward, None
        if routes:
            first = routes[0].uri
            if not isinstance(first, SipUri):
                raise RemoteProtocolError("Unsupported URI Scheme in Route", 416)
            return first, None
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError("Unsupported URI Scheme", 416)
        return uri, None

    def _listener_of(self, flow: Flow) -> Listener | None:
        ip, port = flow.local
        for lst in self.identity.listeners:
            if lst.transport is not flow.transport or lst.port != port:
                continue
            if lst.spec.address == ip or (lst.wildcard and family_of(ip) == lst.family):
                return lst
        return None

    async def _resolve(self, uri: SipUri) -> list[Hop]:
        transport = uri_transport(uri)
        port = uri.port if uri.port is not None else transport.default_port
        maddr = uri.param(b"maddr")
        host_text = maddr.decode("ascii", "replace") if maddr else None
        if host_text is None and not isinstance(uri.host, str):
            return [Hop(transport, uri.host, port)]
        if host_text is not None:  # §16.5: maddr overrides the host, A/AAAA only
            addresses = await self.resolver.addresses(host_text)
            return [Hop(transport, a, port, server_name=host_text) for a in addresses]
        # RFC 3263: NAPTR/SRV/AAAA/A, both families, IPv6 first and interleaved. A TLS
        # server proves the URI's domain, not the SRV target's name (RFC 5922 §4.1).
        return [
            Hop(t.transport, t.address, t.port, server_name=str(uri.host))
            for t in await self.resolver.targets(uri)
        ]

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
            pending = Pending(server, req, ResponseContext(req.method))
            self.in_flight += 1
            self._pending[server] = pending
        in_listener = self._listener_of(flow)
        stamped = hops.stamp_top_via(req, flow)
        rr = record_route and req.method in DIALOG_FORMING and in_listener is not None
        pending.record_routed = rr
        if rr and req.to.tag is None:
            self.dialogs.begin(req, self.clock())
        for hop_uri, new_uri, routes, extra_routes in targets:
            branch = Branch(len(pending.ctx.branches), target=str(hop_uri.host))
            pending.ctx.branches.append(branch)
            new_routes = None
            if len(routes) != len(sh.routes(req)) or extra_routes:
                new_routes = (*extra_routes, *(bytes(r) for r in routes))
            plan = Plan(
                flow=flow,
                in_listener=in_listener if rr else None,
                stamped=stamped,
                new_uri=new_uri,
                routes=new_routes,
                path=path,
            )
            try:
                candidates = await self._candidates(hop_uri)
            except RemoteProtocolError as exc:
                self.log.info("no route to %s for %r: %s", hop_uri.host, req.call_id, exc.reason)
                self._complete(pending, branch, exc.status, None, exc.reason.encode())
                continue
            await self._start_branch(pending, branch, plan, candidates, str(hop_uri.host))
        self._maybe_finish(pending)

    async def _start_branch(
        self, pending: Pending, branch: Branch, plan: Plan, candidates: list[Hop], key: str
    ) -> None:
        """Send the branch to its first candidate (``racing.RacingCore`` races them)."""
        self._attempt(pending, branch, plan, candidates[0])

    def _attempt(
        self, pending: Pending, branch: Branch, plan: Plan, hop: Hop
    ) -> ClientTransaction | None:
        """Forward one copy of the request to ``hop`` as a new client transaction."""
        req = pending.request
        out = self.identity.listener_for(hop.transport, hop.ip)
        if out is None:
            reason = f"Service Unavailable: no {hop.transport.value} listener for {hop.ip}"
            self._complete(pending, branch, 503, None, reason.encode())
            return None
        # The loop hash covers the Via that will sit below ours, as we write it (§16.3 step 4).
        top_via = plan.stamped if plan.stamped is not None else req.values(b"via")[0]
        via = hops.via_value(
            hop.transport, self.identity.hostport_of(out, hop.ip), hops.new_branch(req, top_via)
        )
        edit = Edit(req)
        try:
            body = self._media_body(req, plan.flow, hop)
        except Rtc64Error as exc:
            self.log.warning("media: cannot relay %r: %s", req.call_id, exc)
            self._complete(pending, branch, 503, None, b"Service Unavailable: no media relay ports")
            return None
        if body is not None:
            edit.set_body(body)
        if plan.new_uri is not None:
            edit.set_request_uri(plan.new_uri)
        if plan.routes is not None:
            edit.remove_headers(b"route")
            for value in plan.routes:
                edit.add_header(b"Route", value)
        for i in self._own_credentials(req):
            edit.remove_line(i)  # §22.3: credentials for our realm stop here
        edit.decrement_max_forwards()
        if plan.in_listener is not None:
            target = plan.new_uri if plan.new_uri is not None else req.uri
            self._record_route(edit, plan.in_listener, plan.flow, out, hop, req=req, target=target)
        if plan.path is not None:
            edit.add_header(b"Path", plan.path(out, hop.ip))
            if b"path" not in (t.lower() for t in sh.tokens(req, b"supported")):
                edit.add_header(b"Supported", b"path")
        if plan.stamped is not None:
            edit.remove_top_via()
            edit.prepend_via(via)
            edit.prepend_via(plan.stamped)
        else:
            edit.prepend_via(via)
        data = edit.to_bytes()
        forwarded = hops.forwarded_view(req, via, uri=plan.new_uri, routes=plan.routes)
        client, events = self.layer.start_client(
            forwarded, hop, hop.reliable, self.clock(), data=data
        )
        branch.txn = client
        if req.method == b"INVITE":
            branch.timer_c = self.clock() + self.timer_c
        self._branches[client] = (pending, branch)
        self.stats.forwarded += 1
        self.dispatch(events)
        return client

    async def _candidates(self, uri: SipUri) -> list[Hop]:
        """Where ``uri`` leads (RFC 3263), keeping hops we have a listener for."""
        found = await self._resolve(uri)
        usable: list[Hop] = []
        gone = [h for h in found if h.transport in hops.INBOUND_ONLY and not self._connected(h)]
        if gone and len(gone) == len(found):
            # RFC 5626 §5.3 / RFC 7118 §5: we cannot open a WebSocket toward a client.
            raise RemoteProtocolError(f"Flow Failed: no open connection to {gone[0]}", 430)
        for hop in found:
            if hop in gone:
                continue
            if self.identity.listener_for(hop.transport, hop.ip) is not None:
                usable.append(hop)
            elif self.nat64 is not None and isinstance(hop.ip, IPv4Address):
                # An IPv6-only gateway reaches IPv4-only targets through the NAT64 (RFC 6052).
                synth = Hop(hop.transport, rfc6052.synthesize(hop.ip, self.nat64), hop.port,
                            server_name=hop.server_name)  # fmt: skip
                if self.identity.listener_for(synth.transport, synth.ip) is not None:
                    usable.append(synth)
        if usable:
            return usable
        families = "/".join(sorted({f"IPv{h.ip.version}" for h in found}))
        raise RemoteProtocolError(
            f"Service Unavailable: no listener of the target's family ({families})", 503
        )

    def _connected(self, hop: Hop) -> bool:
        return self.sender.has_connection(hop.transport, hop.ip, hop.port)

    async def _pick_hop(self, uri: SipUri) -> Hop:
        """The first usable hop for ``uri`` (stateless forwarding: ACK, our own BYEs)."""
        return (await self._candidates(uri))[0]

    def _record_route(
        self,
        edit: Edit,
        in_l: Listener,
        flow: Flow,
        out_l: Listener,
        hop: Hop,
        *,
        req: Request,
        target: Uri,
    ) -> None:
        out_hp = self.identity.hostport_of(out_l, hop.ip)
        in_hp = self.identity.hostport_of(in_l, flow.remote[0])
        issued, tag = int(self.wall()), req.from_.tag or b""
        # The entry facing a party on a connection names that connection (RFC 5626 flow
        # token): in-dialog requests toward it must go back over it (RFC 7118 §5).
        contact = sh.contacts(req)
        caller_target = contact[0].uri if contact and not isinstance(contact, sh.Star) else None
        caller_flow = hops.flow_token(flow.transport, flow.remote[0], flow.remote[1], caller_target)
        callee_flow = hops.flow_token(hop.transport, hop.ip, hop.port, target)
        in_token = hops.token_params(self.secret, req.call_id, tag, issued, caller_flow)
        out_token = hops.token_params(self.secret, req.call_id, tag, issued, callee_flow)
        if in_l is out_l and out_hp == in_hp and in_token == out_token:
            edit.add_record_route(hops.route_uri(out_l.transport, out_hp, r2=False, extra=in_token))
            return
        # Two entries (RFC 5658): the top one faces the callee, the next the caller.
        both = (
            hops.route_uri(out_l.transport, out_hp, r2=True, extra=out_token)
            + b", "
            + hops.route_uri(in_l.transport, in_hp, r2=True, extra=in_token)
        )
        edit.add_record_route(both)

    async def _forward_in_dialog(self, req: Request, flow: Flow, *, ack: bool) -> None:
        """Stateless forwarding of an ACK for a 2xx along its Route set (§16.11)."""
        try:
            routes = list(sh.routes(req))
            popped = self._pop_ours(routes)
            why = await self.admit_in_dialog(req, flow, popped, routes, req.uri)
            if why is not None:
                self.stats.dropped += 1
                self.log.info("ACK for %r from %s dropped: %s", req.call_id, flow, why)
                return
            self.dialogs.seen(req, self.clock())
            hop_uri, _ = self._next_from_routes(routes, req.uri, popped, flow)
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
            body = self._media_body(req, flow, hop)
            if body is not None:
                edit.set_body(body)
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
        except Rtc64Error as exc:
            self.stats.dropped += 1
            self.log.debug("ACK not forwarded: %s", exc)

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
            branch.timer_c = self.clock() + self.timer_c
            if pending.record_routed and pending.request.to.tag is None:
                self.dialogs.answered(pending.request, resp, self.clock())
            if not pending.ctx.final_forwarded:
                self.respond(pending.server, self._upstream(pending, client, resp), status)
            return
        self._complete(pending, branch, status, resp, resp.reason)

    def _branch_failed(self, client: ClientTransaction, status: int, reason: bytes) -> None:
        entry = self._branches.pop(client, None)
        if entry is not None:
            self._complete(entry[0], entry[1], status, None, reason)

    def _complete(
        self, pending: Pending, branch: Branch, status: int, resp: Response | None, reason: bytes
    ) -> None:
        first_final = branch.state is not BranchState.COMPLETED
        branch.state = BranchState.COMPLETED
        branch.final_status = status
        branch.final = resp
        ctx = pending.ctx
        if first_final and ctx.method == b"BYE":
            self.dialogs.bye_answered(pending.request, status)
        if 200 <= status < 300 and resp is not None:
            # Every 2xx goes upstream (forked INVITEs may get several, §16.7 step 5).
            self._finish(pending)
            client = branch.txn
            assert isinstance(client, ClientTransaction)
            self.respond(pending.server, self._upstream(pending, client, resp), status)
            if first_final and ctx.method == b"INVITE":
                if pending.record_routed and pending.request.to.tag is None:
                    self.dialogs.confirmed(pending.request, resp, self.clock())
                self._cancel_pending(ctx)
            return
        if not first_final:
            return
        branch.reason = reason
        if status >= 600 and ctx.method == b"INVITE":
            self._cancel_pending(ctx)
        self._maybe_finish(pending)

    def _maybe_finish(self, pending: Pending) -> None:
        ctx = pending.ctx
        if ctx.final_forwarded or not ctx.branches or not ctx.all_completed():
            return
        self._finish(pending)
        status, data = best_response(ctx, self.local_request(pending.server))
        self.respond(pending.server, data, status)
        req = pending.request
        if status >= 300 and req.to.tag is None and pending.record_routed:
            self.dialogs.end(req.call_id)
        if status >= 300 and req.method == b"INVITE" and req.to.tag is None:
            self.end_call(req.call_id)

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

    # -- media, dialogs, Timer C -------------------------------------------------------

    def _own_credentials(self, req: Request) -> list[int]:
        """Header lines of Proxy-Authorization for our own realm."""
        lines = req.key_index().get(b"proxy-authorization", [])
        realm = b'realm="%s"' % self.auth.realm.encode("utf-8", "replace")
        return [i for i in lines if realm in req.headers[i].value]

    async def admit_in_dialog(
        self, req: Request, flow: Flow, popped: list[SipUri], routes: list[NameAddr], uri: Uri
    ) -> str | None:
        """None when an in-dialog request may use our Route entries ``popped`` (``routes``
        the entries after ours, ``uri`` the Request-URI after Route processing); else why
        not. Every entry of ours must carry this call's token; from an untrusted source the
        request must also belong to a live dialog (``dialogs.DialogTracker.admit``) or
        carry valid credentials."""
        if not popped:
            return "Forbidden: in-dialog request not routed via this proxy"
        issued = hops.tokens_issued(self.secret, req, popped)
        if issued is None:
            return "Forbidden: Route not recorded by this proxy for this call"
        source = flow.remote[0]
        if self.auth.is_trusted(source):
            return None
        routed = (r.uri for r in routes)
        why = self.dialogs.admit(req, uri, routed, issued, wall=self.wall(), now=self.clock())
        if why is None:
            return None
        if req.method != b"ACK" and req.has(b"proxy-authorization"):
            verdict = await self.auth.check(req, source, self.wall(), proxy=True)
            if verdict.ok:
                return None
        self.stats.in_dialog_refused += 1
        self.log.info("in-dialog %s for %r from %s refused: %s", req.method.decode(
            "ascii", "replace"), req.call_id, flow, why)  # fmt: skip
        return why

    def _media_body(self, req: Request, flow: Flow, hop: Hop) -> bytes | None:
        if self.media is None:
            return None
        return self.media.request_body(req, flow.remote[0], hop.ip)

    def _upstream(self, pending: Pending, client: ClientTransaction, resp: Response) -> bytes:
        """A response to send upstream: our Via removed, SDP rewritten if relayed."""
        edit = Edit(resp).remove_top_via()
        if self.media is not None:
            try:
                body = self.media.response_body(
                    pending.request, resp, ip_of(client.dest), ip_of(pending.server.dest)
                )
            except Rtc64Error as exc:
                self.log.warning("media: answer for %r not relayed: %s", resp.call_id, exc)
                body = None
            if body is not None:
                edit.set_body(body)
        return edit.to_bytes()

    def in_dialog(self, req: Request) -> None:
        """Bookkeeping for an in-dialog request being forwarded (the dialog itself ends
        with the BYE's final response, ``_complete``)."""
        self.dialogs.seen(req, self.clock())
        if req.method == b"BYE" and self.media is not None:
            self.media.end(req.call_id)

    def end_call(self, call_id: bytes) -> None:
        """The call is over: release its media and forget its dialog."""
        self.dialogs.end(call_id)
        if self.media is not None:
            self.media.end(call_id)
