# Rules (SIP workers, see ``worker_link`` for the channel): which worker a message received
# by one worker belongs to.
# - A response: the worker whose private port its top Via names (a UA honouring our
#   ``rport`` answers on the shared port, where the kernel picks any worker), else, on a
#   stream, the worker a request with that Via branch was written for (``SentFor``).
# - A request: the worker whose private port its top Route names, or the next one's (a
#   worker record-routes twice: the caller-facing entry names the shared port, where the
#   caller's pinhole is, the next one the worker's own port); else the worker whose nonce
#   its credentials answer (``sip.digest.nonce_origin``: nonce counts live in one table
#   per nonce, so a replay is refused whichever worker it reaches); else, on a shared UDP
#   port from a source ``spread`` says yes to (the trusted networks and the upstream core:
#   a trunk, a core proxy, an SBC, few sources carrying most of the calls, which the
#   kernel's 4-tuple hash would give to one worker), CRC-32 of its Call-ID modulo the
#   workers (retransmissions, CANCEL, ACK and in-dialog requests carry the same Call-ID),
#   or for a REGISTER CRC-32 of its AOR (``sip.peek.register_aor``), the worker that keeps
#   that AOR's contacts alive (``gateway.keepalive.service.owner_of``). With
#   ``sip.spread = "busy"`` (``spill`` set) a Call-ID is spread only while this worker is
#   busier than another (a crossing costs a channel send, a wake-up and a read: ~25 % of
#   a call's CPU); otherwise it stays here. Where each new Call-ID went is remembered
#   (``PLACED``, oldest forgotten first), so its retransmissions, CANCEL and hop-by-hop
#   ACK follow it whatever the load is by then: a source's datagrams all reach the worker
#   the kernel picked for it, the one that decided. Otherwise: the worker that received
#   it. Untrusted sources are never spread: each stays on the worker
#   the kernel picked, so per-source limits (``sip.request_rate``, the 401 and lock-out
#   counters) see all of its requests.
# - ``raw_owner`` applies the Route rule and the spread rule to a UDP datagram before
#   parsing when the raw bytes alone decide them: unfolded Route lines whose entries all
#   parse (then the first two decide, as on the parsed message; an unparseable Route set
#   names no worker there either), no credentials, one unfolded Call-ID line, for a
#   REGISTER one unfolded To line. Anything else is decided on the parsed message, with
#   the same result. So an in-dialog request from a trunk (the caller-facing entry names
#   the shared port, the next one the worker's) is handed over unparsed, and a request
#   this worker keeps after ``raw_owner`` said None is this worker's by both rules (the
#   raw in-dialog path, ``gateway.proxy.indialog``, relies on that).
"""Which SIP worker a received message belongs to."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from rtc64.errors import RemoteProtocolError
from rtc64.io.worker_conns import SentFor
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.net.shard import ROUTE_WORKER_PARAM, shard_of
from rtc64.sip import headers as sh
from rtc64.sip.digest import nonce_origin
from rtc64.sip.headers import split_list
from rtc64.sip.message import Message, Request
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.peek import register_aor
from rtc64.sip.uri import SipUri

_NONCE = re.compile(rb'(?:^|[\s,])nonce[ \t]*=[ \t]*"?([A-Za-z0-9_-]{43})(?:"|[\s,]|$)', re.I)
# One Call-ID (or To) line, not folded; no Route or credentials header before the body.
_RAW_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)\r?\n(?![ \t])", re.I)
_RAW_TO = re.compile(rb"\n(?:to|t)[ \t]*:[ \t]*([^\r\n]*)\r?\n(?![ \t])", re.I)
_RAW_CREDENTIALS = re.compile(rb"\n(?:authorization|proxy-authorization)[ \t]*:", re.I)
_RAW_ROUTE = re.compile(rb"\nroute[ \t]*:([^\r\n]*)", re.I)
_UNDECIDED = -1
PLACED = 131_072
"""New Call-IDs whose worker is remembered (``sip.spread = "busy"``): minutes of new calls
at the rates one worker takes before it spreads (the longest a CANCEL may follow its
INVITE is Timer C, 3 minutes), ~20 MB."""

PrivatePorts = Mapping[tuple[Transport, int], int]
"""(transport, port) of every worker's private ports -> that worker."""


def call_id_owner(call_id: bytes, count: int) -> int:
    """The worker a spread request with this Call-ID value belongs to."""
    return shard_of(call_id.strip(), count)


def aor_owner(to: bytes | None, count: int) -> int | None:
    """The worker a spread REGISTER with this To value belongs to: its AOR's keepalive
    owner (``gateway.keepalive.service.owner_of``); None without a usable AOR."""
    aor = None if to is None else register_aor(to)
    return None if aor is None else shard_of(aor, count)


class Owners:
    """The rules above for worker ``index`` of ``count``."""

    __slots__ = ("_placed", "count", "index", "private", "sent_for", "spill", "spread")

    def __init__(self, index: int, count: int, private: PrivatePorts, sent_for: SentFor) -> None:
        self.index = index
        self.count = count
        self.private = dict(private)
        self.sent_for = sent_for
        self.spread: Callable[[IPAddress], bool] | None = None
        """Sources whose requests are spread over the workers (None: none)."""
        self.spill: Callable[[], bool] | None = None
        """Whether this worker should hand new Call-IDs over now (``sip.spread = "busy"``);
        None: always, by Call-ID (``"always"``)."""
        self._placed: OrderedDict[bytes, int] = OrderedDict()

    def raw_owner(self, data: bytes, flow: Flow) -> int | None:
        """Another worker a UDP request datagram belongs to, decided on its raw bytes,
        or None (this worker's, or to be decided once parsed)."""
        end = data.find(b"\r\n\r\n")
        head = data if end < 0 else data[: end + 2]
        if self.private and _RAW_ROUTE.search(head) is not None:
            owner = self._raw_route_owner(head, flow.transport)
            if owner is not None:
                return None if owner in (self.index, _UNDECIDED) else owner
        spread = self.spread
        if spread is None or (flow.transport, flow.local[1]) in self.private:
            return None
        if not spread(flow.remote[0]):
            return None  # an untrusted source: stays here
        found = _RAW_CALL_ID.search(head)
        if found is None or _RAW_CREDENTIALS.search(head) is not None:
            return None  # parsed first: the nonce rule, or a 400
        register = data.startswith(b"REGISTER ")
        to = _RAW_TO.search(head) if register else None
        if register and to is None:
            return None  # a folded or missing To: the parsed rules decide
        owner = aor_owner(to.group(1), self.count) if to is not None else None
        if owner is None:
            owner = self._place(found.group(1))
        return None if owner == self.index else owner

    def _place(self, call_id: bytes) -> int:
        """The worker a spread request with this Call-ID value belongs to: its Call-ID's
        (``call_id_owner``), or, with ``spill``, where its first request was placed:
        there while this worker was not busier than another, else its Call-ID's."""
        if self.spill is None:
            return call_id_owner(call_id, self.count)
        key = call_id.strip()
        placed = self._placed.get(key)
        if placed is None:
            placed = shard_of(key, self.count) if self.spill() else self.index
            self._placed[key] = placed
            if len(self._placed) > PLACED:
                self._placed.popitem(last=False)
        return placed

    def _raw_route_owner(self, head: bytes, transport: Transport) -> int | None:
        """The Route rule on raw Route lines: a worker, None when no worker is named (or
        the Route set does not parse, as ``route_owner`` says), ``_UNDECIDED`` when a
        Route line is folded (the parsed message decides)."""
        entries: list[NameAddr] = []
        for found in _RAW_ROUTE.finditer(head):
            nl = head.find(b"\n", found.end())
            if head[nl + 1 : nl + 2] in (b" ", b"\t"):
                return _UNDECIDED
            try:
                entries += [
                    parse_name_addr(v, "Route", angle=True)
                    for v in split_list(found.group(1).strip(b" \t"), "Route")
                ]
            except RemoteProtocolError:
                return None
        return self._routes_owner(entries, transport)

    def of(self, msg: Message, flow: Flow) -> int | None:
        """The worker a parsed message belongs to, or None (whoever received it)."""
        if isinstance(msg, Request):
            owner = self.route_owner(msg, flow.transport)
            if owner is None:
                owner = self.nonce_owner(msg)
            return self.spread_owner(msg, flow) if owner is None else owner
        top = msg.vias[0]
        try:
            sent = Transport(top.transport.decode().lower())
        except ValueError:
            return None
        owner = None if top.port is None else self.private.get((sent, top.port))
        if owner is None and flow.transport.reliable and self.sent_for:
            branch = top.branch
            if branch is not None:
                owner = self.sent_for.get(branch, time.monotonic())
        return owner

    def route_owner(self, msg: Request, transport: Transport) -> int | None:
        """The worker whose private port the top Route names (as its port, or as the
        ``ROUTE_WORKER_PARAM`` of an entry naming a shared port), or the next one's."""
        if msg.get(b"route") is None:
            return None
        try:
            found = sh.routes(msg)
        except RemoteProtocolError:
            return None
        return self._routes_owner(found, transport)

    def _routes_owner(self, found: Sequence[NameAddr], transport: Transport) -> int | None:
        """The worker the first two of the Route entries ``found`` name, or None."""
        for route in found[:2]:
            uri = route.uri
            if not isinstance(uri, SipUri):
                continue
            port = uri.port
            named = uri.param(ROUTE_WORKER_PARAM)  # a shared port named for a worker
            if named is not None and named.isdigit() and len(named) <= 5:
                port = int(named)
            if port is None:
                continue
            param = uri.param(b"transport")
            try:
                transport_named = Transport(param.decode().lower()) if param else transport
            except ValueError:
                continue
            owner = self.private.get((transport_named, port))
            if owner is not None:
                return owner
        return None

    def spread_owner(self, msg: Request, flow: Flow) -> int | None:
        """The worker a request from a spread source on a shared UDP port belongs to."""
        if (
            self.spread is None
            or flow.transport is not Transport.UDP
            or (flow.transport, flow.local[1]) in self.private
            or not self.spread(flow.remote[0])
        ):
            return None
        call_id = msg.get(b"call-id")
        if call_id is None:
            return None
        owner = aor_owner(msg.get(b"to"), self.count) if msg.method == b"REGISTER" else None
        return self._place(call_id) if owner is None else owner

    def nonce_owner(self, msg: Request) -> int | None:
        """The worker whose nonce the request's credentials answer, or None."""
        for name in (b"authorization", b"proxy-authorization"):
            value = msg.get(name)
            if value is None:
                continue
            found = _NONCE.search(value)
            if found is None:
                continue
            origin = nonce_origin(found.group(1).decode("ascii"))
            if origin is not None and origin < self.count:
                return origin
        return None
