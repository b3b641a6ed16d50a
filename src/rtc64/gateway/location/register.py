"""REGISTER handling: from a parsed request to stored bindings and the response.

Rules (RFC 3261 §10.3, RFC 3327 Path, RFC 5626 §6):

- The AOR is the To URI (canonical form, every alias of the gateway keyed as its one
  local domain: ``Identity.aor_keys``); the caller has checked the domain is local and
  authenticated the request (steps 1-5). Step 6: an authenticated user registers
  only its own AORs (``aor_refusal``): ``sip:USER@<served domain>`` with its own user
  name, or one listed for it in the user store; anything else is 403. Trusted sources
  (no user) are not checked: they may register any AOR of a served domain. Bindings an
  older version stored under the key as written move to the canonical key on the phone's
  next REGISTER; until then lookups fall back to them (``find_bindings``).
- ``Require`` with an unknown option answers 420 with Unsupported (step 2); ``path`` and
  ``outbound`` are supported.
- The source address, port, transport and listener are stored with each binding so the
  proxy can reach phones behind NAT and stateful IPv6 firewalls on the flow they opened.
- A 200 lists every binding with its remaining ``expires`` (and its ``+sip.instance``
  and ``reg-id``), echoes Path when the phone supports it (RFC 3327 §5.3), and adds
  Date; a 423 carries Min-Expires, a 503 for too many contacts Retry-After.
- RFC 5626 §6: a flow registered through an outbound-capable first hop (the UA itself, or
  a Path whose first entry has ``ob``) gets ``Require: outbound`` when the UA listed
  ``outbound`` in Supported, ``Supported`` (our option tags) and ``Flow-Timer`` (the
  seconds we wait for keep-alives: the policy's value on connections, at most 29 s on
  UDP, §4.4). 439 only per ``registrar.process_register``.
- Several workers or gateways share the store: the read-decide-write of one REGISTER is a
  compare-and-set (``SwappingStore.swap``), read again and retried when another writer
  changed the AOR in between (``SWAP_ATTEMPTS``, then 500 with Retry-After).
- RFC 5627: a contact with ``+sip.instance`` in a REGISTER with ``Supported: gruu``
  gets ``pub-gruu`` (the AOR with ``gr=<instance URN>``) and ``temp-gruu`` (``gruu.py``)
  in the 200; a REGISTER whose To is a GRUU is 403.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast

from rtc64.gateway.location import gruu
from rtc64.gateway.location.bindings import Binding, canonical_aor
from rtc64.gateway.location.registrar import (
    ContactSpec,
    RegisterOutcome,
    RegisterRequest,
    RegistrarPolicy,
    ReplyContact,
    process_register,
)
from rtc64.gateway.location.store import LocationStore, SwappingStore
from rtc64.net.endpoint import Flow
from rtc64.sip import headers as sh
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.reply import response_bytes
from rtc64.sip.uri import SipUri, format_uri

SUPPORTED = frozenset((b"path", b"outbound", b"gruu"))
SWAP_ATTEMPTS = 8  # compare-and-set rounds of one REGISTER before giving up
UDP_FLOW_TIMER = 29  # RFC 5626 §4.4: UDP keep-alives every 24-29 s at most


def _contact_spec(contact: NameAddr) -> ContactSpec:
    reg_id = contact.param(b"reg-id")
    return ContactSpec(
        uri=format_uri(contact.uri),
        expires=sh.contact_expires(contact),
        q=sh.contact_q(contact),
        instance=contact.param(b"+sip.instance"),
        reg_id=int(reg_id) if reg_id is not None and reg_id.isdigit() else None,
    )


def aor_refusal(
    req: Request, user: str | None, aors: tuple[str, ...], is_local: Callable[[SipUri], bool]
) -> str | None:
    """Why ``user`` may not register the To AOR of ``req`` (§10.3 step 6), or None if it may.

    ``user`` None is a trusted source: not checked. ``aors`` are the extra canonical AORs
    the user store lists for the user; ``is_local`` says whether a URI is in a domain we
    serve.
    """
    if user is None:
        return None
    to = req.to.uri
    if not isinstance(to, SipUri) or not is_local(to):
        return "Forbidden: the To address is not in a domain served here"
    aor = canonical_aor(format_uri(to))
    if aor in aors or aor[4:].rpartition("@")[0] == user:
        return None
    return f"Forbidden: {aor} is not an address of user {user}"


def unsupported(req: Request) -> tuple[bytes, ...]:
    """Option tags in Require that we do not support (RFC 3261 §8.2.2.3)."""
    return tuple(t for t in sh.tokens(req, b"require") if t.lower() not in SUPPORTED)


async def find_bindings(store: LocationStore, keys: tuple[str, str], now: float) -> list[Binding]:
    """Live bindings under the canonical key, else under the key as written (stored by a
    version that did not fold the gateway's aliases into one local domain)."""
    key, written = keys
    found = await store.lookup(key, now)
    if not found and written != key:
        found = await store.lookup(written, now)
    return found


async def _stored_as_written(
    store: LocationStore, keys: tuple[str, str], current: list[Binding], now: float
) -> list[Binding]:
    """Bindings stored under the key as written, re-keyed to the canonical key (the
    caller removes the old ones once the new set is stored)."""
    key, written = keys
    if written == key:
        return []
    old = await store.lookup(written, now)
    have = {b.contact for b in current}
    return [dataclasses.replace(b, aor=key) for b in old if b.contact not in have]


class AorTurns:
    """REGISTERs of one AOR take turns in this process, each from its read of the store
    to its write (as usrloc's per-AOR lock in Kamailio): none reads a set another is
    about to replace, so a flood for one AOR never loses compare-and-set rounds to this
    process's own writes (and never runs out of ``SWAP_ATTEMPTS`` because of them).
    Between processes and gateways the compare-and-set still decides."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        """AORs with a REGISTER in progress."""
        return len(self._waiting)

    def take(self, aor: str) -> asyncio.Future[None] | None:
        """None: the turn is the caller's now; else a future done when it is."""
        waiting = self._waiting.get(aor)
        if waiting is None:
            self._waiting[aor] = deque()
            return None
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        return turn

    def give(self, aor: str) -> None:
        """The caller's turn is over: the next waiter's begins (cancelled ones skipped)."""
        waiting = self._waiting[aor]
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiting[aor]


RECENT_BRANCHES = 32768
"""REGISTER branches ``RecentBranches`` remembers: ~5 s of REGISTERs at 6,000/s, ~3 MB."""


class RecentBranches:
    """The top-Via branches of the REGISTERs this process took lately (bounded: when
    full, the oldest half is forgotten). Under overload a REGISTER whose branch is here
    is a retransmission to absorb (the registrar answers it as it answered the
    original), not new work to refuse with 503: the registrar keeps no server
    transaction that would say so. A forged branch gains nothing: the request is
    handled as any admitted REGISTER."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = RECENT_BRANCHES) -> None:
        if limit < 2:
            raise ValueError("RecentBranches needs a limit of at least 2")
        self._seen: dict[bytes, None] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, branch: object) -> bool:
        return branch in self._seen

    def add(self, branch: bytes) -> None:
        seen = self._seen
        if branch in seen:
            return
        if len(seen) >= self._limit:
            for old in list(itertools.islice(seen, self._limit // 2)):
                del seen[old]
        seen[branch] = None


@dataclass(frozen=True, slots=True)
class RegisterReply:
    """The answer to a REGISTER before it is written: the status, the reason (None: the
    standard phrase) and the lines after the ones copied from the request."""

    status: int
    reason: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self, req: Request, to_tag: bytes | None = None) -> Response:
        """The response model (``to_tag`` None: a fresh tag)."""
        return make_response(req, self.status, self.reason, to_tag=to_tag, headers=self.headers)

    def wire(self, req: Request, to_tag: bytes | None, top_via: bytes | None) -> bytes:
        """The response's bytes, written from the request's lines (``sip.reply``);
        ``top_via`` replaces the first Via value (``hops.stamp_top_via``)."""
        return response_bytes(
            req, self.status, self.reason, to_tag=to_tag, headers=self.headers, top_via=top_via
        )


Authorize = Callable[[], Awaitable[RegisterReply | None]]
"""Steps 3-4 of §10.3 for ``handle_register``: the refusal to send (401, 403), or None."""


async def handle_register(
    req: Request,
    flow: Flow,
    *,
    listener: str,
    store: LocationStore,
    policy: RegistrarPolicy,
    now: float | None = None,
    keys: tuple[str, str] | None = None,
    gruu_secret: bytes | None = None,
    on_change: Callable[[Sequence[Binding], Sequence[Binding]], None] | None = None,
    authorize: Authorize | None = None,
    to_tag: bytes | None = None,
    turns: AorTurns | None = None,
) -> Response:
    """``register_reply`` as a response model; ``to_tag``: the To tag of the response
    (a stateless registrar's: the same for a retransmission, RFC 3261 §8.2.7); None: a
    fresh one."""
    reply = await register_reply(
        req, flow, listener=listener, store=store, policy=policy, now=now, keys=keys,
        gruu_secret=gruu_secret, on_change=on_change, authorize=authorize, turns=turns,
    )  # fmt: skip
    return reply.response(req, to_tag)


async def register_reply(
    req: Request,
    flow: Flow,
    *,
    listener: str,
    store: LocationStore,
    policy: RegistrarPolicy,
    now: float | None = None,
    keys: tuple[str, str] | None = None,
    gruu_secret: bytes | None = None,
    on_change: Callable[[Sequence[Binding], Sequence[Binding]], None] | None = None,
    authorize: Authorize | None = None,
    turns: AorTurns | None = None,
) -> RegisterReply:
    """Apply a REGISTER to the store and build the response to send; ``keys`` are the
    AOR's (canonical, as written) location keys (default: the To URI as written);
    ``gruu_secret`` (the gateway secret) makes temporary GRUUs (none without it);
    ``on_change(before, after)`` hears of each successful update (for the log).

    ``authorize`` (None: the caller has authorized the request) runs after the AOR's
    bindings were read: a retransmission of a REGISTER already applied (``registrar``
    rules) is answered from them without it, as a server transaction would have
    absorbed it before authentication (its nonce count was used once already).
    ``turns``: REGISTERs of one AOR in this process wait for each other, from their
    read to their write.
    """
    wall = time.time() if now is None else now
    early = _early_refusal(req)
    if early is not None:
        refusal = None if authorize is None else await authorize()
        return refusal or early
    if keys is None:
        written = canonical_aor(req.to.uri)
        keys = (written, written)
    aor = keys[0]
    found = sh.contacts(req)
    wildcard = found is sh.STAR
    specs = () if isinstance(found, sh.Star) else tuple(_contact_spec(c) for c in found)
    path_values = sh.paths(req)
    path = tuple(bytes(p) for p in path_values)
    first_path = path_values[0].uri if path_values else None
    request = RegisterRequest(
        aor=aor,
        contacts=specs,
        wildcard=wildcard,
        expires=sh.expires(req),
        call_id=req.call_id,
        cseq=req.cseq.seq,
        source_ip=flow.remote[0],
        source_port=flow.remote[1],
        transport=flow.transport.value,
        listener=listener,
        path=path,
        user_agent=req.get(b"user-agent") or b"",
        vias=len(req.vias),
        path_ob=isinstance(first_path, SipUri) and first_path.has_param(b"ob"),
    )
    if turns is not None:
        turn = turns.take(aor)
        if turn is not None:
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # handed over, then cancelled
                    turns.give(aor)
                raise
    try:
        stored, moved, outcome = await _read(store, keys, request, policy, wall)
        if authorize is not None and not (outcome.retransmission and not moved):
            refusal = await authorize()
            if refusal is not None:
                return refusal
            if not _swaps(store):  # nothing would notice a change while authorizing
                stored, moved, outcome = await _read(store, keys, request, policy, wall)
        for attempt in range(SWAP_ATTEMPTS):
            if attempt:
                stored, moved, outcome = await _read(store, keys, request, policy, wall)
            if not outcome.ok:
                extra: list[tuple[bytes, bytes]] = []
                if outcome.min_expires is not None:
                    extra.append((b"Min-Expires", b"%d" % outcome.min_expires))
                if outcome.retry_after is not None:
                    extra.append((b"Retry-After", b"%d" % outcome.retry_after))
                reason = outcome.reason.encode("utf-8", "replace")
                return RegisterReply(outcome.status, reason, tuple(extra))
            if not (outcome.changed or moved):
                break
            if not _swaps(store):
                await store.replace(aor, outcome.bindings)
                break
            if await cast(SwappingStore, store).swap(aor, stored, outcome.bindings, wall):
                break
        else:  # another worker or gateway kept changing this AOR under us
            return RegisterReply(500, b"Server Internal Error", ((b"Retry-After", b"1"),))
        if moved:
            await store.replace(keys[1], [])
        if on_change is not None and (specs or wildcard) and (outcome.changed or moved):
            on_change([*stored, *moved], outcome.bindings)
        supported = frozenset(t.lower() for t in sh.tokens(req, b"supported"))
        secret = gruu_secret if b"gruu" in supported else None
        lines = [(b"Contact", _reply_contact(rc, secret)) for rc in outcome.contacts]
        if path and b"path" in supported:
            lines += [(b"Path", p) for p in path]
        lines += _outbound_lines(outcome, supported, flow, policy)
        lines.append((b"Date", http_date(int(wall))))
        return RegisterReply(200, None, tuple(lines))
    finally:
        if turns is not None:
            turns.give(aor)


def _early_refusal(req: Request) -> RegisterReply | None:
    """§10.3 step 2 (Require: 420) and a GRUU as the AOR (403, RFC 5627)."""
    missing = unsupported(req)
    if missing:
        return RegisterReply(420, None, ((b"Unsupported", b", ".join(missing)),))
    if isinstance(req.to.uri, SipUri) and req.to.uri.has_param(b"gr"):
        # RFC 5627: a GRUU names an instance; it is never an address-of-record.
        return RegisterReply(403, b"Forbidden: a GRUU is not an address-of-record")
    return None


async def _read(
    store: LocationStore,
    keys: tuple[str, str],
    request: RegisterRequest,
    policy: RegistrarPolicy,
    now: float,
) -> tuple[list[Binding], list[Binding], RegisterOutcome]:
    """The AOR's live bindings (and those to move from the key as written) and what the
    request makes of them."""
    stored = await store.lookup(keys[0], now)
    if keys[1] == keys[0]:
        return stored, [], process_register(stored, request, policy, now)
    moved = await _stored_as_written(store, keys, stored, now)
    current = [*stored, *moved] if moved else stored
    return stored, moved, process_register(current, request, policy, now)


_SWAPS: dict[type, bool] = {}


def _swaps(store: LocationStore) -> bool:
    """``isinstance(store, SwappingStore)``, once per store class (a runtime Protocol
    check walks the protocol's members: ~10 µs, every REGISTER)."""
    kind = type(store)
    found = _SWAPS.get(kind)
    if found is None:
        found = _SWAPS[kind] = isinstance(store, SwappingStore)
    return found


@functools.lru_cache(maxsize=2)
def http_date(second: int) -> bytes:
    """The Date header value (RFC 3261 §20.17) of a whole second, made once per second."""
    return formatdate(second, usegmt=True).encode("ascii")


def _reply_contact(rc: ReplyContact, gruu_secret: bytes | None) -> bytes:
    """One Contact of the 200: the binding, its expiry, its instance, reg-id and GRUUs."""
    b = rc.binding
    value = b"<%s>;expires=%d" % (b.contact, rc.expires)
    if b.instance is None:
        return value
    value += b";+sip.instance=" + b.instance
    if b.reg_id is not None:
        value += b";reg-id=%d" % b.reg_id
    if gruu_secret is not None:
        public = gruu.public_gruu(b.aor, b.instance)
        if public is not None:
            value += b';pub-gruu="%s"' % public
            temp = gruu.temp_gruu(gruu_secret, b.aor, b.instance, b.call_id)
            if temp is not None:
                value += b';temp-gruu="%s"' % temp
    return value


def _outbound_lines(
    outcome: RegisterOutcome, supported: frozenset[bytes], flow: Flow, policy: RegistrarPolicy
) -> list[tuple[bytes, bytes]]:
    """``Require: outbound`` and ``Flow-Timer`` for a flow registered as RFC 5626 asks."""
    if not outcome.outbound:
        return []
    lines: list[tuple[bytes, bytes]] = []
    if b"outbound" in supported:
        lines.append((b"Require", b"outbound"))
    lines.append((b"Supported", b", ".join(sorted(SUPPORTED))))
    timer = policy.flow_timer
    if not flow.transport.reliable:
        timer = min(timer, UDP_FLOW_TIMER)
    if timer:
        lines.append((b"Flow-Timer", b"%d" % timer))
    return lines
