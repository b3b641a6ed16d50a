"""The bytes the proxy sends: forwarded requests spliced, Record-Route and Path values,
and requests of our own.

Rules (RFC 3261 §16.6 steps 2-8, §16.11, §22.3; RFC 3327 Path; RFC 5658 double
Record-Route; ``sip.edit`` for the splicing itself):

- A forwarded request keeps its received bytes except what §16.6 changes: the body (SDP
  rewritten by the media bridge), the Request-URI, the Route set, Proxy-Authorization for
  our realm (consumed here, §22.3), Max-Forwards minus one, Record-Route, Path (with
  ``Supported: path`` when the phone did not say it), and our Via on top of the caller's
  stamped one (``received``/``rport``).
- Record-Route names the listener facing the callee; when the flow changes family,
  transport or listener a second entry names the one facing the caller (both ``r2=on``).
  Each entry carries the call's token (``hops.token_params``: Call-ID, the caller's From
  tag, the issue time, and the flow token of a party reached over its own connection).
- Path (upstream mode) names us and records the phone's flow in ``received``; ``ob`` is
  added when the phone registers an RFC 5626 flow straight through us (§5.1).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.branches import OwnRequest
from rtc64.gateway.proxy.hops import Hop
from rtc64.net.address import IPAddress, format_hostport
from rtc64.net.endpoint import Flow, Transport
from rtc64.net.shard import ROUTE_WORKER_PARAM
from rtc64.sip import headers as sh
from rtc64.sip.edit import Edit
from rtc64.sip.message import Request, build_request
from rtc64.sip.uri import Uri

PathMaker = Callable[[Listener, IPAddress], bytes]


def forwarded(
    req: Request,
    *,
    via: bytes,
    stamped: bytes | None,
    body: bytes | None = None,
    new_uri: Uri | None = None,
    routes: Sequence[bytes] | None = None,
    drop: Sequence[int] = (),
    record_route: bytes | None = None,
    path: bytes | None = None,
) -> bytes:
    """``req`` as forwarded with our Via ``via`` on top (§16.6)."""
    edit = Edit(req)
    if body is not None:
        edit.set_body(body)
    if new_uri is not None:
        edit.set_request_uri(new_uri)
    if routes is not None:
        edit.remove_headers(b"route")
        for value in routes:
            edit.add_header(b"Route", value)
    for i in drop:
        edit.remove_line(i)
    edit.decrement_max_forwards()
    if record_route is not None:
        edit.add_record_route(record_route)
    if path is not None:
        edit.add_header(b"Path", path)
        if b"path" not in (t.lower() for t in sh.tokens(req, b"supported")):
            edit.add_header(b"Supported", b"path")
    if stamped is not None:
        edit.remove_top_via()
        edit.prepend_via(via)
        edit.prepend_via(stamped)
    else:
        edit.prepend_via(via)
    return edit.to_bytes()


def our_via(identity: Identity, out: Listener, hop: Hop, req: Request, below: bytes) -> bytes:
    """Our Via toward ``hop``; the loop hash covers ``below``, the Via under ours as we
    write it (§16.3 step 4)."""
    return via_toward(identity, out, hop, hops.new_branch(req, below))


def via_toward(identity: Identity, out: Listener, hop: Hop, branch: bytes) -> bytes:
    """Our Via toward ``hop`` sent from ``out`` with ``branch``."""
    alias = identity.tls_alias and hop.transport is Transport.TLS
    hostport = identity.hostport_of(identity.alias_listener(out) if alias else out, hop.ip)
    return hops.via_value(hop.transport, hostport, branch, alias=alias)


def record_route(
    identity: Identity,
    secret: bytes,
    *,
    in_l: Listener,
    flow: Flow,
    out_l: Listener,
    hop: Hop,
    req: Request,
    target: Uri,
    issued: int,
    callee_flow: bool = False,
) -> bytes:
    """The Record-Route value for ``req`` from ``flow`` going to ``hop`` (whose remote
    target is ``target``), with tokens issued at wall-clock second ``issued``;
    ``callee_flow``: ``hop`` is the callee's own registered flow."""
    named, worker = out_l, b""
    # ``spec.transport``, not the listener's ``transport`` property (a Python call).
    out_t, in_t = out_l.spec.transport, in_l.spec.transport
    if identity.tls_alias and out_t is Transport.TLS:
        # The peer got our shared port as the alias of its connection (``our_via``): the
        # entry names it too, so its in-dialog requests reuse that connection, and the
        # worker's own port as a parameter, so they are handed to this worker.
        named = identity.alias_listener(out_l)
        if named is not out_l:
            worker = b";%s=%d" % (ROUTE_WORKER_PARAM, out_l.port)
    out_hp = identity.hostport_of(named, hop.ip)
    in_hp = identity.hostport_of(in_l, flow.remote[0])
    tag = req.from_.tag or b""
    # The entry facing a party on a connection names that connection (RFC 5626 flow
    # token): in-dialog requests toward it must go back over it (RFC 7118 §5).
    contact = sh.contacts(req)
    caller_target = contact[0].uri if contact and not isinstance(contact, sh.Star) else None
    # A UDP token only where the party is the UA itself: the caller when its Via is the
    # only one, the callee when it is reached on its registered flow. A proxy before or
    # after us that did not record-route must not receive the dialog's requests.
    caller_flow = hops.flow_token(
        flow.transport, flow.remote[0], flow.remote[1], caller_target, direct=len(req.vias) == 1
    )
    callee_token = hops.flow_token(hop.transport, hop.ip, hop.port, target, direct=callee_flow)
    in_token = hops.token_params(secret, req.call_id, tag, issued, caller_flow)
    out_token = (
        in_token  # the same inputs (no flow token on either side, or the same): one MAC
        if callee_token == caller_flow
        else hops.token_params(secret, req.call_id, tag, issued, callee_token)
    )
    if in_l is named and out_hp == in_hp and in_token == out_token:
        return hops.route_uri(out_t, out_hp, r2=False, extra=worker + in_token)
    # Two entries (RFC 5658): the top one faces the callee, the next the caller.
    return (
        hops.route_uri(out_t, out_hp, r2=True, extra=worker + out_token)
        + b", "
        + hops.route_uri(in_t, in_hp, r2=True, extra=in_token)
    )


def path_for(identity: Identity, flow: Flow, *, ob: bool = False) -> PathMaker:
    """A Path value naming us toward the core, carrying the phone's flow (RFC 3327);
    ``ob`` (RFC 5626 §5.1) when we are the first hop of an outbound registration."""
    hostport = format_hostport(flow.remote[0], flow.remote[1])
    received = f"sip:{hostport}%3Btransport%3D{flow.transport.value}"
    extra = b";received=" + received.encode() + (b";ob" if ob else b"")

    def make(listener: Listener, toward: IPAddress) -> bytes:
        hostport = identity.hostport_of(listener, toward)
        return hops.route_uri(listener.transport, hostport, r2=False, extra=extra)

    return make


def outbound_register(req: Request) -> bool:
    """Whether we are the first hop of an RFC 5626 registration: a REGISTER straight
    from the UA (one Via) with a Contact carrying ``+sip.instance`` and ``reg-id``."""
    if req.method != b"REGISTER" or len(req.vias) != 1:
        return False
    found = sh.contacts(req)
    if isinstance(found, sh.Star):
        return False
    return any(c.param(b"reg-id") and c.param(b"+sip.instance") for c in found)


def own_credentials(req: Request, realm: str) -> list[int]:
    """Header lines of Proxy-Authorization for our own realm (§22.3: they stop here)."""
    lines = req.key_index().get(b"proxy-authorization", [])
    needle = b'realm="%s"' % realm.encode("utf-8", "replace")
    return [i for i in lines if needle in req.headers[i].value]


def own_request(own: OwnRequest, identity: Identity, out: Listener, hop: Hop) -> Request:
    """A request of ours (ACK or BYE in a dialog) with our Via toward ``hop``."""
    branch = hops.BRANCH_PREFIX + b"own-" + secrets.token_hex(8).encode()
    via = hops.via_value(hop.transport, identity.hostport_of(out, hop.ip), branch)
    headers = [(b"Via", via), *((b"Route", r) for r in own.routes), *own.lines]
    return build_request(own.method, own.target, headers)
