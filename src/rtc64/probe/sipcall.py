"""REGISTER and a test call for the SIP probe, without I/O: requests, digest, SDP verdicts.

Rules (RFC 3261 §10.2 REGISTER, §13.2 INVITE, §17.1.1.3 ACK for non-2xx, §22.2 digest,
RFC 8760; SDP RFC 8866 §5.7, RFC 8839 candidates):

- A ``Dialog`` holds what one family's requests share: Call-ID, From tag, CSeq, the local
  address for Via/Contact. REGISTER goes to ``sip:DOMAIN`` for ``sip:USER@DOMAIN`` with a
  60 s expiry, and is removed (``Expires: 0``) at the end.
- A 401/407 is answered once with ``Authorization``/``Proxy-Authorization`` from the first
  challenge we can compute (SHA-256 before MD5, RFC 8760 §2.4).
- The test call's SDP offer carries only this family's address. The answer's media
  addresses (``c=``, candidates) are judged: an address of the other family over IPv6 is a
  failure an IPv6-only client cannot route (``ipv4_literal``: NAT64 does not help, only a
  CLAT); a CLAT address (192.0.0.0/29) leaked by the far end fails; private or ULA
  addresses warn (media only works by latching).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import IPAddress, format_hostport, format_sdp_address
from rtc64.net.ranges import is_private_or_unusable_for_media
from rtc64.probe.sipcheck import SIG, VIA_TRANSPORT
from rtc64.probe.verdict import Aspect, Check, Status, Template
from rtc64.sdp.addresses import MEDIA_SOURCES, addresses
from rtc64.sdp.parser import parse as parse_sdp
from rtc64.sip import digest

CLAT_NET = IPv4Network("192.0.0.0/29")
_PREFERENCE = {
    digest.Algorithm.SHA_256: 0,
    digest.Algorithm.SHA_256_SESS: 1,
    digest.Algorithm.MD5: 2,
    digest.Algorithm.MD5_SESS: 3,
}


@dataclass
class Dialog:
    """One family's client state: identifiers and the local address."""

    domain: str
    user: str
    transport: str
    local: tuple[IPAddress, int]
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(10)}@rtc64-probe")
    tag: str = field(default_factory=lambda: secrets.token_hex(6))
    cseq: int = 0

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def contact(self) -> str:
        param = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{self.user}@{format_hostport(*self.local)}{param}>"

    def request(
        self,
        method: str,
        uri: str,
        *,
        to: str | None = None,
        to_tag: str = "",
        extra: tuple[str, ...] = (),
        body: bytes = b"",
        cseq: int | None = None,
        branch: str = "",
    ) -> tuple[bytes, str]:
        """A request and its branch; CSeq increments unless given (ACK for non-2xx)."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        sent_by = format_hostport(*self.local)
        to_header = f"<{to or self.aor}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{VIA_TRANSPORT[self.transport]} {sent_by};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{self.aor}>;tag={self.tag}",
            f"To: {to_header}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.contact}",
            "User-Agent: rtc64-probe",
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body, branch


def offer(local: IPAddress, port: int = 40000) -> bytes:
    """A G.711 audio offer on this family's address only."""
    kind = "IP6" if isinstance(local, IPv6Address) else "IP4"
    host = format_sdp_address(local)
    return (
        f"v=0\r\no=rtc64-probe 1 1 IN {kind} {host}\r\ns=rtc64 probe\r\nc=IN {kind} {host}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    ).encode()


def status_of(raw: bytes) -> int:
    m = re.match(rb"\s*SIP/2\.0 (\d{3}) ", raw)
    return int(m.group(1)) if m else 0


def header(raw: bytes, *names: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    wanted = {n.lower() for n in names}
    out = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in wanted:
            out.append(value.strip())
    return out


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


def to_tag(raw: bytes) -> str:
    for value in header(raw, b"to", b"t"):
        m = re.search(rb";\s*tag=([^;>\s]+)", value)
        if m:
            return m.group(1).decode("ascii", "replace")
    return ""


def cseq_of(raw: bytes) -> tuple[int, str]:
    for value in header(raw, b"cseq"):
        parts = value.split()
        if len(parts) == 2 and parts[0].isdigit():
            return int(parts[0]), parts[1].decode("ascii", "replace")
    return 0, ""


def answers(call_id: str, cseq: int, method: str) -> Callable[[bytes], bool]:
    """A matcher: a final response to this request."""

    def match(raw: bytes) -> bool:
        status = status_of(raw)
        ids = header(raw, b"call-id", b"i")
        return status >= 200 and ids == [call_id.encode()] and cseq_of(raw) == (cseq, method)

    return match


def authorization(raw: bytes, *, user: str, password: str, method: str, uri: str) -> str | None:
    """The header answering the challenge in a 401/407, or None when none is usable."""
    status = status_of(raw)
    name, out = (
        (b"www-authenticate", "Authorization")
        if status == 401
        else (b"proxy-authenticate", "Proxy-Authorization")
    )
    usable = []
    for value in header(raw, name):
        try:
            challenge = digest.parse_challenge(value)
        except (RemoteProtocolError, ValueError):
            continue
        if challenge.algorithm in _PREFERENCE and (not challenge.qop or "auth" in challenge.qop):
            usable.append(challenge)
    if not usable:
        return None
    challenge = min(usable, key=lambda c: _PREFERENCE[c.algorithm])
    creds = digest.respond(
        challenge, username=user, password=password, method=method.encode(), uri=uri
    )
    return f"{out}: {digest.format_credentials(creds).decode()}"


def register_check(family: int, status: int, phrase: str, seconds: float, error: str = "") -> Check:
    make = Template(
        "sip.register",
        SIG,
        family,
        "sip.register",
        {"status": status, "phrase": phrase, "seconds": round(seconds, 3)},
    )
    where = f"REGISTER over IPv{family}"
    if 200 <= status < 300:
        return make(Status.PASS, "sip.registered", f"{where}: {status} {phrase}")
    if not status:
        return make(Status.FAIL, error or "net.timeout", f"{where}: no answer")
    return make(Status.FAIL, "sip.register-failed", f"{where}: {status} {phrase}")


def sdp_check(family: int, status: int, sdp: bytes) -> Check:
    """The media addresses of a 2xx answer's SDP, judged for a client of ``family``."""
    make_evidence: dict[str, object] = {"status": status}
    where = f"test call over IPv{family}"
    template = Template("sip.call", Aspect.MEDIA, family, "sip.call", make_evidence)
    if not 200 <= status < 300:
        text = f"{where}: answered {status}" if status else f"{where}: no answer"
        return template(Status.FAIL, "sip.call-failed", text)
    try:
        sd = parse_sdp(sdp)
    except (RemoteProtocolError, ValueError) as exc:
        return template(Status.FAIL, "sip.sdp-bad", f"{where}: bad SDP answer ({exc})")
    media = [u.ip for u in addresses(sd) if u.source in MEDIA_SOURCES and u.ip]
    media = [a for a in media if not a.is_unspecified]
    make_evidence["media_addresses"] = [str(a) for a in media]
    foreign = [a for a in media if _media_version(a) != family]
    clat = [a for a in media if isinstance(a, IPv4Address) and a in CLAT_NET]
    private = [a for a in media if a not in foreign and is_private_or_unusable_for_media(a)]
    if foreign and family == 6:
        return template(
            Status.FAIL,
            "sip.sdp-foreign-family",
            f"{where}: the SDP answer sends media to IPv4 {foreign[0]}",
            ipv4_literal=True,
        )
    if foreign:
        return template(
            Status.FAIL,
            "sip.sdp-foreign-family",
            f"{where}: the SDP answer sends media to IPv6 {foreign[0]}",
        )
    if clat:
        return template(Status.FAIL, "sip.sdp-clat", f"{where}: the SDP carries CLAT {clat[0]}")
    if private:
        return template(
            Status.WARN, "sip.sdp-private", f"{where}: the SDP carries private {private[0]}"
        )
    if not media:
        return template(Status.FAIL, "sip.sdp-bad", f"{where}: no media address in the answer")
    return template(Status.PASS, "sip.call-ok", f"{where}: media to {media[0]} (IPv{family})")


def _media_version(address: IPAddress) -> int:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return 4
    return address.version
