"""The stateful proxy as a service: admission, the transaction layer, and the parts.

Rules (RFC 3261 §16, §17; RFC 3581 response routing):

- ``on_message``: a response goes to the transaction layer; a request is admitted first.
  New dialogs and registrations from an untrusted source over the request rate are
  dropped and counted, the start of each throttle episode logged once (trusted networks,
  the upstream core and in-dialog requests are never limited). When ``admission`` sheds
  (receive backlog or loop lag over target, or ``max_transactions`` in flight) *new*
  work gets 503 with Retry-After, while in-dialog requests, ACKs and retransmissions of
  requests in progress keep flowing so calls finish. Over UDP the decision is taken
  before parsing when the raw bytes allow it (``shed_raw``, ``sip.peek``): the 503 is
  built from the request's own lines at a fraction of what parsing and routing it would
  cost, so shedding stays cheap enough to protect the work admitted (RFC 6357 §3.1).
- A plain UDP ACK for a 2xx may be forwarded from its raw bytes (``on_raw_request``,
  ``indialog``) when every check of the full path passes on them; else it is parsed.
  Other in-dialog requests (a BYE) get their server transaction as usual and may then
  be routed at once (``atonce.forward_in_dialog``), without the routing coroutine.
- A REGISTER for the registrar gets no server transaction (``routing.Routing.register``:
  challenged at once, or answered once its binding is stored).
- The transaction layer's events are dispatched: a new request to the routing step
  (CANCEL and the 100 Trying of an INVITE straight to the forwarder), an ACK for a 2xx
  to the routing step's stateless path, everything else to the forwarder.
- One deadline: ``get_timer`` is the earliest of the transaction layer's timers, the
  happy-eyeballs races' and call control's Timer C; ``handle_timer(now)`` fires what is due;
  after every batch ``wake()`` tells the owner's driver to follow ``get_timer()``.

The INVITE path, socket to socket: ``on_message`` → ``TransactionLayer.receive_request``
→ ``routing.Routing.route`` (``router.Router`` decides, with look-ups between) →
``forwarder.Forwarder.forward`` → ``nexthop.NextHops`` (RFC 3263) → ``racing.Racing``
(which hop) → ``Forwarder.launch`` (``splice`` builds the bytes) → a client transaction
→ ``Sender.send``. Responses come back through ``Forwarder`` (``forking`` picks the best)
with ``calls.CallControl`` told what it needs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Network

from rtc64.errors import RemoteProtocolError
from rtc64.gateway import ratelimit
from rtc64.gateway.admission import Admission
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.identity import Identity
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.location.store import LocationStore
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.atonce import forward_in_dialog
from rtc64.gateway.proxy.branches import Sender, Spawn, flow_of
from rtc64.gateway.proxy.calls import TIMER_C, CallControl
from rtc64.gateway.proxy.dialogs import DialogTracker
from rtc64.gateway.proxy.forwarder import Forwarder
from rtc64.gateway.proxy.indialog import forward_raw_ack
from rtc64.gateway.proxy.nexthop import HostResolver, NextHops
from rtc64.gateway.proxy.quick import forward_raw_response
from rtc64.gateway.proxy.racing import FAMILY_PENALTY, Racing
from rtc64.gateway.proxy.router import Router
from rtc64.gateway.proxy.routing import Routing
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.gateway.stats import CallView, Fallbacks, ProxyStats, SipTraffic
from rtc64.net.address import IPAddress, family_of, unmap
from rtc64.net.endpoint import Flow
from rtc64.net.eyeballs import ATTEMPT_DELAY
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.peek import new_work_branch, peek_request, peek_response
from rtc64.sip.reject import reject_bytes
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.transaction_base import AckReceived, Event, NewRequest
from rtc64.sip.transaction_client import ClientTransaction
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri

RETRY_AFTER = (b"Retry-After", b"5")
"""What a 503 for new work under overload says: come back in a few seconds."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What the proxy is told by configuration (``sip.*``, ``registrar.*``, ``dns.*``)."""

    upstream: SipUri | None = None  # the core every request goes to (upstream mode)
    max_transactions: int = 10_000  # in flight before shedding (without an ``Admission``)
    registrar: RegistrarPolicy = field(default_factory=RegistrarPolicy)
    secret: bytes = b""  # Record-Route tokens; empty: a random one per process
    timer_c: float = TIMER_C
    attempt_delay: float | None = ATTEMPT_DELAY  # None: no happy-eyeballs racing
    family_penalty: float = FAMILY_PENALTY
    nat64: IPv6Network | None = None  # reach IPv4-only targets through this prefix


def _nothing() -> None:
    return None


class Proxy:
    """Routes requests and responses; owns no sockets and no clock."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        identity: Identity,
        layer: TransactionLayer,
        sender: Sender,
        store: LocationStore,
        auth: Authenticator,
        resolver: HostResolver,
        limiter: TokenBucket,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawn,
        log: logging.Logger,
        media: MediaBridge | None = None,
        admission: Admission | None = None,
        wake: Callable[[], None] = _nothing,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.layer = layer
        self.sender = sender
        self.limiter = limiter
        self.clock = clock
        self.spawn = spawn
        self.log = log
        self.admission = admission or Admission(max_in_flight=settings.max_transactions)
        self._wake = wake
        self.stats = stats = ProxyStats()
        self.draining = False  # SIGTERM: new calls get 503, calls in progress go on
        self._admitted_raw: bytes | None = None  # the datagram ``shed_raw`` just admitted
        self.traffic = SipTraffic()
        self.fallbacks = fallbacks = Fallbacks()
        self.secret = secret = settings.secret or secrets.token_bytes(32)
        self.calls = CallControl(
            is_ours=identity.is_us,
            log=log,
            media=media,
            timer_c=settings.timer_c,
            started=wall(),
        )
        self.racing = Racing(
            connector=sender,
            clock=clock,
            stats=stats,
            fallbacks=fallbacks,
            log=log,
            attempt_delay=settings.attempt_delay,
            family_penalty=settings.family_penalty,
        )
        self.forwarder = Forwarder(
            identity=identity,
            layer=layer,
            sender=sender,
            nexthops=NextHops(
                resolver,
                identity,
                connected=sender.has_connection,
                nat64=settings.nat64,
                fallbacks=fallbacks,
            ),
            racer=self.racing,
            calls=self.calls,
            realm=auth.realm,
            secret=secret,
            clock=clock,
            wall=wall,
            spawn=spawn,
            stats=stats,
            log=log,
            on_events=self._rearm,
            media=media,
        )
        self.routing = Routing(
            router=Router(
                identity,
                secret=secret,
                upstream=settings.upstream,
                connected=sender.has_connection,
            ),
            forwarder=self.forwarder,
            calls=self.calls,
            identity=identity,
            auth=auth,
            store=store,
            policy=settings.registrar,
            clock=clock,
            wall=wall,
            stats=stats,
            log=log,
            spawn=spawn,
        )

    def calls_in_progress(self) -> list[CallView]:
        """Calls through this proxy now, relayed or not (``gateway.stats.ProxyView``)."""
        return self.calls.snapshot(self.clock())

    @property
    def dialogs(self) -> DialogTracker:
        """The dialogs we record-routed (call control's)."""
        return self.calls.dialogs

    @property
    def in_flight(self) -> int:
        """Proxied requests still waiting for their final response."""
        return self.forwarder.in_flight

    # -- input ----------------------------------------------------------------------------

    def on_message(self, msg: Request | Response, flow: Flow) -> None:
        """A parsed message arrived on ``flow``."""
        if isinstance(msg, Request):
            self.traffic.request(msg.method, flow.transport.value, flow.family)
            self._on_request(msg, flow)
        else:
            self.traffic.response(msg.status, flow.transport.value, flow.family)
            self.stats.responses_in += 1
            self._dispatch(self.layer.receive_response(msg, self.clock()))

    def on_raw_response(self, data: bytes, flow: Flow) -> bool:
        """A UDP response before parsing: forwarded from its raw bytes when its plain
        shape and its transaction allow (``quick``); False: parse it (``on_message``)."""
        raw = peek_response(data)
        if raw is None or not forward_raw_response(self.forwarder, raw, data, flow, self.clock()):
            return False
        self.traffic.response(raw.status, flow.transport.value, flow.family)
        self.stats.responses_in += 1
        self.stats.raw_replies += 1
        self._rearm()
        return True

    def on_raw_request(self, data: bytes, flow: Flow) -> bool:
        """A UDP request before parsing, once ``shed_raw`` let it through: an ACK for a
        2xx forwarded from its raw bytes when its plain shape and every check allow
        (``indialog``); False: parse it (``on_message``)."""
        if data[:4] != b"ACK ":
            return False
        raw = peek_request(data)
        if raw is None:
            return False
        try:
            if not forward_raw_ack(self.routing, raw, data, flow):
                return False
        except Exception:  # the full path judges it (and answers what it must)
            self.log.exception("proxy: raw ACK path failed on a datagram from %s", flow)
            return False
        self.traffic.request(raw.method, flow.transport.value, flow.family)
        self.stats.requests_in += 1
        self.stats.raw_acks += 1
        return True

    def on_bad_datagram(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        """An unparseable message: answer requests whose headers allow it, drop the rest."""
        self.stats.bad_messages += 1
        reply = reject_bytes(data, error.status, error.reason) if data else None
        if reply is None:
            self.log.debug("dropped malformed message from %s: %s", flow, error.reason)
            return
        hop = hops.Hop(flow.transport, flow.remote[0], flow.remote[1], flow)
        if self.forwarder.response_loops(reply, hop):
            return
        self.stats.errors_sent += 1
        self.sender.send(reply, flow.transport, flow.remote[0], flow.remote[1], flow=flow)

    def _on_request(self, req: Request, flow: Flow) -> None:
        now = self.clock()
        self.stats.requests_in += 1
        initial = req.to.tag is None and req.method not in (b"ACK", b"CANCEL")
        admitted, self._admitted_raw = self._admitted_raw, None
        if admitted is not None and admitted is req.wire:
            busy = False  # rate and admission decided before parsing (``shed_raw``)
        else:
            if self.limiter.rate and self._throttled(req, flow.remote[0], now):
                return
            busy = self.admission.shed(initial, self.in_flight, now)
        hop = hops.response_hop(req, flow)
        busy = busy or (self.draining and initial and req.method == b"INVITE")
        # Shed new work only: in-dialog requests and responses finish the calls we carry,
        # and a retransmission of a request we are handling is absorbed as usual.
        if busy and req.method != b"ACK" and not self._in_progress(req):
            self.stats.overloaded += 1
            stamped = hops.with_stamped_via(req, flow)
            resp = make_response(stamped, 503, headers=[RETRY_AFTER])
            self.forwarder.send(serialize(resp), hop)
            return
        if req.method == b"REGISTER":
            try:
                if self.routing.register(req, flow, hop):  # the registrar: no transaction
                    return
            except Exception:  # the stateful path answers it (500 if it fails again)
                self.log.exception("proxy: error taking a REGISTER statelessly")
        self._dispatch(self.layer.receive_request(req, hop, hop.reliable, now))

    def _in_progress(self, req: Request) -> bool:
        """A retransmission of a request we handle: its server transaction, or a REGISTER
        the registrar took lately (it keeps no transaction, ``RecentBranches``)."""
        if self.layer.find_server(req) is not None:
            return True
        return req.method == b"REGISTER" and req.via.branch in self.routing.recent

    def shed_raw(self, data: bytes, flow: Flow) -> bool:
        """Before parsing, a UDP request: under overload, answer new work the admission
        refuses with 503 Retry-After built from its raw lines (True: answered). What the
        raw bytes cannot tell (``sip.peek``), a possible retransmission of a request in
        progress, and work admitted are parsed and handled as usual."""
        adm = self.admission
        if not adm.overloaded and not (adm.max_in_flight and self.in_flight >= adm.max_in_flight):
            return False
        branch = new_work_branch(data)
        if branch is None or self.layer.serves_branch(branch) or branch in self.routing.recent:
            return False
        now = self.clock()
        dropped = bool(self.limiter.rate) and self._over_rate(flow.remote[0], now)
        if not dropped and not adm.shed(True, self.in_flight, now):
            self._admitted_raw = data  # counted and handled once parsed
            return False
        self.stats.requests_in += 1
        self.traffic.request(data[: data.find(b" ")], flow.transport.value, flow.family)
        if dropped:
            return True
        self.stats.overloaded += 1
        reply = reject_bytes(data, 503, "Service Unavailable", RETRY_AFTER)
        if reply is not None:
            self.sender.send(reply, flow.transport, flow.remote[0], flow.remote[1], flow=flow)
        return True

    def _throttled(self, req: Request, source: IPAddress, now: float) -> bool:
        """Whether to drop ``req``: a new dialog or registration from a source over the
        request rate. Trusted networks and the upstream core are never limited."""
        if req.to.tag is not None or req.method in (b"ACK", b"CANCEL"):
            return False
        return self._over_rate(source, now)

    def _over_rate(self, source: IPAddress, now: float) -> bool:
        """A new request from ``source`` over the request rate: count and say drop."""
        if self.is_trusted_peer(source):
            return False
        verdict = self.limiter.admit(source, now)
        if verdict is ratelimit.Admission.ADMITTED:
            return False
        self.stats.rate_limited += 1
        family = family_of(source)
        self.traffic.rate_limited[family] += 1
        if verdict is ratelimit.Admission.THROTTLE_STARTED:
            self.stats.throttled_sources += 1
            self.traffic.throttled[family] += 1
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

    def is_trusted_peer(self, source: IPAddress) -> bool:
        """``source`` is in the trusted networks or is the upstream core: never limited,
        and with SIP workers its requests are spread over the workers by Call-ID."""
        return self.auth.is_trusted(source) or self._is_core(source)

    def _is_core(self, source: IPAddress) -> bool:
        """``source`` is the upstream core's address (an IP-literal ``sip.upstream``; a
        core named by DNS must be listed in ``sip.trusted_networks``, as upstream mode
        needs anyway)."""
        upstream = self.settings.upstream
        core = upstream.host if upstream is not None else None
        return core is not None and not isinstance(core, str) and unmap(core) == unmap(source)

    def _dispatch(self, events: list[Event]) -> None:
        """The transaction layer's events: new requests and ACKs for 2xx are routed, the
        rest is the forwarder's."""
        for ev in events:
            if isinstance(ev, NewRequest):
                self._new_request(ev.txn)
            elif isinstance(ev, AckReceived):
                self.spawn(self.routing.ack(ev.request, flow_of(ev.dest)))
            else:
                self.forwarder.handle(ev)
        self._rearm()

    def _new_request(self, server: ServerTransaction) -> None:
        if server.request.method == b"CANCEL":
            self.forwarder.cancel(server)
            return
        if server.request.method == b"INVITE":
            self.forwarder.trying(server)
        elif server.request.to.tag is not None and self._at_once(server):
            return
        self.spawn(self.routing.route(server))

    def _at_once(self, server: ServerTransaction) -> bool:
        """An in-dialog request routed at once (``atonce.forward_in_dialog``); False:
        the routing step's. A failure after it was taken is answered with 500, as the
        routing step answers its own."""
        try:
            taken = forward_in_dialog(self.routing, server)
        except Exception:
            self.log.exception("proxy: in-dialog fast path failed on %r", server)
            if server not in self.forwarder._pending:
                return False
            if not server.terminated:
                self.forwarder.reply(server, 500, "Server Internal Error")
            return True
        self.stats.in_dialog_at_once += taken
        return taken

    def transport_failed(self, handle: object, reason: str) -> None:
        """The transport could not send for ``handle`` (RFC 3261 §17.1.4, §16.7 step 5):
        its transaction ends at once, a branch tries its next address or gets 503."""
        if isinstance(handle, ClientTransaction | ServerTransaction):
            self._dispatch(self.layer.transport_error(handle, self.clock(), reason))

    def reconfigure(self, settings: ProxySettings) -> None:
        """Reloaded configuration (SIGHUP): the upstream core and the registrar policy;
        transactions, dialogs and registrations stay."""
        self.settings = settings
        self.routing.router.upstream = settings.upstream
        self.routing.policy = settings.registrar

    # -- calls the gateway ends -----------------------------------------------------------

    def media_timeout(self, call_id: bytes) -> None:
        """The relay saw no media: BYE both parties of the dialog (as rtpengine+Kamailio)."""
        self.forwarder.originate(self.calls.media_timeout(call_id))

    # -- the one deadline -----------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest of the transaction layer's, the races' and Timer C's deadlines."""
        best = self.layer.get_timer()
        for when in (self.racing.get_timer(), self.calls.get_timer()):
            if when is not None and (best is None or when < best):
                best = when
        return best

    def handle_timer(self, now: float) -> None:
        """A deadline passed: fire every timer that is due at ``now``."""
        self._dispatch(self.layer.handle_timer(now))
        for launch in self.racing.handle_timer(now):
            self.forwarder.launch(launch)
        for leg in self.calls.handle_timer(now):
            self.forwarder.timer_c_fired(leg)
        self._rearm()

    def _rearm(self) -> None:
        self._wake()
