"""SIP probe logic without I/O: the OPTIONS request, reading answers, and the verdicts.

Rules (RFC 3261 §11 OPTIONS, §18.3 framing, §25.1 grammar; RFC 5118 §4 IPv6 references;
RFC 3263 §4 SRV fail-over):

- Any final response to OPTIONS (200, 404, 405, 401...) proves a SIP server answers on
  that address, family and transport; a timeout or refusal does not.
- Per transport and family the verdict is pass when every SRV target address answers,
  warn when some do (clients fail over after a timeout: ``sip.srv-target-broken``), fail
  when none does.
- Parity compares the IPv4 and the IPv6 answer: status code, Allow, Supported.
- References: in Via sent-by and in the URIs of Contact and Record-Route an IPv6
  address must be in brackets (``[2001:db8::1]``); the answer is read from the raw bytes,
  so an answer our parser refuses for that very reason is still judged. An IPv4 literal
  in an answer received over IPv6 is a finding an IPv6-only client cannot route to
  (``ipv4_literal``: NAT64 does not help either). ``received=`` is not checked (RFC 3261
  writes it bare).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import IPAddress, format_host, format_hostport
from rtc64.probe.verdict import Aspect, Check, Status, Template
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Response

SIG = Aspect.SIGNALLING
USER_AGENT = "rtc64-probe"
VIA_TRANSPORT = {"udp": "UDP", "tcp": "TCP", "tls": "TLS", "ws": "WS", "wss": "WSS"}
_REF_HEADERS = {b"via": "Via", b"v": "Via", b"contact": "Contact", b"m": "Contact"}
_REF_HEADERS |= {b"record-route": "Record-Route", b"route": "Route"}
_URI_HOST = re.compile(rb"sips?:(?:[^@<>;?\s,]*@)?(\[[^\]]*\]|[^;?>:\s,]*(?::[^;?>\s,]*)*)", re.I)
_IPV4 = re.compile(rb"^\d{1,3}(?:\.\d{1,3}){3}$")


def options_request(
    request_uri: str, transport: str, local: tuple[IPAddress, int], *, call_id: str = ""
) -> bytes:
    """An OPTIONS request for ``request_uri`` sent from ``local`` over ``transport``."""
    host, port = local
    sent_by = format_hostport(host, port)
    tag = secrets.token_hex(6)
    branch = "z9hG4bK" + secrets.token_hex(8)
    call_id = call_id or f"{secrets.token_hex(10)}@rtc64-probe"
    uri_param = "" if transport == "udp" else f";transport={transport}"
    lines = [
        f"OPTIONS {request_uri} SIP/2.0",
        f"Via: SIP/2.0/{VIA_TRANSPORT[transport]} {sent_by};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{format_host(host)}>;tag={tag}",
        f"To: <{request_uri}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:probe@{sent_by}{uri_param}>",
        "Accept: application/sdp",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def is_final_response(data: bytes) -> bool:
    """A SIP final response (2xx-6xx) status line; provisional answers keep us waiting."""
    m = re.match(rb"\s*SIP/2\.0 ([1-6])\d\d ", data)
    return m is not None and m.group(1) != b"1"


def frame_length(buffer: bytes) -> int | None:
    """Length of the first SIP message in a stream buffer (RFC 3261 §18.3), or None."""
    stripped = len(buffer) - len(buffer.lstrip(b"\r\n"))
    end = buffer.find(b"\r\n\r\n", stripped)
    if end < 0:
        return None
    m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", buffer[: end + 2], re.I)
    size = end + 4 + (int(m.group(1)) if m else 0)
    return size if len(buffer) >= size else None


@dataclass(frozen=True, slots=True)
class Answer:
    """What one answer says, read leniently."""

    status: int
    phrase: str
    allow: frozenset[str] = frozenset()
    supported: frozenset[str] = frozenset()
    server: str = ""
    parse_error: str = ""


def read_answer(raw: bytes) -> Answer:
    """Status, Allow, Supported and Server of an answer; a parse error is kept, not raised."""
    first = raw.lstrip(b"\r\n").split(b"\r\n", 1)[0]
    m = re.match(rb"SIP/2\.0 (\d{3}) ?(.*)", first)
    status = int(m.group(1)) if m else 0
    phrase = m.group(2).decode("utf-8", "replace") if m else ""
    try:
        msg = parse_datagram(raw)
    except RemoteProtocolError as exc:
        return Answer(status, phrase, parse_error=str(exc)[:200])
    if not isinstance(msg, Response):
        return Answer(0, "", parse_error="a request, not a response")

    def tokens(name: bytes) -> frozenset[str]:
        return frozenset(
            t.strip().upper().decode("ascii", "replace")
            for line in msg.get_all(name)
            for t in line.split(b",")
            if t.strip()
        )

    server = (msg.get(b"server") or msg.get(b"user-agent") or b"").decode("utf-8", "replace")
    return Answer(msg.status, phrase, tokens(b"allow"), tokens(b"supported"), server[:100])


@dataclass(frozen=True, slots=True)
class References:
    unbracketed: tuple[str, ...] = ()
    ipv4: tuple[str, ...] = ()


def references(raw: bytes) -> References:
    """IPv6 hosts written without brackets, and IPv4 literals, in Via sent-by and in the
    URIs of Contact/Record-Route/Route (header lines of ``raw``)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    unbracketed: list[str] = []
    ipv4: list[str] = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        shown = _REF_HEADERS.get(name.strip().lower())
        if not sep or shown is None:
            continue
        for host in _hosts(shown, value):
            text = f"{shown}: {host.decode('utf-8', 'replace')}"
            if host.startswith(b"["):
                continue
            if host.count(b":") >= 2:
                unbracketed.append(text)
            elif _IPV4.match(host.split(b":")[0]):
                ipv4.append(text)
    return References(tuple(unbracketed), tuple(ipv4))


def _hosts(header: str, value: bytes) -> list[bytes]:
    if header == "Via":
        found = []
        for part in value.split(b","):
            fields = part.strip().split(None, 1)
            if len(fields) == 2:
                found.append(fields[1].split(b";", 1)[0].strip())
        return found
    return [m.group(1) for m in _URI_HOST.finditer(value)]


# ---- verdicts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """OPTIONS to one address: the raw answer or the failure's reason code."""

    host: str
    address: IPAddress
    port: int
    transport: str
    raw: bytes = b""
    elapsed: float = 0.0
    error: str = ""
    error_text: str = ""
    tls_error: tuple[str, str] | None = None
    answer: Answer | None = field(default=None, compare=False)
    via: IPAddress | None = None
    """The synthesised IPv6 address an IPv4 server was reached at through NAT64."""

    @property
    def family(self) -> int:
        return self.address.version

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.answer.status >= 200

    def evidence(self) -> dict[str, object]:
        out: dict[str, object] = {
            "host": self.host,
            "address": str(self.address),
            "port": self.port,
            "transport": self.transport,
            "seconds": round(self.elapsed, 3),
        }
        if self.via is not None:
            out["via_nat64"] = str(self.via)
        if self.answer is not None:
            out["status"] = self.answer.status
            out["phrase"] = self.answer.phrase
            if self.answer.server:
                out["server"] = self.answer.server
            if self.answer.parse_error:
                out["parse_error"] = self.answer.parse_error
        else:
            out["error"] = self.error
            out["error_text"] = self.error_text
        return out


def options_check(transport: str, family: int, attempts: Sequence[Attempt]) -> Check:
    """Did SIP answer over ``transport`` and ``family`` at every SRV target address?"""
    good = [a for a in attempts if a.ok]
    bad = [a for a in attempts if not a.ok]
    evidence = {"attempts": [a.evidence() for a in attempts]}
    where = f"SIP OPTIONS over {transport.upper()}/IPv{family}"
    make = Template("sip.options", SIG, family, f"sip.options.{transport}", evidence, True)
    if good and not bad:
        codes = ", ".join(sorted({f"{a.answer.status}" for a in good if a.answer}))
        return make(
            Status.PASS, "sip.answered", f"{where}: {len(good)} address(es) answered ({codes})"
        )
    if good:
        failed = ", ".join(f"{a.host} [{a.address}]:{a.port} ({a.error})" for a in bad)
        return make(
            Status.WARN,
            "sip.srv-target-broken",
            f"{where}: {len(bad)} of {len(attempts)} targets do not answer: {failed}",
        )
    reason = bad[0].error if bad and all(a.error == bad[0].error for a in bad) else "net.timeout"
    return make(
        Status.FAIL,
        reason or "net.timeout",
        f"{where}: no answer from {len(bad)} address(es) ({bad[0].error_text if bad else ''})",
    )


def parity_check(transport: str, v4: Sequence[Attempt], v6: Sequence[Attempt]) -> Check | None:
    """Compare the first IPv4 and IPv6 answers over ``transport`` (None: nothing to compare)."""
    a4 = next((a.answer for a in v4 if a.ok and a.answer), None)
    a6 = next((a.answer for a in v6 if a.ok and a.answer), None)
    if a4 is None or a6 is None:
        return None
    evidence = {
        "ipv4": {"status": a4.status, "allow": sorted(a4.allow), "supported": sorted(a4.supported)},
        "ipv6": {"status": a6.status, "allow": sorted(a6.allow), "supported": sorted(a6.supported)},
    }
    make = Template("sip.parity", SIG, None, f"sip.parity.{transport}", evidence)
    where = f"SIP over {transport.upper()}"
    if a4.status != a6.status:
        return make(
            Status.WARN,
            "sip.parity-status",
            f"{where}: IPv4 answers {a4.status}, IPv6 answers {a6.status}",
        )
    if a4.allow != a6.allow or a4.supported != a6.supported:
        return make(
            Status.WARN,
            "sip.parity-headers",
            f"{where}: Allow/Supported differ between IPv4 and IPv6",
        )
    return make(Status.PASS, "sip.parity", f"{where}: IPv4 and IPv6 answer alike ({a4.status})")


def references_check(family: int, attempts: Sequence[Attempt]) -> Check | None:
    """IPv6 references and foreign-family literals in the answers over ``family``."""
    answered = [a for a in attempts if a.raw]
    if not answered:
        return None
    unbracketed: list[str] = []
    ipv4: list[str] = []
    for a in answered:
        refs = references(a.raw)
        unbracketed += refs.unbracketed
        if family == 6:
            ipv4 += refs.ipv4
    unbracketed, ipv4 = sorted(set(unbracketed)), sorted(set(ipv4))
    evidence = {"unbracketed_ipv6": unbracketed, "ipv4_literals": ipv4}
    make = Template("sip.references", SIG, family, "sip.references", evidence)
    if unbracketed:
        return make(
            Status.FAIL,
            "sip.ipv6-unbracketed",
            f"IPv6 address without brackets in the answers over IPv{family}: {unbracketed[0]}",
        )
    if ipv4:
        return make(
            Status.FAIL,
            "sip.ipv4-in-ipv6-answer",
            f"an answer over IPv6 routes IPv6 clients to an IPv4 address: {ipv4[0]}",
            ipv4_literal=True,
        )
    return make(
        Status.PASS,
        "sip.references-ok",
        f"Via/Contact/Record-Route references in the answers over IPv{family} are well formed",
    )


def tls_check(family: int, attempts: Sequence[Attempt]) -> Check | None:
    """The certificate verdict of the TLS attempts over ``family``."""
    tried = [a for a in attempts if a.transport in ("tls", "wss") and (a.ok or a.tls_error)]
    if not tried:
        return None
    broken = [a for a in tried if a.tls_error]
    evidence = {
        "servers": [
            {"host": a.host, "address": str(a.address), "port": a.port, "error": a.tls_error}
            for a in tried
        ]
    }
    make = Template("sip.tls", SIG, family, "sip.tls", evidence)
    if broken:
        reason, text = broken[0].tls_error or ("tls.untrusted", "")
        return make(
            Status.FAIL, reason, f"TLS certificate of {broken[0].host} over IPv{family}: {text}"
        )
    return make(
        Status.PASS, "tls.valid", f"TLS certificates over IPv{family} are valid for their names"
    )


def is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def family_of(address: IPAddress) -> int:
    return 6 if isinstance(address, IPv6Address) else 4 if isinstance(address, IPv4Address) else 0
