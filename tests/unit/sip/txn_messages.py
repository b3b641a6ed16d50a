"""Raw SIP messages for the transaction tests, parsed with the real parser."""

from __future__ import annotations

from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response
from rtc64.sip.transaction import Event, NewRequest, Send, ServerTransaction, TransactionLayer

BRANCH = b"z9hG4bK776asdhds"


def request(
    method: bytes = b"INVITE",
    *,
    branch: bytes | None = BRANCH,
    sent_by: bytes = b"pc33.atlanta.com",
    uri: bytes = b"sip:bob@biloxi.com",
    to_tag: bytes | None = None,
    from_tag: bytes = b"1928301774",
    call_id: bytes = b"a84b4c76e66710@pc33.atlanta.com",
    cseq: int = 314159,
    cseq_method: bytes | None = None,
    routes: tuple[bytes, ...] = (),
    extra_vias: tuple[bytes, ...] = (),
) -> Request:
    via = b"Via: SIP/2.0/UDP " + sent_by
    if branch is not None:
        via += b";branch=" + branch
    lines = [method + b" " + uri + b" SIP/2.0", via]
    lines += [b"Via: " + v for v in extra_vias]
    lines += [b"Route: " + r for r in routes]
    lines += [
        b"Max-Forwards: 69",
        b"To: Bob <sip:bob@biloxi.com>" + (b"" if to_tag is None else b";tag=" + to_tag),
        b"From: Alice <sip:alice@atlanta.com>;tag=" + from_tag,
        b"Call-ID: " + call_id,
        b"CSeq: %d %s" % (cseq, cseq_method or method),
        b"Contact: <sip:alice@pc33.atlanta.com>",
        b"Content-Length: 0",
        b"",
        b"",
    ]
    msg = parse_datagram(b"\r\n".join(lines))
    assert isinstance(msg, Request)
    return msg


def response(
    req: Request, status: int, *, to_tag: bytes | None = b"a6c85cf", reason: bytes = b"Reason"
) -> Response:
    """A response to ``req`` as the next hop would send it."""
    to = req.get(b"to") or b""
    if req.to.tag is None and to_tag is not None and status > 100:
        to += b";tag=" + to_tag
    lines = [b"SIP/2.0 %d %s" % (status, reason)]
    lines += [b"Via: " + v for v in req.get_all(b"via")]
    lines += [
        b"To: " + to,
        b"From: " + (req.get(b"from") or b""),
        b"Call-ID: " + req.call_id,
        b"CSeq: " + bytes(req.cseq),
        b"Content-Length: 0",
        b"",
        b"",
    ]
    msg = parse_datagram(b"\r\n".join(lines))
    assert isinstance(msg, Response)
    return msg


def sends(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Send)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Event]]:
    """Fire every timer up to ``end`` at its exact deadline; events with their times."""
    out: list[tuple[float, Event]] = []
    while True:
        t = layer.get_timer()
        if t is None or t > end:
            return out
        out += [(t, e) for e in layer.handle_timer(t)]


def send_times(timed: list[tuple[float, Event]]) -> list[float]:
    return [t for t, e in timed if isinstance(e, Send)]


def new_txn(event: Event) -> ServerTransaction:
    assert isinstance(event, NewRequest)
    return event.txn
