"""A response written straight from the request's lines, for answers sent at once.

Rules (RFC 3261 §8.2.6, §18.2.2; RFC 3581 §4):

- ``response_bytes`` is ``serialize(make_response(...))`` without the two models in
  between: the status line, the request's Via lines (in order, byte-exact), From, To
  (with ``;tag=`` added unless the request had one or this is a 100), Call-ID and CSeq
  lines as received, then the extra lines, then Content-Length. The stateless registrar
  answers every REGISTER this way (one response per request, never re-read).
- ``top_via`` replaces the first Via value (the one the sender put there, with
  ``received``/``rport`` filled in by the caller); any further values on that line stay.
- Extra lines are checked as ``make_response`` checks them (a token name, one line, no
  surrounding whitespace: ``LocalProtocolError``); a Content-Length among them is
  dropped. Extra lines that name a copied header take ``make_response`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from rtc64.sip.grammar import split_top
from rtc64.sip.message import HeaderLike, Request, make_response, new_tag
from rtc64.sip.message import _copied as copied_name
from rtc64.sip.message import _headers as checked_lines
from rtc64.sip.message import _status_reason as status_reason
from rtc64.sip.serializer import serialize

_ONE = (b"from", b"to", b"call-id", b"cseq")


def response_bytes(
    request: Request,
    status: int,
    reason: bytes | None = None,
    *,
    to_tag: bytes | None = None,
    headers: Sequence[HeaderLike] = (),
    top_via: bytes | None = None,
) -> bytes:
    """The wire form of the response to ``request`` (see the rules); ``to_tag`` None: a
    fresh random tag."""
    for item in headers:
        if copied_name(item[0]):
            if top_via is not None:
                request = with_top_via(request, top_via)
            resp = make_response(request, status, reason, to_tag=to_tag, headers=headers)
            return serialize(resp)
    reason = status_reason(status, reason)
    index = request.key_index()
    vias = index[b"via"]
    at = sorted([*vias, *(index[key][0] for key in _ONE)])
    lines = request.headers
    to_at = index[b"to"][0]
    out = [b"SIP/2.0 %d %s" % (status, reason)]
    for i in at:
        h = lines[i]
        value = h.value
        if i == to_at:
            if request.to.tag is None and status > 100:
                value += b";tag=" + (to_tag if to_tag is not None else new_tag())
        elif top_via is not None and i == vias[0]:
            value = _replace_first(value, top_via)
        out.append(h.name + b": " + value)
    for h in checked_lines(headers, b""):  # ends with Content-Length: 0
        out.append(h.name + b": " + h.value)
    out.append(b"\r\n")
    return b"\r\n".join(out)


def _replace_first(value: bytes, first: bytes) -> bytes:
    """A Via line's value with its first element replaced (the others as
    ``hops.with_stamped_via`` writes them: stripped, joined by ``, ``)."""
    if value.find(b",") < 0:
        return first
    rest = split_top(value, b",")[1:]
    return b", ".join([first, *(r.strip() for r in rest)])


def with_top_via(request: Request, top_via: bytes) -> Request:
    """``request`` with its first Via value replaced (for the rare full path)."""
    i = request.key_index()[b"via"][0]
    line = request.headers[i]
    headers = (
        *request.headers[:i],
        line._replace(value=_replace_first(line.value, top_via)),
        *request.headers[i + 1 :],
    )
    return Request(
        request.method, request.uri, headers, request.body, request.vias, request.call_id,
        request.cseq, request.from_, request.to, request.max_forwards, request.index, None,
    )  # fmt: skip
