# Registrar binding logic: RFC 3261 §10.3 steps 6-8, pure (no I/O, the time is passed in).
#
# Rules:
# - The caller has done steps 1-5 (domain, Require, authentication, authorization, AOR from
#   To) and hands over the AOR's current bindings and the REGISTER's parsed facts; the result
#   is the AOR's complete new binding set plus the response to send. A request that fails
#   changes nothing (the set is returned as it was).
# - Step 6, ``Contact: *``: only alone and with ``Expires: 0``, else 400; removes every
#   binding, unless one with the same Call-ID has a CSeq >= the request's (then 500).
# - Step 7, per contact: expiry = the contact's ``expires`` param, else the Expires header,
#   else the policy default; over max is cut to max; ``0 < e < min`` (and below one hour,
#   the "if and only if" of §10.3) answers 423 with Min-Expires; 0 removes. A binding that
#   exists with the same Call-ID and a CSeq >= the request's aborts the request with 500.
#   Bindings created earlier in the same request are not CSeq-checked again.
# - Retransmissions: REGISTERs are answered without a server transaction (as Kamailio's
#   registrar over ``sl``), so a client's retransmission reaches this logic after its
#   original was applied. A contact whose binding has the request's Call-ID and the same
#   CSeq, registered less than ``RETRANSMIT_WINDOW`` ago, with everything the request
#   would store the same (URI, q, instance, reg-id, Path, source, transport, listener,
#   User-Agent, granted seconds), is the original's binding: it is kept as it is
#   (``replayed``) and the 200 lists it again, as the transaction would have resent its
#   200. Anything else with that CSeq is not a retransmission (a different request
#   reusing it, or one older than a client retransmits) and fails as step 7 says (500).
# - Matching: RFC 5626 §6 - a contact with ``+sip.instance`` and ``reg-id`` is the binding
#   of that (instance, reg-id) flow and replaces it whatever its URI; at most one such
#   contact per REGISTER (else 400); ``reg-id`` without ``+sip.instance`` is ignored. Other
#   contacts match by URI (``same_contact``, RFC 3261 §19.1.4) among non-flow bindings.
#   A contact with ``+sip.instance`` but no ``reg-id`` (RFC 5627 GRUU clients) replaces the
#   binding of that instance without reg-id whatever its URI, so a phone whose IPv6 privacy
#   address changed is followed instead of being registered twice.
# - RFC 5626 §6 first hop: a flow contact (instance + reg-id) in a REGISTER that did not come
#   straight from the UA (more than one Via) and whose first Path entry lacks ``ob`` (or
#   that has no Path) answers 439; nothing else ever does (clients without outbound support
#   send no reg-id and register as in RFC 3261).
# - ``max_contacts`` per AOR: a request that would leave the AOR with more live bindings
#   than that (and more than it had) answers 503 with Retry-After = seconds until the
#   earliest binding expires (as Kamailio's registrar answers 503 "Too many registered
#   contacts"): a phone that leaks contacts (new address, no instance) gets in again once
#   its stale ones expire, and one account cannot fill the store. A REGISTER that alone
#   adds more than that answers 403 (waiting would not help). ``+sip.instance`` is at
#   most 256 bytes (400).
# - Step 8: the 200 lists every live binding with its remaining seconds. Bindings are kept
#   ordered by q, highest first (an absent q counts as 1.0), stable for equal q.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.location.bindings import MAX_CSEQ, MAX_REG_ID, Binding, IPAddress
from rtc64.net.address import format_host, parse_hostport

ONE_HOUR = 3600  # RFC 3261 §10.3 step 7: 423 only for intervals below one hour
RETRANSMIT_WINDOW = 32.0
"""Seconds a client retransmits a REGISTER: 64*T1, its Timer F (RFC 3261 §17.1.2.2)."""


@dataclass(frozen=True, slots=True)
class ContactSpec:
    """One Contact of a REGISTER, as the sip layer parsed it."""

    uri: bytes
    expires: int | None = None
    q: float | None = None
    instance: bytes | None = None
    reg_id: int | None = None


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """The facts of a REGISTER the registrar needs (after RFC 3261 §10.3 steps 1-5)."""

    aor: str
    contacts: tuple[ContactSpec, ...]
    wildcard: bool
    expires: int | None
    call_id: bytes
    cseq: int
    source_ip: IPAddress | None
    source_port: int | None
    transport: str
    listener: str
    path: tuple[bytes, ...] = ()
    user_agent: bytes = b""
    vias: int = 1  # Via values in the REGISTER: 1 means the UA is our direct peer
    path_ob: bool = False  # the first Path entry carries ``ob`` (RFC 5626 §5.1)


DEFAULT_MAX_CONTACTS = 10
MAX_INSTANCE = 256  # bytes of +sip.instance (a quoted URN: a UUID URN takes 47)
DEFAULT_FLOW_TIMER = 120  # RFC 5626 §4.4: connection keep-alives every 95-120 s


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """Expiry limits in seconds and the contacts allowed per AOR (``registrar.*``)."""

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = DEFAULT_MAX_CONTACTS
    flow_timer: int = DEFAULT_FLOW_TIMER  # RFC 5626 Flow-Timer seconds (0: not sent)

    def __post_init__(self) -> None:
        if not 0 <= self.min_expires <= self.max_expires:
            raise ValueError("registrar policy needs 0 <= min_expires <= max_expires")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("registrar policy needs min <= default_expires <= max")
        if self.max_contacts < 1:
            raise ValueError("registrar policy needs max_contacts >= 1")
        if self.flow_timer < 0:
            raise ValueError("registrar policy needs flow_timer >= 0")


@dataclass(frozen=True, slots=True)
class ReplyContact:
    """A binding to list in the 200 with its remaining ``expires`` seconds."""

    binding: Binding
    expires: int


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """What to store and what to answer.

    ``bindings`` is the AOR's complete set to store (``changed`` says whether it differs
    from the live set passed in); ``contacts`` is for a 200; ``min_expires`` is the
    Min-Expires header value of a 423; ``retry_after`` the Retry-After of a 503 (too many
    contacts); ``detail`` says why a request failed (for logs); ``outbound`` whether a
    flow contact was registered through a first hop that supports outbound.
    """

    status: int
    reason: str
    bindings: tuple[Binding, ...]
    contacts: tuple[ReplyContact, ...] = ()
    min_expires: int | None = None
    changed: bool = False
    detail: str = ""
    retry_after: int | None = None
    outbound: bool = False
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def retransmission(self) -> bool:
        """The request repeats the one that stored these bindings: answer, write nothing."""
        return self.replayed and self.ok and not self.changed


def same_contact(a: bytes, b: bytes) -> bool:
    """Whether two Contact URIs name the same binding (simplified RFC 3261 §19.1.4).

    Scheme and host compare case-insensitively (IP hosts as binary values), user info and
    port exactly, URI parameters as a case-insensitive set; ``?headers`` are ignored.
    TODO: call the sip layer's full URI comparison once it exists.
    """
    return a == b or _contact_key(a) == _contact_key(b)


def _contact_key(uri: bytes) -> tuple[bytes, bytes, object, frozenset[bytes]]:
    scheme, _, rest = uri.strip().partition(b":")
    userinfo, at, hostpart = rest.partition(b"@")
    if not at:
        userinfo, hostpart = b"", rest
    hostport_raw, _, params_raw = hostpart.partition(b";")
    hostport_raw = hostport_raw.partition(b"?")[0]
    params_raw = params_raw.partition(b"?")[0]
    host: object
    try:
        hp = parse_hostport(hostport_raw)
        host = (format_host(hp.host), hp.port)
    except RemoteProtocolError:
        host = hostport_raw.lower()
    params = frozenset(p.strip().lower() for p in params_raw.split(b";") if p.strip())
    return scheme.lower(), userinfo, host, params


def _instance_key(instance: bytes) -> bytes:
    """``+sip.instance`` compared without its quotes and angle brackets, case-insensitively."""
    return instance.strip().strip(b'"').strip().strip(b"<>").lower()


def _flow_key(instance: bytes | None, reg_id: int | None) -> tuple[bytes, int] | None:
    if instance is None or reg_id is None:
        return None
    return _instance_key(instance), reg_id


def instance_key(instance: bytes | None) -> bytes | None:
    """The comparable form of a ``+sip.instance`` value (None when absent)."""
    return None if instance is None else _instance_key(instance)


def is_flow(binding: Binding) -> bool:
    """Whether a binding is an RFC 5626 flow (``+sip.instance`` and ``reg-id``)."""
    return binding.instance is not None and binding.reg_id is not None


def _fail(
    status: int, reason: str, live: Sequence[Binding], detail: str, min_expires: int | None = None
) -> RegisterOutcome:
    return RegisterOutcome(
        status, reason, tuple(live), min_expires=min_expires, changed=False, detail=detail
    )


def _bad(live: Sequence[Binding], detail: str) -> RegisterOutcome:
    return _fail(400, "Bad Request", live, detail)


def _success(
    live: Sequence[Binding],
    new: list[Binding],
    now: float,
    *,
    outbound: bool = False,
    replayed: bool = False,
) -> RegisterOutcome:
    ordered = tuple(sorted(new, key=lambda b: -b.effective_q))
    contacts = tuple(ReplyContact(b, b.remaining(now)) for b in ordered)
    changed = ordered != tuple(live)
    return RegisterOutcome(
        200, "OK", ordered, contacts, changed=changed, outbound=outbound, replayed=replayed
    )


def _too_many(live: Sequence[Binding], policy: RegistrarPolicy, now: float) -> RegisterOutcome:
    wait = min((b.remaining(now) for b in live), default=policy.min_expires)
    return RegisterOutcome(
        503,
        "Service Unavailable: too many registered contacts",
        tuple(live),
        detail=f"more than {policy.max_contacts} contacts",
        retry_after=max(1, wait),
    )


def process_register(
    current: Sequence[Binding], request: RegisterRequest, policy: RegistrarPolicy, now: float
) -> RegisterOutcome:
    """Apply a REGISTER to the AOR's ``current`` bindings at time ``now`` (RFC 3261 §10.3)."""
    live = [b for b in current if b.is_live(now)]
    if not 0 <= request.cseq <= MAX_CSEQ:
        return _bad(live, f"CSeq {request.cseq} out of range")
    if request.wildcard:
        return _wildcard(live, request, now)
    if not request.contacts:
        return _success(live, live, now)  # a query: list the bindings, change nothing

    # Validate the whole request before touching anything: it succeeds or fails as one.
    granted: list[int] = []
    flows = 0
    for spec in request.contacts:
        if spec.q is not None and not 0.0 <= spec.q <= 1.0:
            return _bad(live, f"q={spec.q} out of range 0..1")
        if spec.reg_id is not None and not 1 <= spec.reg_id <= MAX_REG_ID:
            return _bad(live, f"reg-id={spec.reg_id} out of range")
        if spec.instance is not None and len(spec.instance) > MAX_INSTANCE:
            return _bad(live, f"+sip.instance longer than {MAX_INSTANCE} bytes")
        wanted = _requested_expires(spec, request, policy)
        if wanted < 0:
            return _bad(live, f"negative expires {wanted}")
        if 0 < wanted < policy.min_expires and wanted < ONE_HOUR:
            return _fail(
                423,
                "Interval Too Brief",
                live,
                f"expires {wanted} below {policy.min_expires}",
                min_expires=policy.min_expires,
            )
        if wanted and _flow_key(spec.instance, spec.reg_id) is not None:
            flows += 1
        granted.append(min(wanted, policy.max_expires))
    if flows > 1:
        return _bad(live, "more than one Contact with +sip.instance and reg-id")
    outbound = flows == 1
    if outbound and request.vias > 1 and not request.path_ob:
        # RFC 5626 §6: the first hop is not our peer and did not say it supports outbound.
        return _fail(439, "First Hop Lacks Outbound Support", live, "no 'ob' in the first Path")

    work = [(b, False) for b in live]  # (binding, created by this request)
    replayed = False
    for spec, expires in zip(request.contacts, granted, strict=True):
        index = _find(work, spec)
        if index is not None:
            old, fresh = work[index]
            if not fresh and old.call_id == request.call_id and request.cseq <= old.cseq:
                if request.cseq == old.cseq and _repeats(old, spec, request, expires, now):
                    replayed = True
                    work[index] = (old, True)  # the original's binding, kept as stored
                    continue
                return _fail(
                    500,
                    "Server Internal Error",
                    live,
                    f"CSeq {request.cseq} not above {old.cseq} for the same Call-ID",
                )
        if expires == 0:
            if index is not None:
                del work[index]
            continue
        binding = _make_binding(spec, request, now + expires, now)
        if index is None:
            work.append((binding, True))
        else:
            work[index] = (binding, True)
    new = [b for b, _ in work]
    if len(new) > policy.max_contacts and len(new) > len(live):
        added = sum(1 for b, fresh in work if fresh and b not in live)
        if added > policy.max_contacts:  # this REGISTER alone: waiting will not help
            why = f"Forbidden: more than {policy.max_contacts} contacts in one REGISTER"
            return _fail(403, why, live, "too many contacts in one request")
        return _too_many(live, policy, now)
    return _success(live, new, now, outbound=outbound, replayed=replayed)


def _repeats(
    old: Binding, spec: ContactSpec, request: RegisterRequest, expires: int, now: float
) -> bool:
    """Whether ``old`` is what the retransmitted original of ``request`` stored for
    ``spec`` (see the rules): same Call-ID and CSeq (checked by the caller), recent, and
    everything the request would store the same but the times."""
    at = old.registered_at
    if at is None or not 0 <= now - at < RETRANSMIT_WINDOW or expires == 0:
        return False
    return (
        old.contact == spec.uri
        and old.q == spec.q
        and old.instance == spec.instance
        and old.reg_id == (spec.reg_id if spec.instance is not None else None)
        and old.path == request.path
        and old.received_ip == request.source_ip
        and old.received_port == request.source_port
        and old.transport == request.transport
        and old.listener == request.listener
        and old.user_agent == request.user_agent
        and round(old.expires_at - at) == expires
    )


def _wildcard(live: list[Binding], request: RegisterRequest, now: float) -> RegisterOutcome:
    """RFC 3261 §10.3 step 6: ``Contact: *`` removes every binding of the AOR."""
    if request.contacts:
        return _bad(live, "Contact: * together with other contacts")
    if request.expires != 0:
        return _bad(live, "Contact: * without Expires: 0")
    for old in live:
        if old.call_id == request.call_id and request.cseq <= old.cseq:
            return _fail(
                500,
                "Server Internal Error",
                live,
                f"CSeq {request.cseq} not above {old.cseq} for the same Call-ID",
            )
    return _success(live, [], now)


def _requested_expires(spec: ContactSpec, request: RegisterRequest, policy: RegistrarPolicy) -> int:
    if spec.expires is not None:
        return spec.expires
    if request.expires is not None:
        return request.expires
    return policy.default_expires


def _find(work: list[tuple[Binding, bool]], spec: ContactSpec) -> int | None:
    flow = _flow_key(spec.instance, spec.reg_id)
    instance = instance_key(spec.instance)
    for index, (old, _) in enumerate(work):
        old_flow = _flow_key(old.instance, old.reg_id)
        if flow is not None or old_flow is not None:
            if flow is not None and old_flow == flow:
                return index
            continue
        old_instance = instance_key(old.instance)
        if instance is not None and old_instance == instance:
            return index  # the same device, maybe from a new (privacy) address
        if (instance is None or old_instance is None) and same_contact(old.contact, spec.uri):
            return index
    return None


def _make_binding(
    spec: ContactSpec, request: RegisterRequest, expires_at: float, now: float
) -> Binding:
    return Binding(
        aor=request.aor,
        contact=spec.uri,
        expires_at=expires_at,
        call_id=request.call_id,
        cseq=request.cseq,
        transport=request.transport,
        listener=request.listener,
        q=spec.q,
        received_ip=request.source_ip,
        received_port=request.source_port,
        path=request.path,
        instance=spec.instance,
        # RFC 5626 §6: reg-id without +sip.instance is ignored.
        reg_id=spec.reg_id if spec.instance is not None else None,
        user_agent=request.user_agent,
        registered_at=now,
    )
