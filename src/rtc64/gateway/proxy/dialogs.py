"""Dialogs the proxy has record-routed, kept just well enough to end them itself.

Rules (RFC 3261 §12.1, §12.2.1.1, §15.1.1; rtpengine/Kamailio dialog practice):

- A dialog is learnt from a 2xx to an INVITE that we record-routed: the caller's remote
  target (INVITE Contact) and the callee's (2xx Contact), both tags, and the route sets
  each side uses: the Record-Route entries between us and the callee (above ours in the
  2xx, reversed) and between us and the caller (below ours, in order).
- Every in-dialog request seen raises that side's CSeq; a BYE or a final error ends it.
- ``byes(call_id)`` builds a BYE toward each party as if the other party sent it (its
  tags, a CSeq above any it used), used when the media relay reports a dead call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rtc64.sip import headers as sh
from rtc64.sip.message import Request, Response
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.uri import SipUri, format_uri


@dataclass(slots=True)
class Dialog:
    """What we need to send a BYE to each side."""

    call_id: bytes
    caller: bytes  # From header value (with tag), as the caller wrote it
    callee: bytes  # To header value of the 2xx (with tag)
    caller_target: bytes  # caller's Contact URI
    callee_target: bytes  # callee's Contact URI
    caller_routes: tuple[bytes, ...]  # Route set from us toward the caller
    callee_routes: tuple[bytes, ...]  # Route set from us toward the callee
    caller_cseq: int
    callee_cseq: int


def _contact_uri(msg: Request | Response) -> bytes | None:
    found = sh.contacts(msg)
    if isinstance(found, sh.Star) or not found:
        return None
    return format_uri(found[0].uri)


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
    """Dialogs by Call-ID (one per Call-ID is enough for the gateway's own BYEs)."""

    def __init__(self, is_ours: Callable[[SipUri], bool], limit: int = 200_000) -> None:
        self._is_ours = is_ours
        self._limit = limit
        self._dialogs: dict[bytes, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def get(self, call_id: bytes) -> Dialog | None:
        return self._dialogs.get(call_id)

    def confirmed(self, invite: Request, ok: Response) -> None:
        """Learn the dialog a 2xx to ``invite`` established."""
        if len(self._dialogs) >= self._limit:
            return
        caller_target, callee_target = _contact_uri(invite), _contact_uri(ok)
        if caller_target is None or callee_target is None or ok.to.tag is None:
            return
        rr: list[NameAddr] = list(sh.record_routes(ok))
        sides = route_sides(rr, self._is_ours)
        if sides is None:
            return
        above, below = sides
        self._dialogs[invite.call_id] = Dialog(
            call_id=invite.call_id,
            caller=invite.get(b"from") or b"",
            callee=ok.get(b"to") or b"",
            caller_target=caller_target,
            callee_target=callee_target,
            caller_routes=tuple(bytes(r) for r in below),
            callee_routes=tuple(bytes(r) for r in reversed(above)),
            caller_cseq=invite.cseq.seq,
            callee_cseq=0,
        )

    def in_dialog(self, req: Request) -> None:
        """Track CSeqs; a BYE ends the dialog."""
        dialog = self._dialogs.get(req.call_id)
        if dialog is None:
            return
        if req.method == b"BYE":
            del self._dialogs[req.call_id]
            return
        if req.from_.tag is not None and req.from_.tag.lower() in dialog.caller.lower():
            dialog.caller_cseq = max(dialog.caller_cseq, req.cseq.seq)
        else:
            dialog.callee_cseq = max(dialog.callee_cseq, req.cseq.seq)

    def end(self, call_id: bytes) -> None:
        self._dialogs.pop(call_id, None)

    def byes(
        self, call_id: bytes
    ) -> list[tuple[bytes, tuple[bytes, ...], list[tuple[bytes, bytes]]]]:
        """``(request_uri, route_set, header lines)`` of a BYE to the callee and one to the
        caller; Via is the sender's to add. The dialog is forgotten."""
        dialog = self._dialogs.pop(call_id, None)
        if dialog is None:
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
