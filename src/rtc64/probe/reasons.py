"""Stable reason codes of ``rtc64 probe`` and their default fix hints.

Rules: a code is ``area.what`` in lower case, never renamed once released (monitoring
matches on it; docs/probe-schema.md lists them). A check may give a sharper hint; this
table holds the default one.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # generic outcomes
    "ok": "",
    "local.no-ipv4": "run from a host with IPv4 to test this family (or ignore for IPv6-only)",
    "local.no-ipv6": "run from a host with IPv6 to test this family",
    "local.family-excluded": "drop --family to test both families",
    "local.error": "check the command line and the local network",
    "run.deadline": "raise --deadline or probe fewer targets at once",
    "run.not-requested": "",
    "net.timeout": "check firewalls and that the service listens on this family",
    "net.refused": "start the service on this address/port or remove the DNS record",
    "net.unreachable": "check routing for this family between client and server",
    # DNS
    "dns.records": "",
    "dns.nxdomain": "the name does not exist: check the spelling or the zone",
    "dns.no-address": "publish A and AAAA records for the name",
    "dns.no-aaaa": "publish an AAAA record (and listen on IPv6) for this host",
    "dns.no-a": "publish an A record so IPv4-only clients can reach this host",
    "dns.failure": "the resolver failed (timeout/SERVFAIL): check the zone's name servers",
    "dns.no-srv": "publish SRV records (RFC 3263) so clients find every transport",
    # SIP
    "sip.answered": "",
    "sip.bad-response": "the answer is not valid SIP: check the server's IPv6 support",
    "sip.parity": "",
    "sip.parity-status": "answer OPTIONS the same way over IPv4 and IPv6",
    "sip.parity-headers": "advertise the same capabilities over IPv4 and IPv6",
    "sip.srv-target-broken": "fix or remove the SRV target that does not answer",
    "sip.references-ok": "",
    "sip.ipv6-unbracketed": "write IPv6 references in brackets ([2001:db8::1]) as RFC 3261 "
    "and RFC 5118 require",
    "sip.ipv4-in-ipv6-answer": "advertise IPv6 addresses (or names) in Contact/Record-Route "
    "to IPv6 clients (enable_double_rr / mhomed in Kamailio)",
    "tls.valid": "",
    "tls.untrusted": "serve a certificate chain a public CA (or --cafile) vouches for",
    "tls.name-mismatch": "put the domain (or SRV target) in the certificate's subjectAltName",
    "tls.expired": "renew the certificate",
    "tls.handshake": "enable TLS on this family's listener",
    "sip.ws-rejected": "accept the WebSocket upgrade with the 'sip' subprotocol (RFC 7118) on "
    "this family",
    "sip.registered": "",
    "sip.register-failed": "check the credentials and the registrar's IPv6 listener",
    "sip.call-ok": "",
    "sip.call-failed": "check the test call's target and the proxy's routing on this family",
    "sip.sdp-bad": "the answer's SDP is missing or malformed",
    "sip.sdp-foreign-family": "anchor media on this family (an RTP relay such as rtpengine or "
    "rtc64) or offer ICE candidates of both families",
    "sip.sdp-clat": "the far end leaks its CLAT address: use ICE or a relay",
    "sip.sdp-private": "media to a private address works only by latching: use a relay/ICE",
    # TURN
    "stun.mapped": "",
    "stun.bad-response": "the answer is not valid STUN",
    "turn.auth-required": "",
    "turn.no-credentials": "give --turn-user/--turn-password or --turn-secret to test relaying",
    "turn.allocated": "",
    "turn.auth-failed": "check the credentials (or the REST secret and its realm)",
    "turn.relay-no-ipv6": "give the TURN server an IPv6 relay address (coturn: --relay-ip "
    "with an IPv6 address, RFC 6156)",
    "turn.relay-no-ipv4": "give the TURN server an IPv4 relay address",
    "turn.family-unsupported": "update the TURN server to RFC 8656 (REQUESTED-ADDRESS-FAMILY)",
    "turn.no-dual-allocation": "support ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2) so one "
    "allocation relays both families",
    "turn.rejected": "see the error code in the evidence",
    "turn.echo-ok": "",
    "turn.echo-failed": "check the server's peer policy (denied-peer-ip) and relay ports",
    "turn.slow": "the server took long to answer: clients give up on TURN after ~4 s",
    "turn.ipv4-literal": "publish the TURN server by name with an AAAA record",
    # network
    "net.ipv6-default-route": "",
    "net.no-ipv6-route": "configure IPv6 (router advertisements or a static default route)",
    "net.ipv4-present": "",
    "net.ipv4-absent": "",
    "net.dns64": "",
    "net.no-dns64": "an IPv6-only network needs DNS64 (RFC 6147) for IPv4-only names",
    "net.pref64": "",
    "net.no-pref64": "announce the NAT64 prefix in router advertisements (RFC 8781)",
    "net.nat64-ok": "",
    "net.nat64-broken": "check the NAT64 (PLAT) and its prefix route",
    "net.no-nat64": "",
    "net.clat": "",
    "net.no-clat": "enable a CLAT (464XLAT, RFC 6877) so IPv4 literals in SDP and apps work",
    "net.leak": "SIP clients may put these addresses in SDP: use ICE/TURN or a gateway",
    "net.no-leak": "",
    "net.option108": "",
    "net.no-option108": "offer option 108 (RFC 8925 IPv6-only preferred) so capable clients "
    "leave IPv4 to the CLAT (IPv6-mostly)",
    "net.no-dhcpv4": "",
    "local.not-root": "run as root to send a DHCPv4 DISCOVER",
    # web
    "web.http-ok": "",
    "web.http-error": "serve the same site over both families",
    "web.parity": "",
    "web.parity-differs": "serve the same content over IPv4 and IPv6",
    "web.redirect-no-aaaa": "give every host the login and app redirect to an AAAA record",
    "web.host-no-aaaa": "publish an AAAA record for this host the page needs",
    "web.ipv4-literal": "use host names, not IPv4 literals, in the page and its redirects",
    "web.websocket-ok": "",
    "web.websocket-failed": "accept WebSocket upgrades on the IPv6 listener too",
    "web.browser-failed": "see the failed requests in the evidence",
    "web.browser-ok": "",
    "web.browser-unavailable": "install Chromium and Playwright for --browser",
}
