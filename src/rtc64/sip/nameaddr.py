"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route, Path...

Rules (RFC 3261 §20.10, §20.20, §20.39 and §25.1, RFC 4475 §3.1.1.6):

- ``[display-name] <URI> *(;param)`` or a bare ``URI *(;param)`` (addr-spec form). In the
  bare form every ``;param`` after the URI is a header parameter, and a URI carrying
  ``?headers``, ``,`` or ``;`` must be written in ``<>`` (§20): refused otherwise.
- A display name is a quoted string or a sequence of tokens separated by LWS; the LWS
  before ``<`` may be absent (``caller<sip:...>``, the RFC 4475 lwsdisp tolerance).
  Non-token characters in an unquoted display name are refused (RFC 4475 baddn).
- Nothing may stand between ``<`` / ``>`` and the URI (LAQUOT/RAQUOT; RFC 4475 badaspec).
- The display name is kept as written (quotes included) so the value re-serialises.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.sip.grammar import (
    DISPLAY_CHARS,
    WS,
    Params,
    bad,
    format_params,
    param_value,
    parse_params,
    quoted_end,
    show,
    unquote,
)
from rtc64.sip.uri import SipUri, Uri, format_uri, parse_uri


@dataclass(frozen=True, slots=True, init=False)
class NameAddr:
    """An address with optional display name (as written) and header parameters."""

    uri: Uri
    display: bytes | None = None
    params: Params = ()

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, uri: Uri, display: bytes | None = None, params: Params = ()) -> None:
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "display", display)
        object.__setattr__(self, "params", params)

    @property
    def tag(self) -> bytes | None:
        """The ``tag`` parameter (From/To), or ``None``."""
        return param_value(self.params, b"tag")

    @property
    def display_name(self) -> bytes | None:
        """The display name's text: quotes removed, quoted-pairs resolved."""
        d = self.display
        if d is None:
            return None
        return unquote(d) if d[:1] == b'"' else d

    def param(self, name: bytes) -> bytes | None:
        """Value of header parameter ``name`` (lower-case); ``None`` if absent or valueless."""
        return param_value(self.params, name)

    def __bytes__(self) -> bytes:
        return format_name_addr(self)


def parse_name_addr(value: bytes, what: str, *, angle: bool = False) -> NameAddr:
    """Parse one name-addr or addr-spec (already split from its list and stripped).

    ``angle`` requires the ``<URI>`` form (Route, Record-Route, Path).
    """
    if not value:
        raise bad(f"empty {what}")
    display: bytes | None = None
    if value[0] == 0x22:
        end = quoted_end(value, 0, what)
        display = value[:end]
        rest = value[end:].lstrip(WS)
        if rest[:1] != b"<":
            raise bad(f"display name without <URI> in {what}")
    else:
        lt = value.find(b"<")
        if lt >= 0:
            name = value[:lt].strip(WS)
            if name:
                if name.translate(None, DISPLAY_CHARS):
                    raise bad(
                        f"unquoted display name {show(name)} with non-token characters in {what}"
                    )
                display = name
            rest = value[lt:]
        else:
            rest = b""
    if rest:
        gt = rest.find(b">")
        if gt < 0:
            raise bad(f"missing '>' in {what}")
        inner = rest[1:gt]
        if not inner:
            raise bad(f"empty <> in {what}")
        if inner[0] in WS or inner[-1] in WS:
            raise bad(f"whitespace inside <> in {what}")
        uri = parse_uri(inner, what)
        tail = rest[gt + 1 :]
    else:
        if angle:
            raise bad(f"{what} value must be enclosed in <>")
        end = len(value)
        for stop in (b";", b" ", b"\t"):
            k = value.find(stop)
            if 0 <= k < end:
                end = k
        spec = value[:end]
        if spec.find(b"?") >= 0 or spec.find(b",") >= 0:
            raise bad(f"URI with ',' or '?' not enclosed in <> in {what}")
        uri = parse_uri(spec, what)
        tail = value[end:]
    params = parse_params(tail, what) if tail else ()
    return NameAddr(uri, display, params)


def format_name_addr(na: NameAddr) -> bytes:
    """Write ``[display ]<URI>;params`` (always with angle brackets)."""
    uri = b"<" + format_uri(na.uri) + b">"
    if na.display is not None:
        uri = na.display + b" " + uri
    return uri + format_params(na.params)


def sip_uri_of(na: NameAddr) -> SipUri | None:
    """The URI if it is ``sip:``/``sips:``, else ``None``."""
    return na.uri if isinstance(na.uri, SipUri) else None
