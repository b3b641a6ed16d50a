"""Dialogs the proxy has record-routed: who may use our Route, and how to end them.

Rules (RFC 3261 §12, §15.1.1, §16.4; RFC 5626 §5.3; Kamailio dialog-module practice):

- A dialog begins when we forward a record-routed dialog-forming request (INVITE,
  SUBSCRIBE, REFER, NOTIFY) without a To tag: the Call-ID, the caller's From tag and
  Contact. Each response with a To tag (18x, 2xx) adds that callee tag, its Contact and
  the Record-Route entries that are not ours; the first 2xx confirms the dialog and
  records the route set on each side (used for the gateway's own BYEs).
- Target refreshes (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY with a Contact) add remote
  targets (at most ``MAX_TARGETS`` per dialog). The dialog ends with the final response
  to a BYE (401/407 excepted: the BYE is retried with credentials), a non-2xx final to
  the dialog-forming request, the media-timeout BYEs, or after ``DIALOG_TIMEOUT`` without
  in-dialog traffic (``EARLY_TIMEOUT`` before any 2xx).
- ``admit``: an in-dialog request from an untrusted source that carries our signed
  Route is relayed only when it belongs to a live dialog (same Call-ID, its From/To
  tags those of the dialog in either direction), its Request-URI is one of the
  dialog's remote targets of the other party (a party refreshes only its own target) and
  every Route after ours is one the dialog recorded on the other party's side. With
  no dialog state (the gateway restarted), a token issued before this process started
  is accepted for ``TOKEN_LIFETIME`` after its issue time; a token issued by this
  process whose dialog is gone (ended, failed, expired, evicted) is refused.
- Memory is bounded: at most ``limit`` dialogs, the least recently used evicted first;
  expired dialogs are dropped as new ones arrive and ignored when looked up.
- ``byes(call_id)`` builds a BYE toward each party as if the other party sent it (its
  tags, a CSeq above any it used), used when the media relay reports a dead call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rtc64.net.address import Host, unmap
from rtc64.net.endpoint import Transport
from rtc64.sip import headers as sh
from rtc64.sip.message import Request, Response
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.uri import SipUri, Uri, format_uri

DIALOG_TIMEOUT = 12 * 3600.0
"""A confirmed dialog without in-dialog requests for this long is forgotten (Kamailio's
dialog ``default_timeout``); session timers (RFC 4028) refresh calls well within it."""
EARLY_TIMEOUT = 600.0
"""A dialog that has not seen a 2xx is forgotten this long after its last message."""
TOKEN_LIFETIME = 3 * 3600.0
"""How long a token from before a restart (no dialog state) stays usable."""
CLOCK_SKEW = 300.0
MAX_TARGETS = 16
TARGET_REFRESH = frozenset((b"INVITE", b"UPDATE", b"SUBSCRIBE", b"NOTIFY"))

TargetKey = tuple[Host, int, str, bytes]
"""What decides where a request to a URI goes: host, port, transport, maddr."""


def target_key(uri: Uri) -> TargetKey | None:
    """The routing-relevant part of a SIP URI (None for other schemes)."""
    if not isinstance(uri, SipUri):
        return None
    param = uri.param(b"transport")
    text = param.decode("ascii", "replace").lower() if param else ""
    if uri.scheme == b"sips":
        text = {"": "tls", "tcp": "tls", "ws": "wss"}.get(text, text)
    text = text or "udp"
    try:
        port = uri.port if uri.port is not None else Transport(text).default_port
    except ValueError:
        port = uri.port or 0
    host: Host = uri.host if isinstance(uri.host, str) else unmap(uri.host)
    return (host, port, text, (uri.param(b"maddr") or b"").lower())


@dataclass(slots=True, init=False)
class Dialog:
    """A record-routed dialog: who is in it, where its requests may go, how to BYE it."""

    call_id: bytes
    caller_tag: bytes
    caller: bytes  # From header value (with tag), as the caller wrote it
    caller_target: bytes  # caller's Contact URI
    expires: float
    callee_tags: set[bytes] = field(default_factory=set)
    caller_targets: set[TargetKey] = field(default_factory=set)
    callee_targets: set[TargetKey] = field(default_factory=set)
    caller_route_keys: set[TargetKey] = field(default_factory=set)  # beyond us, caller side
    callee_route_keys: set[TargetKey] = field(default_factory=set)  # beyond us, callee side
    confirmed: bool = False
    callee: bytes = b""  # To header value of the 2xx (with tag)
    callee_target: bytes = b""  # callee's Contact URI
    caller_routes: tuple[bytes, ...] = ()  # Route set from us toward the caller
    callee_routes: tuple[bytes, ...] = ()  # Route set from us toward the callee
    caller_cseq: int = 0
    callee_cseq: int = 0
    callee_own_port: bool = False  # the callee was reached from a SIP worker's own port

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        call_id: bytes,
        caller_tag: bytes,
        caller: bytes,
        caller_target: bytes,
        expires: float,
        callee_tags: set[bytes] | None = None,
        caller_targets: set[TargetKey] | None = None,
        callee_targets: set[TargetKey] | None = None,
        caller_route_keys: set[TargetKey] | None = None,
        callee_route_keys: set[TargetKey] | None = None,
        confirmed: bool = False,
        callee: bytes = b"",
        callee_target: bytes = b"",
        caller_routes: tuple[bytes, ...] = (),
        callee_routes: tuple[bytes, ...] = (),
        caller_cseq: int = 0,
        callee_cseq: int = 0,
        callee_own_port: bool = False,
    ) -> None:
        self.call_id = call_id
        self.caller_tag = caller_tag
        self.caller = caller
        self.caller_target = caller_target
        self.expires = expires
        self.callee_tags = set() if callee_tags is None else callee_tags
        self.caller_targets = set() if caller_targets is None else caller_targets
        self.callee_targets = set() if callee_targets is None else callee_targets
        self.caller_route_keys = set() if caller_route_keys is None else caller_route_keys
        self.callee_route_keys = set() if callee_route_keys is None else callee_route_keys
        self.confirmed = confirmed
        self.callee = callee
        self.callee_target = callee_target
        self.caller_routes = caller_routes
        self.callee_routes = callee_routes
        self.caller_cseq = caller_cseq
        self.callee_cseq = callee_cseq
        self.callee_own_port = callee_own_port

    @staticmethod
    def add(keys: set[TargetKey], uri: Uri | None) -> None:
        key = target_key(uri) if uri is not None else None
        if key is not None and len(keys) < MAX_TARGETS:
            keys.add(key)

    def from_caller(self, req: Request) -> bool:
        return req.from_.tag == self.caller_tag

    def has_tags(self, req: Request) -> bool:
        """The request's tags are this dialog's, in either direction."""
        return self.tags_match(req.from_.tag, req.to.tag)

    def tags_match(self, ours: bytes | None, theirs: bytes | None) -> bool:
        """A request's From tag ``ours`` and To tag ``theirs`` are this dialog's."""
        if ours == self.caller_tag:
            return theirs in self.callee_tags
        return theirs == self.caller_tag and ours in self.callee_tags


def _contact(msg: Request | Response) -> NameAddr | None:
    found = sh.contacts(msg)
    if isinstance(found, sh.Star) or not found:
        return None
    return found[0]


def route_sides(
    rr: list[NameAddr], is_ours: Callable[[SipUri], bool]
) -> tuple[list[NameAddr], list[NameAddr]] | None:
    """A 2xx's Record-Route set split around our own entries: ``(above, below)``, the
    callee's side and the caller's side (§12.1.2); None when none of them is ours."""
    ours = [i for i, r in enumerate(rr) if isinstance(r.uri, SipUri) and is_ours(r.uri)]
    if not ours:
        return None
    return rr[: ours[0]], rr[ours[-1] + 1 :]


class DialogTracker:
    """Dialogs by Call-ID (one per Call-ID), bounded in number and in time."""

    def __init__(
        self,
        is_ours: Callable[[SipUri], bool],
        limit: int = 200_000,
        *,
        started: float = 0.0,
        timeout: float = DIALOG_TIMEOUT,
        early_timeout: float = EARLY_TIMEOUT,
        token_lifetime: float = TOKEN_LIFETIME,
    ) -> None:
        self._is_ours = is_ours
        self._limit = limit
        self.started = int(started)
        """Wall-clock second this process started: older tokens may have lost their dialog
        (tokens carry whole seconds, so one issued in that second counts as ours)."""
        self.timeout = timeout
        self.early_timeout = early_timeout
        self.token_lifetime = token_lifetime
        self._dialogs: dict[bytes, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def get(self, call_id: bytes, now: float | None = None) -> Dialog | None:
        """The dialog of ``call_id``; with ``now``, only when it has not expired."""
        dialog = self._dialogs.get(call_id)
        if dialog is not None and now is not None and dialog.expires <= now:
            return None
        return dialog

    def _touch(self, dialog: Dialog, now: float) -> None:
        dialog.expires = now + (self.timeout if dialog.confirmed else self.early_timeout)
        # Most recently used last: eviction and expiry look at the front.
        self._dialogs[dialog.call_id] = self._dialogs.pop(dialog.call_id, dialog)

    def _make_room(self, now: float) -> None:
        while self._dialogs:
            first = next(iter(self._dialogs.values()))
            if first.expires > now and len(self._dialogs) < self._limit:
                return
            del self._dialogs[first.call_id]

    # -- learning -------------------------------------------------------------------------

    def begin(self, req: Request, now: float, *, own_port: bool = False) -> None:
        """We are forwarding a record-routed dialog-forming request without a To tag
        (``own_port``: to targets reached from a SIP worker's private port)."""
        tag = req.from_.tag
        if tag is None:
            return
        old = self._dialogs.get(req.call_id)
        if old is not None and old.expires > now and old.caller_tag != tag and old.confirmed:
            return  # a live dialog keeps its Call-ID
        if old is None or old.caller_tag != tag:
            self._make_room(now)
            contact = _contact(req)
            old = Dialog(
                call_id=req.call_id,
                caller_tag=tag,
                caller=req.get(b"from") or b"",
                caller_target=format_uri(contact.uri) if contact else b"",
                expires=now,
                caller_cseq=req.cseq.seq,
                callee_own_port=own_port,
            )
            old.add(old.caller_targets, contact.uri if contact else None)
        self._touch(old, now)

    def answered(self, req: Request, resp: Response, now: float) -> Dialog | None:
        """A response with a To tag to the dialog-forming ``req``: learn the callee's tag,
        Contact and the Record-Route entries that are not ours."""
        return self.learn(req, resp.to.tag, _contact(resp), list(sh.record_routes(resp)), now)

    def learn(
        self,
        req: Request,
        tag: bytes | None,
        contact: NameAddr | None,
        record_routes: list[NameAddr],
        now: float,
    ) -> Dialog | None:
        """``answered`` with the response's To tag, first Contact and Record-Route
        entries already read (the proxy's raw response path)."""
        dialog = self._dialogs.get(req.call_id)
        if dialog is None or tag is None or dialog.caller_tag != req.from_.tag:
            return None
        dialog.callee_tags.add(tag)
        dialog.add(dialog.callee_targets, contact.uri if contact else None)
        sides = route_sides(record_routes, self._is_ours)
        above, below = sides if sides is not None else ([], [])
        for keys, entries in ((dialog.callee_route_keys, above), (dialog.caller_route_keys, below)):
            for rr in entries:
                dialog.add(keys, rr.uri)
        self._touch(dialog, now)
        return dialog

    def confirmed(self, invite: Request, ok: Response, now: float = 0.0) -> None:
        """Learn the dialog a 2xx to ``invite`` established."""
        rrs = list(sh.record_routes(ok))
        self.confirm(
            invite, ok.to.tag, to=ok.get(b"to") or b"", contact=_contact(ok), record_routes=rrs,
            now=now,
        )  # fmt: skip

    def confirm(
        self,
        invite: Request,
        tag: bytes | None,
        *,
        to: bytes,
        contact: NameAddr | None,
        record_routes: list[NameAddr],
        now: float = 0.0,
    ) -> None:
        """``confirmed`` with the 2xx's To tag and value, first Contact and Record-Route
        entries already read."""
        dialog = self.learn(invite, tag, contact, record_routes, now)
        if dialog is None or contact is None or dialog.confirmed:
            return
        sides = route_sides(record_routes, self._is_ours)
        if sides is None:
            return
        above, below = sides
        dialog.confirmed = True
        dialog.callee = to
        dialog.callee_target = format_uri(contact.uri)
        dialog.caller_routes = tuple(bytes(r) for r in below)
        dialog.callee_routes = tuple(bytes(r) for r in reversed(above))
        self._touch(dialog, now)

    def seen(self, req: Request, now: float) -> None:
        """An in-dialog request is being forwarded: CSeqs, target refresh, expiry."""
        dialog = self.seen_tags(req.call_id, req.from_.tag, req.to.tag, req.cseq.seq, now)
        if dialog is not None and req.method in TARGET_REFRESH:
            # A party refreshes its own target: only the other party's requests go there.
            contact = _contact(req)
            keys = dialog.caller_targets if dialog.from_caller(req) else dialog.callee_targets
            dialog.add(keys, contact.uri if contact else None)

    def seen_tags(
        self, call_id: bytes, from_tag: bytes | None, to_tag: bytes | None, seq: int, now: float
    ) -> Dialog | None:
        """``seen`` for a request that refreshes no target, read as its Call-ID, tags and
        CSeq number (the raw in-dialog path); the dialog, if the request is one of its."""
        dialog = self.get(call_id, now)
        if dialog is None or not dialog.tags_match(from_tag, to_tag):
            return None
        if from_tag == dialog.caller_tag:
            dialog.caller_cseq = max(dialog.caller_cseq, seq)
        else:
            dialog.callee_cseq = max(dialog.callee_cseq, seq)
        self._touch(dialog, now)
        return dialog

    def end(self, call_id: bytes) -> None:
        self._dialogs.pop(call_id, None)

    def toward_own_port(self, req: Request, now: float) -> bool:
        """Whether the in-dialog ``req`` goes to a party first reached from a SIP
        worker's private port (the callee of such a dialog; the caller talked to the
        shared port): it may leave from there too. False without dialog state."""
        return self.own_port_tags(req.call_id, req.from_.tag, req.to.tag, now)

    def own_port_tags(
        self, call_id: bytes, from_tag: bytes | None, to_tag: bytes | None, now: float
    ) -> bool:
        """``toward_own_port`` for a request read as its Call-ID and tags."""
        dialog = self.get(call_id, now)
        return (
            dialog is not None
            and dialog.callee_own_port
            and dialog.tags_match(from_tag, to_tag)
            and from_tag == dialog.caller_tag
        )

    def bye_answered(self, bye: Request, status: int) -> None:
        """A final response to a BYE ends its dialog (§15.1.1), unless it asks for
        credentials (the BYE comes again with them)."""
        dialog = self._dialogs.get(bye.call_id)
        if status >= 200 and status not in (401, 407) and dialog and dialog.has_tags(bye):
            del self._dialogs[bye.call_id]

    # -- checking -------------------------------------------------------------------------

    def admit(
        self,
        req: Request,
        target: Uri,
        routes: Iterable[Uri],
        issued: int,
        *,
        wall: float,
        now: float,
    ) -> str | None:
        """None when the in-dialog ``req`` (Request-URI ``target`` after Route processing,
        ``routes`` the Route entries after ours, ``issued`` the oldest issue time of our
        tokens in it) may be relayed; else the reason it may not."""
        return self.admit_tags(
            req.call_id, req.from_.tag, req.to.tag, target, routes, issued=issued, wall=wall,
            now=now,
        )  # fmt: skip

    def admit_tags(
        self,
        call_id: bytes,
        from_tag: bytes | None,
        to_tag: bytes | None,
        target: Uri,
        routes: Iterable[Uri],
        *,
        issued: int,
        wall: float,
        now: float,
    ) -> str | None:
        """``admit`` for a request read as its Call-ID and tags."""
        dialog = self.get(call_id, now)
        if dialog is None:
            if issued < self.started and issued - CLOCK_SKEW <= wall <= issued + (
                self.token_lifetime
            ):
                return None
            return "Forbidden: no such dialog here (ended or never established)"
        if not dialog.tags_match(from_tag, to_tag):
            return "Forbidden: tags do not match the dialog"
        # Each party's requests go to the other party's targets along its route set.
        caller = from_tag == dialog.caller_tag
        targets = dialog.callee_targets if caller else dialog.caller_targets
        route_keys = dialog.callee_route_keys if caller else dialog.caller_route_keys
        if target_key(target) not in targets:
            return "Forbidden: Request-URI is not a remote target of the dialog"
        for uri in routes:
            if target_key(uri) not in route_keys:
                return "Forbidden: Route outside the dialog's route set"
        return None

    # -- our own BYEs ---------------------------------------------------------------------

    def byes(
        self, call_id: bytes
    ) -> list[tuple[bytes, tuple[bytes, ...], list[tuple[bytes, bytes]]]]:
        """``(request_uri, route_set, header lines)`` of a BYE to the callee and one to the
        caller; Via is the sender's to add. The dialog is forgotten."""
        dialog = self._dialogs.pop(call_id, None)
        if dialog is None or not dialog.confirmed or not dialog.caller_target:
            return []
        reason = (b"Reason", b'SIP;cause=408;text="Media timeout"')
        to_callee = [
            (b"From", dialog.caller),
            (b"To", dialog.callee),
            (b"Call-ID", call_id),
            (b"CSeq", b"%d BYE" % (dialog.caller_cseq + 1)),
            (b"Max-Forwards", b"70"),
            reason,
        ]
        to_caller = [
            (b"From", dialog.callee),
            (b"To", dialog.caller),
            (b"Call-ID", call_id),
            (b"CSeq", b"%d BYE" % (dialog.callee_cseq + 1)),
            (b"Max-Forwards", b"70"),
            reason,
        ]
        return [
            (dialog.callee_target, dialog.callee_routes, to_callee),
            (dialog.caller_target, dialog.caller_routes, to_caller),
        ]
