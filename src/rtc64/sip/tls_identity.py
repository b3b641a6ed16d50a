# Rules (RFC 5922 §7.1-§7.3, RFC 5280 §4.2.1.6): the identity a SIP server's certificate
# must show is the SIP domain the request was sent to: the host of the target URI, the
# domain an SRV lookup started from, never the SRV target or the resolved address.
# - subjectAltName entries of type URI that are sip:/sips: URIs without a user part name
#   the domain in their host; entries of type DNS name it exactly. Both are compared
#   case-insensitively, a trailing dot ignored; wildcards never match (§7.2).
# - The subject CN is used only when the certificate has no URI and no DNS entry (§7.1).
# - A target given as an IP literal (no domain) matches an iPAddress entry of the same
#   binary value (RFC 5280; RFC 5922 does not cover it, RFC 3261 targets can be numeric).
"""Whether a server certificate names the SIP domain (RFC 5922 server identity)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Names = Iterable[tuple[str, str]]


def normalise(name: str) -> str:
    """A domain or IP literal as compared: lower case, no trailing dot, no brackets; an
    IP address in its compressed form."""
    text = name.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def _uri_domain(uri: str) -> str | None:
    """The host of a sip:/sips: URI without a user part, else None."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips") or "@" in rest:
        return None
    host = rest.split(";", 1)[0].split("?", 1)[0]
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    else:
        host = host.split(":", 1)[0]
    return normalise(host) if host else None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def identities(san: Names, common_names: Iterable[str] = ()) -> set[str]:
    """The SIP identities a certificate asserts (§7.1): normalised domains and IP texts."""
    found: set[str] = set()
    named = False
    for kind, value in san:
        if kind == "URI":
            domain = _uri_domain(value)
            named = True
            if domain is not None:
                found.add(domain)
        elif kind == "DNS":
            named = True
            found.add(normalise(value))
        elif kind == "IP Address":
            ip = _ip(value)
            if ip is not None:
                found.add(ip.compressed)
    if not named:
        found.update(normalise(cn) for cn in common_names if _ip(cn) is None)
    return found


def matches(domain: str, san: Names, common_names: Iterable[str] = ()) -> bool:
    """Whether a certificate with these subjectAltName entries (and subject CNs) names
    ``domain`` (a domain name or an IP literal). Wildcard entries never match."""
    want = normalise(domain)
    if not want or "*" in want:
        return False
    ip = _ip(want)
    if ip is not None:  # only iPAddress entries stand for an address
        return _has_ip(san, ip)
    return want in identities(san, common_names)


def _has_ip(san: Names, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(kind == "IP Address" and _ip(value) == ip for kind, value in san)


def peercert_matches(domain: str, peercert: Mapping[str, object] | None) -> bool:
    """``matches`` on the dictionary ``ssl.SSLSocket.getpeercert()`` returns."""
    if not peercert:
        return False
    san_raw = peercert.get("subjectAltName", ())
    san = [
        (str(e[0]), str(e[1]))
        for e in (san_raw if isinstance(san_raw, tuple | list) else ())
        if isinstance(e, tuple | list) and len(e) == 2
    ]
    cns: list[str] = []
    subject = peercert.get("subject", ())
    for rdn in subject if isinstance(subject, tuple | list) else ():
        for attr in rdn if isinstance(rdn, tuple | list) else ():
            if isinstance(attr, tuple | list) and len(attr) == 2 and attr[0] == "commonName":
                cns.append(str(attr[1]))
    return matches(domain, san, cns)
