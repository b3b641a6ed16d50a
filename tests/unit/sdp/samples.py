"""Realistic SDP bodies for the sdp tests (CRLF, as sent on the wire)."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "conformance" / "corpus" / "rfc5118"


def crlf(text: str) -> bytes:
    """Join ``text``'s lines with CRLF (a trailing CRLF included)."""
    return "".join(line + "\r\n" for line in text.strip("\n").split("\n")).encode()


def rfc5118_body(name: str) -> bytes:
    """The SDP body of an RFC 5118 message: everything after the blank line."""
    raw = (CORPUS / f"{name}.dat").read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1]


# baresip 1.x, G.711 + telephone-event, IPv4 host.
BARESIP_V4 = crlf("""
v=0
o=- 1860529718 1477474046 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 10120 RTP/AVP 0 8 101
b=AS:80
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10121 IN IP4 192.0.2.10
a=sendrecv
a=label:1
a=ssrc:1298465411 cname:sip:alice@example.com
a=rtcp-rsize
a=ptime:20
""")

# The same phone on an IPv6-only network.
BARESIP_V6 = crlf("""
v=0
o=- 1860529718 1477474046 IN IP6 2001:db8:1::10
s=-
c=IN IP6 2001:db8:1::10
t=0 0
m=audio 10120 RTP/AVP 0 8 101
b=AS:80
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10121 IN IP6 2001:db8:1::10
a=sendrecv
a=label:1
a=ssrc:1298465411 cname:sip:alice@example.com
a=rtcp-rsize
a=ptime:20
""")

# Chromium WebRTC offer: BUNDLE, rtcp-mux, ICE candidates of both families and mDNS,
# DTLS fingerprint, extmap, ssrc lines (a file: candidate lines are long).
CHROMIUM_OFFER = (Path(__file__).parent / "data" / "chromium-offer.sdp").read_bytes()

# RFC 8866 §5 style session: every session field, repeats, zone, key, multicast forms.
MULTICAST = crlf("""
v=0
o=mhandley 2890844526 2890842807 IN IP4 198.51.100.3
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP4 233.252.0.1/127
b=CT:1000
t=2873397496 2873404696
r=7d 1h 0 25h
z=2882844526 -1h 2898848070 0
k=clear:secret
a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372/2 RTP/AVP 99
i=Two layers
c=IN IP4 224.2.1.1/127/3
c=IN IP4 233.252.0.3/127
a=rtpmap:99 h263-1998/90000
m=video 51374 RTP/AVP 99
c=IN IP6 ff15::101/3
b=AS:128
k=prompt
a=rtpmap:99 h263-1998/90000
""")

# RFC 3264 §8.4 / RFC 2543 hold forms.
HOLD_2543_V4 = crlf("""
v=0
o=- 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 10120 RTP/AVP 0
""")

HOLD_2543_V6 = crlf("""
v=0
o=- 1 2 IN IP6 2001:db8::10
s=-
c=IN IP6 ::
t=0 0
m=audio 10120 RTP/AVP 0
""")
